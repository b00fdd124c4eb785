//! The backend registry: one table that says everything skm needs to know about each backend.
//!
//! Detection ([`crate::detect`]), the `skm` tool's `--backend`, `migrate`, `doctor` and `policy` all read
//! [`all()`]; none of them lists backends itself. Adding a backend is its module, one [`Descriptor`] in
//! [`all()`] and its line in `compiled`, its name in `skm-names`, its cargo feature and its tests (the list:
//! CONTRIBUTING.md, "Adding a backend").
//!
//! # Detection order
//! The single place that states it. The first rule that matches wins:
//!
//! | order | signal | backend |
//! |---|---|---|
//! | 0 | `SKM_BACKEND=<name or alias>` (`none` for no backend) | that one; an error if it is not compiled in |
//! | 1 | `AWS_REGION` or `AWS_DEFAULT_REGION` is set | `aws` |
//! | 2 | `VAULT_ADDR` is set | `vault` |
//! | 3 | `AZURE_KEYVAULT_URL` is set | `azure` |
//! | 4 | `GOOGLE_CLOUD_PROJECT` or `GCP_PROJECT_ID` is set | `gcp` |
//! | 5 | a local store exists at `SKM_LOCAL_PATH` (default `.skm`) | `local` |
//! | – | none of its own: AWS SSM Parameter Store shares AWS's variables | `ssm` (only by `SKM_BACKEND=ssm`) |
//! | – | none: a repository's SOPS files do not say the app reads them | `sops` (only by `SKM_BACKEND=sops`) |
//! | – | none: every desktop has a keyring | `keyring` (only by `SKM_BACKEND=keyring`) |
//! | – | nothing matched | no backend: env, `.env` and defaults only |
//!
//! Azure comes before GCP because `AZURE_KEYVAULT_URL` names a secret store and is set for no other purpose,
//! while a project variable is ambient: gcloud users and Google's other client libraries export
//! `GOOGLE_CLOUD_PROJECT` on machines that keep their secrets elsewhere. The weaker signal loses.
//!
//! Only backends compiled into this build take part in auto-detection. When more than one signal is present
//! (e.g. `AWS_REGION` and `VAULT_ADDR`, common on a developer machine), the lowest [`Descriptor::priority`]
//! wins, and the choice's [`reason`](crate::detect::Choice::reason) and an `info` log line name the winner,
//! the signals that lost, and `SKM_BACKEND` as the way to choose explicitly.
//!
//! # Example
//! ```
//! use skm_runtime::backend::registry;
//! let names: Vec<&str> = registry::all().iter().map(|d| d.name).collect();
//! // The backends with a detection signal come first, in detection order; the others follow.
//! assert_eq!(names[..5], ["aws", "vault", "azure", "gcp", "local"]);
//! assert_eq!(registry::find("OpenBao").unwrap().name, "vault");
//! assert!(registry::find("nope").is_none());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use super::AdminBackend;
use crate::names;
use crate::Error;

/// Environment lookups handed to a descriptor's functions (the process environment in production, a map in
/// tests). Empty values count as unset everywhere in skm.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A boxed `Send` future, as the descriptor's function pointers return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A borrowed environment lookup, as detection signals take it.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A descriptor's detection signal: `Some(reason)` when the environment selects the backend.
pub type SignalFn = fn(Lookup<'_>) -> Option<String>;

/// A descriptor's builder: the backend with its admin side, from the environment.
pub type BuildFn = fn(Env) -> BoxFuture<Result<Arc<dyn AdminBackend>, Error>>;

/// A descriptor's name mapping ([`Descriptor::name_map`]): each of `paths` with its name in the backend, or
/// why it cannot have one (including two paths that map to one name).
pub type NameMapFn = fn(&[&str]) -> BTreeMap<String, Result<String, String>>;

/// The process environment as an [`Env`].
pub fn process_env() -> Env {
    Arc::new(|name: &str| std::env::var(name).ok())
}

/// Everything skm knows about one backend.
#[non_exhaustive]
pub struct Descriptor {
    /// The canonical name: `SKM_BACKEND=<name>`, `--backend <name>`.
    pub name: &'static str,
    /// Other accepted names (case-insensitive), e.g. `openbao` for `vault`.
    pub aliases: &'static [&'static str],
    /// A human title, e.g. `AWS Secrets Manager`.
    pub title: &'static str,
    /// The cargo feature that compiles it in.
    pub feature: &'static str,
    /// Whether this build includes it.
    pub compiled: bool,
    /// Auto-detection rank: lower wins when several signals are present (see the [module docs](self)).
    pub priority: u8,
    /// The signal in words, for docs and `skm doctor`: e.g. `AWS_REGION or AWS_DEFAULT_REGION is set`.
    pub signal_doc: &'static str,
    /// Whether the environment selects this backend; `Some(reason)` if so, e.g. `AWS_REGION is set`.
    pub signal: SignalFn,
    /// Builds the backend, with its admin side, from the environment.
    pub build: BuildFn,
    /// The backend-specific checks of `skm doctor` (the generic reachability fetch is the tool's).
    pub doctor: fn(Env) -> BoxFuture<Vec<Probe>>,
    /// How `skm policy` renders least-privilege access for this backend, if it can.
    pub policy: Option<PolicyRenderer>,
    /// Each declared path's name in the backend, for backends whose names differ from skm's paths (the GCP
    /// secret id, the Key Vault name): `skm check` shows them. `None`: a path is its own name.
    pub name_map: Option<NameMapFn>,
    /// Where the backend keeps its secrets in files on this machine (the local store's directory), from the
    /// environment: `skm check` warns when git does not ignore it. `None`: the backend keeps no files here.
    pub store_path: Option<fn(Lookup<'_>) -> PathBuf>,
    /// Whether the first `skm put` of a project with no backend configured at all writes here: a store that
    /// needs no account (the local store). At most one descriptor says so.
    pub default_for_put: bool,
    /// Whether the backend issues leases for `#[secret(dynamic = "...")]` fields
    /// ([`Backend::leases`](super::Backend::leases)), and how to choose it: for the error such a field gets
    /// from a loader whose backend issues none.
    pub leases: Option<LeaseOffer>,
    /// How `skm policy --external-secret --for <name>` describes this backend to the External Secrets
    /// Operator: its SecretStore provider block and its form of version ids (the `remoteRef.key` is the
    /// [`name_map`](Self::name_map)'s name). `None`: [`ExternalSecretsOffer::GENERIC`].
    pub external_secrets: Option<ExternalSecretsOffer>,
    /// Whether versions carry staging labels that a rotation moves (`AWSPENDING` → `AWSCURRENT`): `skm rotate
    /// --postgres-role` then runs the staged protocol (`rotation::aws`) instead of the generic pending-key
    /// steps.
    pub staging_labels: bool,
}

/// A backend that issues leases, in words ([`Descriptor::leases`]).
#[derive(Debug, Clone, Copy)]
pub struct LeaseOffer {
    /// The backend, e.g. `a Vault / OpenBao backend`.
    pub who: &'static str,
    /// How to give the loader one, e.g. `set SKM_BACKEND=vault (with VAULT_ADDR, VAULT_TOKEN)`.
    pub how: &'static str,
}

/// A backend's part in an External Secrets Operator `ExternalSecret` ([`Descriptor::external_secrets`]).
#[derive(Debug, Clone, Copy)]
pub struct ExternalSecretsOffer {
    /// Renders the SecretStore's `spec.provider` block from the policy options (`--project`, ...) and the
    /// environment; `None`: skm cannot describe the store, and writes the `ExternalSecret` alone.
    pub store: Option<fn(&PolicyInput<'_>) -> ProviderBlock>,
    /// How a pinned version id (`version = { id = ... }`) is written as `remoteRef.version`.
    pub version_id: VersionIdForm,
}

impl ExternalSecretsOffer {
    /// What the tool writes for a backend without an offer of its own, and for no backend: no SecretStore,
    /// version ids in the form the AWS provider reads (`uuid/<id>`), which came first.
    pub const GENERIC: ExternalSecretsOffer = ExternalSecretsOffer {
        store: None,
        version_id: VersionIdForm::Uuid,
    };
}

/// How a provider of the External Secrets Operator reads a version id ([`ExternalSecretsOffer::version_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionIdForm {
    /// The id as is (GCP's version numbers, Key Vault's version ids).
    AsIs,
    /// `uuid/<id>` (the AWS provider's VersionId form; a bare value there is a staging label).
    Uuid,
}

impl VersionIdForm {
    /// `id` in this form.
    pub fn write(self, id: &str) -> String {
        match self {
            VersionIdForm::AsIs => id.to_string(),
            VersionIdForm::Uuid => format!("uuid/{id}"),
        }
    }
}

/// A SecretStore's `spec.provider` block ([`ExternalSecretsOffer::store`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderBlock {
    /// The YAML, indented to sit under `spec.provider:` (four spaces), each line ending in `\n`.
    pub yaml: String,
    /// Notes for the person applying it (placeholders to replace, how the store authenticates).
    pub notes: Vec<String>,
}

/// A double-quoted YAML scalar, for renderers of YAML. JSON string syntax is valid YAML, and quoting every
/// value keeps `yes`, `1e3` or `null` strings from being read as other types.
///
/// ```
/// assert_eq!(skm_runtime::backend::registry::yaml_quoted("yes"), "\"yes\"");
/// ```
pub fn yaml_quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A struct name as a resource name, `AppSecrets` → `app-secrets`: the Vault policy's name and the
/// ExternalSecret's. Each upper-case letter starts a word; other characters but letters and digits become `-`.
///
/// One copy for every renderer. Not `heck`'s kebab case (which keeps acronyms together, `HTTPKeys` →
/// `http-keys`): the Vault policy module is compiled into every build, and a crate for it would be one more in
/// the default build, which is at its 70-crate budget; and existing names stay as they were.
///
/// ```
/// assert_eq!(skm_runtime::backend::registry::kebab_name("AppSecrets"), "app-secrets");
/// ```
pub fn kebab_name(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('-');
        }
    }
    out
}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Descriptor")
            .field("name", &self.name)
            .field("aliases", &self.aliases)
            .field("feature", &self.feature)
            .field("compiled", &self.compiled)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl Descriptor {
    /// Whether `name` is this backend's name or one of its aliases (case-insensitive, trimmed).
    pub fn answers_to(&self, name: &str) -> bool {
        names::Names {
            name: self.name,
            aliases: self.aliases,
        }
        .answers_to(name)
    }

    /// The error for a backend this build lacks, telling how to enable it.
    pub fn not_compiled(&self) -> Error {
        Error::config(format!(
            "skm was built without the `{feature}` feature, which {title} needs: enable it in Cargo.toml with \
             `skm-secrets = {{ version = \"0.1\", features = [\"{feature}\"] }}` (or `cargo add skm-secrets \
             --features {feature}`; for the standalone tool, `cargo install skm-secrets-cli --features {feature}`)",
            feature = self.feature,
            title = self.title
        ))
    }

    /// Builds the backend from `env`.
    ///
    /// # Errors
    /// The backend is not compiled in, or its configuration in `env` is wrong.
    pub async fn build_admin(&self, env: Env) -> Result<Arc<dyn AdminBackend>, Error> {
        if !self.compiled {
            return Err(self.not_compiled());
        }
        (self.build)(env).await
    }
}

/// One result of a backend's `doctor` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What was checked, e.g. `vault token`.
    pub check: String,
    /// The verdict.
    pub level: ProbeLevel,
    /// A sentence for people. Never a secret value or a token.
    pub detail: String,
}

impl Probe {
    /// A probe result.
    pub fn new(check: impl Into<String>, level: ProbeLevel, detail: impl Into<String>) -> Self {
        Probe {
            check: check.into(),
            level,
            detail: detail.into(),
        }
    }
}

/// The verdict of a [`Probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeLevel {
    /// Fine.
    Ok,
    /// Works, but deserves attention (e.g. a token expiring within the hour).
    Warn,
    /// Broken.
    Fail,
    /// Not applicable here.
    Skip,
}

/// How a backend renders a least-privilege policy for declared paths.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRenderer {
    /// The document's format, e.g. `aws-iam` (JSON) or `vault-hcl`.
    pub format: &'static str,
    /// The options it reads (each also from its environment variables).
    pub options: &'static [PolicyOption],
    /// Renders the document.
    pub render: fn(&PolicyInput<'_>) -> Result<PolicyDocument, Error>,
}

/// One option of a [`PolicyRenderer`], e.g. `region`.
#[derive(Debug, Clone, Copy)]
pub struct PolicyOption {
    /// The option's name, as the tool's flag: `region` is `--region`.
    pub name: &'static str,
    /// Environment variables read when the option is not given, in order.
    pub env: &'static [&'static str],
    /// What it means.
    pub help: &'static str,
}

/// What a policy is rendered for.
pub struct PolicyInput<'a> {
    /// The declaring struct's name (must be a Rust identifier: it goes into comments).
    pub struct_name: &'a str,
    /// The declared backend paths.
    pub paths: &'a [String],
    /// Option values given explicitly (flags), by [`PolicyOption::name`].
    pub option: &'a dyn Fn(&str) -> Option<String>,
    /// The environment, for options not given explicitly.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl PolicyInput<'_> {
    /// The option `name` (explicit, else from `env_vars` in order), trimmed; empty counts as unset.
    pub fn get(&self, name: &str, env_vars: &[&str]) -> Option<String> {
        let set = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        set((self.option)(name)).or_else(|| env_vars.iter().find_map(|n| set((self.env)(n))))
    }

    /// The struct name, checked to be a Rust identifier so that it cannot break out of a comment line.
    ///
    /// # Errors
    /// [`Error::Config`] when it is not `[A-Za-z_][A-Za-z0-9_]*`.
    pub fn checked_struct_name(&self) -> Result<&str, Error> {
        let s = self.struct_name;
        let mut chars = s.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(s)
        } else {
            Err(Error::config(
                "the struct name is not a Rust identifier (letters, digits, `_`): fix the manifest's `struct`".into(),
            ))
        }
    }
}

/// A rendered policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    /// The format, as [`PolicyRenderer::format`].
    pub format: &'static str,
    /// The document.
    pub body: PolicyBody,
    /// Notes for the person applying it (what it does not cover, how to apply it).
    pub notes: Vec<String>,
}

/// The document itself.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyBody {
    /// A JSON document (AWS IAM).
    Json(serde_json::Value),
    /// A text document (Vault HCL).
    Text(String),
}

/// Every backend skm knows, compiled in or not, in detection order.
pub fn all() -> &'static [Descriptor] {
    &REGISTRY
}

/// The backend named `name` or one of its aliases (case-insensitive); `None` for an unknown name.
pub fn find(name: &str) -> Option<&'static Descriptor> {
    all().iter().find(|d| d.answers_to(name))
}

/// The names accepted by [`find`] and `SKM_BACKEND`, plus `none`: for help texts and clap value parsers.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = all()
        .iter()
        .flat_map(|d| std::iter::once(d.name).chain(d.aliases.iter().copied()))
        .collect();
    names.push("none");
    names
}

/// Which backends issue leases and how to choose one, from every [`Descriptor::leases`], for the error of a
/// `#[secret(dynamic = "...")]` field whose loader has no such backend: `(who, how)`.
pub(crate) fn lease_hint() -> (String, String) {
    let offers: Vec<LeaseOffer> = all().iter().filter_map(|d| d.leases).collect();
    if offers.is_empty() {
        return ("a backend that issues leases".into(), "give the loader one".into());
    }
    let who: Vec<&str> = offers.iter().map(|o| o.who).collect();
    let how: Vec<&str> = offers.iter().map(|o| o.how).collect();
    (who.join(" or "), how.join("; or "))
}

/// A [`Descriptor::build`] for backends not compiled in. [`Descriptor::build_admin`] answers with
/// [`Descriptor::not_compiled`] before it would call this; the error is only a safety net.
#[allow(dead_code)]
fn absent_build(_: Env) -> BoxFuture<Result<Arc<dyn AdminBackend>, Error>> {
    Box::pin(async { Err(Error::config("this backend is not compiled into this build".into())) })
}

/// A [`Descriptor::doctor`] for backends without specific checks (here: those not compiled in).
#[allow(dead_code)]
fn no_probes(_: Env) -> BoxFuture<Vec<Probe>> {
    Box::pin(async { Vec::new() })
}

fn set(var: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    var(name).filter(|v| !v.trim().is_empty())
}

/// The local store's directory: `SKM_LOCAL_PATH`, default `.skm` (see `backend::local`).
fn local_store_path(var: Lookup<'_>) -> PathBuf {
    PathBuf::from(set(var, "SKM_LOCAL_PATH").unwrap_or_else(|| ".skm".into()))
}

/// GCP's names: each path's secret id (the project does not change it; a full resource name carries its own).
#[cfg(feature = "gcp")]
fn gcp_names(paths: &[&str]) -> BTreeMap<String, Result<String, String>> {
    paths
        .iter()
        .map(|p| (p.to_string(), super::gcp::resolve("-", p).map(|n| n.id().to_string())))
        .collect()
}

/// Key Vault's names: each path's secret name, with Key Vault's character rules and the collisions among all
/// of `paths` (names are case-insensitive).
#[cfg(feature = "azure")]
fn azure_names(paths: &[&str]) -> BTreeMap<String, Result<String, String>> {
    let mut out: BTreeMap<String, Result<String, String>> = paths
        .iter()
        .map(|p| (p.to_string(), super::azure::secret_name(p)))
        .collect();
    for (p, e) in super::azure::check_names(paths.iter().copied()) {
        out.insert(p, Err(e));
    }
    out
}

static REGISTRY: [Descriptor; 8] = [
    Descriptor {
        name: names::AWS.name,
        aliases: names::AWS.aliases,
        title: "AWS Secrets Manager",
        feature: "aws",
        compiled: cfg!(feature = "aws"),
        priority: 1,
        signal_doc: "AWS_REGION or AWS_DEFAULT_REGION is set",
        signal: |var| {
            ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .into_iter()
                .find(|n| set(var, n).is_some())
                .map(|n| format!("{n} is set"))
        },
        #[cfg(feature = "aws")]
        build: super::aws::registry_build,
        #[cfg(not(feature = "aws"))]
        build: absent_build,
        #[cfg(feature = "aws")]
        doctor: super::aws::doctor,
        #[cfg(not(feature = "aws"))]
        doctor: no_probes,
        policy: Some(super::aws::policy::RENDERER),
        name_map: None,
        store_path: None,
        default_for_put: false,
        leases: None,
        external_secrets: Some(super::aws::policy::EXTERNAL_SECRETS),
        staging_labels: true,
    },
    Descriptor {
        name: names::VAULT.name,
        aliases: names::VAULT.aliases,
        title: "HashiCorp Vault / OpenBao KV",
        feature: "vault",
        compiled: cfg!(feature = "vault"),
        priority: 2,
        signal_doc: "VAULT_ADDR is set",
        signal: |var| set(var, "VAULT_ADDR").map(|_| "VAULT_ADDR is set".to_string()),
        #[cfg(feature = "vault")]
        build: super::vault::registry_build,
        #[cfg(not(feature = "vault"))]
        build: absent_build,
        #[cfg(feature = "vault")]
        doctor: super::vault::doctor,
        #[cfg(not(feature = "vault"))]
        doctor: no_probes,
        policy: Some(super::vault::policy::RENDERER),
        name_map: None,
        store_path: None,
        default_for_put: false,
        leases: Some(LeaseOffer {
            who: "a Vault / OpenBao backend",
            how: "set `SKM_BACKEND=vault` (with `VAULT_ADDR`, `VAULT_TOKEN`) or `Loader::backend(VaultBackend)`",
        }),
        external_secrets: None,
        staging_labels: false,
    },
    Descriptor {
        name: names::AZURE.name,
        aliases: names::AZURE.aliases,
        title: "Azure Key Vault",
        feature: "azure",
        compiled: cfg!(feature = "azure"),
        priority: 3,
        signal_doc: "AZURE_KEYVAULT_URL is set",
        #[cfg(feature = "azure")]
        signal: |var| super::azure::detect_signal(var),
        // The same rule, for a build without the module: the signal is still reported (and then refused).
        #[cfg(not(feature = "azure"))]
        signal: |var| set(var, "AZURE_KEYVAULT_URL").map(|_| "AZURE_KEYVAULT_URL is set".to_string()),
        #[cfg(feature = "azure")]
        build: super::azure::registry_build,
        #[cfg(not(feature = "azure"))]
        build: absent_build,
        #[cfg(feature = "azure")]
        doctor: super::azure::doctor,
        #[cfg(not(feature = "azure"))]
        doctor: no_probes,
        #[cfg(feature = "azure")]
        policy: Some(super::azure::policy::RENDERER),
        #[cfg(not(feature = "azure"))]
        policy: None,
        #[cfg(feature = "azure")]
        name_map: Some(azure_names),
        #[cfg(not(feature = "azure"))]
        name_map: None,
        store_path: None,
        default_for_put: false,
        leases: None,
        #[cfg(feature = "azure")]
        external_secrets: Some(super::azure::policy::EXTERNAL_SECRETS),
        #[cfg(not(feature = "azure"))]
        external_secrets: None,
        staging_labels: false,
    },
    Descriptor {
        name: names::GCP.name,
        aliases: names::GCP.aliases,
        title: "Google Cloud Secret Manager",
        feature: "gcp",
        compiled: cfg!(feature = "gcp"),
        priority: 4,
        signal_doc: "GOOGLE_CLOUD_PROJECT or GCP_PROJECT_ID is set",
        #[cfg(feature = "gcp")]
        signal: |var| super::gcp::detect_signal(var),
        #[cfg(not(feature = "gcp"))]
        signal: |var| {
            ["GOOGLE_CLOUD_PROJECT", "GCP_PROJECT_ID"]
                .into_iter()
                .find(|n| set(var, n).is_some())
                .map(|n| format!("{n} is set"))
        },
        #[cfg(feature = "gcp")]
        build: super::gcp::registry_build,
        #[cfg(not(feature = "gcp"))]
        build: absent_build,
        #[cfg(feature = "gcp")]
        doctor: super::gcp::doctor,
        #[cfg(not(feature = "gcp"))]
        doctor: no_probes,
        #[cfg(feature = "gcp")]
        policy: Some(super::gcp::policy::RENDERER),
        #[cfg(not(feature = "gcp"))]
        policy: None,
        #[cfg(feature = "gcp")]
        name_map: Some(gcp_names),
        #[cfg(not(feature = "gcp"))]
        name_map: None,
        store_path: None,
        default_for_put: false,
        leases: None,
        #[cfg(feature = "gcp")]
        external_secrets: Some(super::gcp::policy::EXTERNAL_SECRETS),
        #[cfg(not(feature = "gcp"))]
        external_secrets: None,
        staging_labels: false,
    },
    Descriptor {
        name: names::LOCAL.name,
        aliases: names::LOCAL.aliases,
        title: "the local encrypted store",
        feature: "local",
        compiled: cfg!(feature = "local"),
        priority: 5,
        signal_doc: "a local store exists at SKM_LOCAL_PATH (default .skm)",
        signal: |var| {
            let path = local_store_path(var);
            // The store's layout: `secrets/` inside the store directory (see `backend::local`).
            path.join("secrets")
                .is_dir()
                .then(|| format!("a local store exists at {}", path.display()))
        },
        #[cfg(feature = "local")]
        build: super::local::registry_build,
        #[cfg(not(feature = "local"))]
        build: absent_build,
        #[cfg(feature = "local")]
        doctor: super::local::doctor,
        #[cfg(not(feature = "local"))]
        doctor: no_probes,
        policy: None,
        name_map: None,
        store_path: Some(local_store_path),
        default_for_put: true,
        leases: None,
        external_secrets: None,
        staging_labels: false,
    },
    Descriptor {
        name: names::SSM.name,
        aliases: names::SSM.aliases,
        title: "AWS SSM Parameter Store",
        feature: "ssm",
        compiled: cfg!(feature = "ssm"),
        // It shares AWS's variables and has no signal of its own: chosen only by `SKM_BACKEND=ssm`.
        priority: 6,
        signal_doc: "none of its own (it shares AWS's variables): SKM_BACKEND=ssm",
        signal: |_| None,
        #[cfg(feature = "ssm")]
        build: super::ssm::registry_build,
        #[cfg(not(feature = "ssm"))]
        build: absent_build,
        #[cfg(feature = "ssm")]
        doctor: super::ssm::doctor,
        #[cfg(not(feature = "ssm"))]
        doctor: no_probes,
        #[cfg(feature = "ssm")]
        policy: Some(super::ssm::policy::RENDERER),
        #[cfg(not(feature = "ssm"))]
        policy: None,
        name_map: None,
        store_path: None,
        default_for_put: false,
        leases: None,
        external_secrets: None,
        staging_labels: false,
    },
    Descriptor {
        name: names::SOPS.name,
        aliases: names::SOPS.aliases,
        title: "SOPS files",
        feature: "sops",
        compiled: cfg!(feature = "sops"),
        priority: 7,
        signal_doc: "none: SKM_BACKEND=sops",
        signal: |_| None,
        #[cfg(feature = "sops")]
        build: super::sops::registry_build,
        #[cfg(not(feature = "sops"))]
        build: absent_build,
        #[cfg(feature = "sops")]
        doctor: super::sops::doctor,
        #[cfg(not(feature = "sops"))]
        doctor: no_probes,
        policy: None,
        name_map: None,
        store_path: None,
        default_for_put: false,
        leases: None,
        external_secrets: None,
        staging_labels: false,
    },
    Descriptor {
        name: names::KEYRING.name,
        aliases: names::KEYRING.aliases,
        title: "the OS keyring",
        feature: "keyring",
        compiled: cfg!(feature = "keyring"),
        priority: 8,
        signal_doc: "none: every desktop has a keyring, so SKM_BACKEND=keyring",
        signal: |_| None,
        #[cfg(feature = "keyring")]
        build: super::keyring::registry_build,
        #[cfg(not(feature = "keyring"))]
        build: absent_build,
        #[cfg(feature = "keyring")]
        doctor: super::keyring::doctor,
        #[cfg(not(feature = "keyring"))]
        doctor: no_probes,
        policy: None,
        name_map: None,
        store_path: None,
        default_for_put: false,
        leases: None,
        external_secrets: None,
        staging_labels: false,
    },
];

/// Compile-time checks that a backend named by `#[secret(backend = "...")]` is compiled into this build: the
/// derive calls `compiled::<name>::<()>()` at the attribute's value, and the trait below is implemented only
/// under the backend's cargo feature, so a missing feature is a compile error there, naming the feature.
///
/// A backend's line here belongs to its registry entry: `on_unimplemented` takes string literals only (no
/// `concat!`), so each backend spells its own, and a test checks that the names are the registry's.
#[doc(hidden)]
pub mod compiled {
    macro_rules! backends {
        ($($fn_name:ident, $trait_name:ident, $feature:literal, $message:literal, $note:literal;)*) => {
            $(
                #[doc(hidden)]
                #[diagnostic::on_unimplemented(message = $message, label = "this backend's cargo feature is off", note = $note)]
                pub trait $trait_name {}
                #[cfg(feature = $feature)]
                impl $trait_name for () {}
                #[doc(hidden)]
                pub fn $fn_name<T: $trait_name>() {}
            )*
            /// The backends checked here, for the test that they are the registry's.
            #[cfg(test)]
            pub(super) const NAMES: &[&str] = &[$(stringify!($fn_name)),*];
        };
    }
    backends! {
        aws, AwsCompiled, "aws", "the `aws` backend is not compiled into this build",
            "enable its cargo feature: skm-secrets = {{ version = \"0.1\", features = [\"aws\"] }}";
        vault, VaultCompiled, "vault", "the `vault` backend is not compiled into this build",
            "enable its cargo feature: skm-secrets = {{ version = \"0.1\", features = [\"vault\"] }}";
        azure, AzureCompiled, "azure", "the `azure` backend is not compiled into this build",
            "enable its cargo feature: skm-secrets = {{ version = \"0.1\", features = [\"azure\"] }}";
        gcp, GcpCompiled, "gcp", "the `gcp` backend is not compiled into this build",
            "enable its cargo feature: skm-secrets = {{ version = \"0.1\", features = [\"gcp\"] }}";
        local, LocalCompiled, "local", "the `local` backend is not compiled into this build",
            "enable its cargo feature: skm-secrets = {{ version = \"0.1\", features = [\"local\"] }}";
        ssm, SsmCompiled, "ssm", "the `ssm` backend is not compiled into this build",
            "enable its cargo feature: skm-secrets = {{ version = \"0.1\", features = [\"ssm\"] }}";
        sops, SopsCompiled, "sops", "the `sops` backend is not compiled into this build",
            "enable its cargo feature: skm-secrets = {{ version = \"0.1\", features = [\"sops\"] }}";
        keyring, KeyringCompiled, "keyring", "the `keyring` backend is not compiled into this build",
            "enable its cargo feature: skm-secrets = {{ version = \"0.1\", features = [\"keyring\"] }}";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_descriptor_takes_its_names_from_the_one_table() {
        let registry: Vec<_> = all().iter().map(|d| (d.name, d.aliases)).collect();
        let table: Vec<_> = names::ALL.iter().map(|n| (n.name, n.aliases)).collect();
        assert_eq!(registry, table);
    }

    #[test]
    fn every_descriptor_has_its_compile_time_check() {
        let registry: Vec<&str> = all().iter().map(|d| d.name).collect();
        assert_eq!(
            compiled::NAMES,
            registry,
            "one `backends!` line per descriptor, in registry order"
        );
        for d in all() {
            assert_eq!(d.feature, d.name, "`compiled` spells the feature as the name");
        }
    }

    #[test]
    fn names_are_unique_and_priorities_ordered() {
        let names = names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "a name or alias is used twice: {names:?}");
        let priorities: Vec<u8> = all().iter().map(|d| d.priority).collect();
        assert!(priorities.windows(2).all(|w| w[0] < w[1]), "{priorities:?}");
        for d in all() {
            assert!(find(&d.name.to_uppercase()).is_some_and(|f| f.name == d.name));
        }
    }

    #[test]
    fn at_most_one_backend_takes_the_first_put() {
        assert!(all().iter().filter(|d| d.default_for_put).count() <= 1);
        assert!(all()
            .iter()
            .filter(|d| d.default_for_put)
            .all(|d| d.store_path.is_some()));
    }

    #[test]
    fn struct_names_are_checked_before_they_reach_a_comment() {
        let input = |name: &'static str| PolicyInput {
            struct_name: name,
            paths: &[],
            option: &|_| None,
            env: &|_| None,
        };
        assert!(input("AppSecrets").checked_struct_name().is_ok());
        for bad in ["", "1A", "A\npath \"*\" {", "A B", "A#"] {
            assert!(input(bad).checked_struct_name().is_err(), "{bad:?}");
        }
    }
}
