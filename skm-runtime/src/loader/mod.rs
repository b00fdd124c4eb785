//! The [`Loader`]: the builder, and the single pipeline entry that [`Loader::load`],
//! [`Loader::load_report`], [`Loader::check_fields`] and every [`Loader::watch`] refresh run.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::registry::{self};
use crate::backend::{Backend, FailureKind};
use crate::error::Error;
use crate::plan::{self, ResolvedField};
use crate::report::{Check, Loaded};
use crate::resolve::files::SecretsDir;
use crate::resolve::layer::{EnvSource, Layer};
use crate::values::{self, RawValues, Secrets};

#[cfg(feature = "local")]
mod cache;
mod refs;
mod run;

pub use refs::Reference;

pub(crate) use run::Prior;
use run::{canonical, Detected};

/// Loads a [`Secrets`] struct from a backend, the process environment, a `.env` file and declared defaults.
///
/// Default precedence, highest first: backend → secret files → process env → `.env` → default
/// ([`Layer::DEFAULT_ORDER`]). Secret files are one file per declaration, named by its `env`, in
/// `SKM_SECRETS_DIR` or `/run/secrets` ([`Loader::secrets_dir`]); a variable `NAME_FILE` (when `NAME` is
/// unset) names a file holding `NAME`'s value, as Docker images do.
/// A secret that is *not found* in the backend falls back silently: env and `.env` are the intended
/// fallbacks. When the backend is unreachable or throttles and a lower layer has the value, the load
/// succeeds and logs a warning; [`Loader::strict`] makes that an error. A backend that *denies access* or
/// *cannot decrypt* is misconfigured, not out: that fails the field unless fallback is allowed for that
/// kind ([`Loader::allow_fallback_on`], `SKM_ALLOW_FALLBACK`).
///
/// A `default = "..."` on a secret field is compiled into the binary: it wins whenever no higher layer has
/// a value, in every environment the binary runs in. Use it for non-secret settings (ports, hosts), not as
/// a fallback credential.
///
/// # Mixed backends
/// A field declared `#[secret(path = "...", backend = "vault")]` is read from the backend registered under
/// that name ([`Loader::with_backend`]), or, with [`Loader::from_env`], from the registry backend whose
/// signal is present (`VAULT_ADDR` for `vault`), built the first time a load needs it. Fields without
/// `backend` use the default backend ([`Loader::backend`]). One load fetches every backend's requests
/// concurrently, and each field's [`Origin`](crate::Origin) names the backend that served it. A routed
/// backend that is out follows the fallback rules above for its own fields; a field routed to a backend no
/// one configured fails (with every other failing field), unless the loader has no backend at all.
///
/// Loading never modifies the process environment and never starts a process (the `git` check for an
/// unignored `.env` is `skm check`'s and `skm doctor`'s job).
///
/// # Example
/// ```
/// use skm_runtime::{Layer, Loader};
/// use skm_runtime::backend::MemoryBackend;
///
/// let loader = Loader::new()
///     .backend(MemoryBackend::new())
///     .precedence([Layer::Env, Layer::Backend, Layer::Default]) // env overrides for local work
///     .no_dotenv()
///     .strict(true);
/// assert_eq!(loader.backend_name().as_deref(), Some("memory"));
/// ```
#[derive(Clone)]
pub struct Loader {
    backend: Option<Arc<dyn Backend>>,
    backend_reason: String,
    /// The registry name of the default backend, when detection chose it: routed fields naming it use it.
    backend_kind: Option<&'static str>,
    /// Backends added with [`Loader::with_backend`], by canonical registry name.
    routed: BTreeMap<String, Arc<dyn Backend>>,
    /// Registry backends whose signal [`Loader::from_env`] saw, built when a routed field first needs one.
    detected: Arc<Vec<Detected>>,
    order: Vec<Layer>,
    dotenv: Option<PathBuf>,
    secrets_dir: SecretsDir,
    env: EnvSource,
    profile: Option<String>,
    strict: bool,
    allow_fallback: Vec<FailureKind>,
    deadline: Option<Duration>,
    empty_is_absent: bool,
    /// The offline cache's maximum age ([`Loader::offline_cache`]); `None`: no cache.
    offline_cache: Option<Duration>,
    /// How the leases of `#[secret(dynamic = "...")]` fields are kept.
    lease_options: crate::lease::LeaseOptions,
}

impl fmt::Debug for Loader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("backend", &self.backend_name())
            .field("backend_reason", &self.backend_reason)
            .field("routed", &self.routed.keys().collect::<Vec<_>>())
            .field(
                "detected",
                &self.detected.iter().map(|d| d.descriptor.name).collect::<Vec<_>>(),
            )
            .field("order", &self.order)
            .field("dotenv", &self.dotenv)
            .field("secrets_dir", &self.secrets_dir)
            .field("env", &self.env)
            .field("profile", &self.profile)
            .field("strict", &self.strict)
            .field("allow_fallback", &self.allow_fallback)
            .field("deadline", &self.deadline)
            .field("empty_is_absent", &self.empty_is_absent)
            .field("offline_cache", &self.offline_cache)
            .finish()
    }
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

impl Loader {
    /// The deadline of a load when none is set: 30 s for the whole load, files included ([`Loader::deadline`]).
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

    /// A loader with no backend: process env, `./.env` and defaults, in the default order, under the default
    /// deadline ([`Loader::DEFAULT_DEADLINE`]).
    pub fn new() -> Self {
        Loader {
            backend: None,
            backend_reason: "no backend configured".into(),
            backend_kind: None,
            routed: BTreeMap::new(),
            detected: Arc::default(),
            order: Layer::DEFAULT_ORDER.to_vec(),
            dotenv: Some(PathBuf::from(".env")),
            secrets_dir: SecretsDir::Auto,
            env: EnvSource::Process,
            profile: None,
            strict: false,
            allow_fallback: Vec::new(),
            deadline: Some(Self::DEFAULT_DEADLINE),
            empty_is_absent: true,
            offline_cache: None,
            lease_options: crate::lease::LeaseOptions::new(),
        }
    }

    /// A loader whose backend is chosen from the environment, as `AppSecrets::load()` does.
    ///
    /// Reads `SKM_BACKEND` (`aws`, `vault`, `local`, `none`), which always wins; otherwise `AWS_REGION` or
    /// `AWS_DEFAULT_REGION` selects AWS, `VAULT_ADDR` selects Vault, an existing local store selects it,
    /// and else no backend is used. Also reads `SKM_PROFILE` (at load time), `SKM_DOTENV` (the `.env`
    /// path; empty disables it), `SKM_SECRETS_DIR` (at load time: the secret files directory, see
    /// [`Loader::secrets_dir`]), `SKM_STRICT` (`1`/`true`), `SKM_ALLOW_FALLBACK` (a comma-separated list
    /// of `forbidden`, `decryption`: see [`Loader::allow_fallback_on`]) and `SKM_DEADLINE` (seconds, `0` for
    /// none: see [`Loader::deadline`]). See the `detect` module for the backend rules.
    ///
    /// Setting the backend up (reading its configuration, logging in) is bounded by the same deadline.
    ///
    /// Every other compiled-in backend whose signal is present (e.g. `VAULT_ADDR` beside `AWS_REGION`)
    /// serves the fields routed to it with `#[secret(backend = "vault")]`; it is built from the process
    /// environment the first time a load has such a field, and never otherwise. `SKM_BACKEND=none` turns
    /// every backend off, routed ones included.
    ///
    /// # Errors
    /// `SKM_BACKEND`, `SKM_ALLOW_FALLBACK` or `SKM_DEADLINE` has an unknown value, `SKM_BACKEND` names a
    /// backend this build lacks, or the backend cannot be set up (within the deadline).
    pub async fn from_env() -> Result<Self, Error> {
        let lookup = |name: &str| std::env::var(name).ok();
        let mut loader = Loader::new();
        if let Some(seconds) = lookup("SKM_DEADLINE") {
            loader = loader.deadline(parse_deadline(&seconds)?);
        }
        let choice = crate::detect::detect(&lookup)?;
        tracing::info!(target: "skm", backend = %choice.name(), reason = %choice.reason, "skm backend selected");
        let build = crate::detect::build(&choice);
        loader.backend = match loader.deadline {
            Some(d) => tokio::time::timeout(d, build).await.map_err(|_| Error::Backend {
                backend: choice.name().to_string(),
                detail: format!(
                    "setting the backend up ({}) did not finish within the deadline of {} (SKM_DEADLINE)",
                    choice.reason,
                    crate::failure::seconds(d)
                ),
                source: None,
            })??,
            None => build.await?,
        };
        loader.backend_kind = choice.backend.map(|d| d.name);
        let explicit_none = lookup("SKM_BACKEND").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
        if !explicit_none {
            let detected = registry::all()
                .iter()
                .filter(|d| d.compiled && Some(d.name) != loader.backend_kind)
                .filter_map(|d| {
                    (d.signal)(&lookup).map(|reason| Detected {
                        descriptor: d,
                        reason,
                        built: tokio::sync::OnceCell::new(),
                    })
                })
                .collect();
            loader.detected = Arc::new(detected);
        }
        loader.backend_reason = choice.reason;
        if let Some(path) = lookup("SKM_DOTENV") {
            loader.dotenv = (!path.is_empty()).then(|| PathBuf::from(path));
        }
        if let Some(strict) = lookup("SKM_STRICT") {
            loader.strict = matches!(strict.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on");
        }
        if let Some(age) = lookup("SKM_OFFLINE_CACHE") {
            #[cfg(feature = "local")]
            if let Some(max_age) = cache::parse_max_age(&age)? {
                loader = loader.offline_cache(max_age);
            }
            #[cfg(not(feature = "local"))]
            if !matches!(age.trim(), "" | "0" | "off") {
                return Err(Error::config(
                    "SKM_OFFLINE_CACHE: the offline cache is kept with the local store's key; enable its cargo \
                     feature: skm-secrets = { version = \"0.1\", features = [\"local\"] }"
                        .into(),
                ));
            }
        }
        if let Some(kinds) = lookup("SKM_ALLOW_FALLBACK") {
            for kind in kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                loader = loader.allow_fallback_on(parse_fallback_kind(kind)?);
            }
        }
        Ok(loader)
    }

    /// Uses `backend` as the backend layer.
    pub fn backend(self, backend: impl Backend + 'static) -> Self {
        self.backend_arc(Arc::new(backend))
    }

    /// Uses a shared backend as the backend layer.
    pub fn backend_arc(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend_reason = "set explicitly".into();
        self.backend = Some(backend);
        self
    }

    /// Adds `backend` under `name`, for the fields declared `#[secret(backend = "name")]`, beside the default
    /// backend ([`Loader::backend`]) that serves every other field.
    ///
    /// `name` is a registry name or alias (`aws`, `vault`, `openbao`, `azure`, `gcp`, `local`; case does
    /// not matter); adding a second backend under the same name replaces the first.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::Loader;
    /// use skm_runtime::backend::MemoryBackend;
    ///
    /// let loader = Loader::new()
    ///     .backend(MemoryBackend::new().named("aws"))
    ///     .with_backend("OpenBao", MemoryBackend::new().named("vault"));
    /// assert_eq!(loader.routed_backend("vault").map(|b| b.name()).as_deref(), Some("vault"));
    /// ```
    pub fn with_backend(self, name: &str, backend: impl Backend + 'static) -> Self {
        self.with_backend_arc(name, Arc::new(backend))
    }

    /// Like [`Loader::with_backend`], with a shared backend.
    pub fn with_backend_arc(mut self, name: &str, backend: Arc<dyn Backend>) -> Self {
        self.routed.insert(canonical(name), backend);
        self
    }

    /// The backend added under `name` with [`Loader::with_backend`] (any alias of it works).
    pub fn routed_backend(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.routed.get(&canonical(name))
    }

    /// Removes every backend, routed ones included: only env, `.env` and defaults are used.
    pub fn no_backend(mut self) -> Self {
        self.backend = None;
        self.backend_kind = None;
        self.routed.clear();
        self.detected = Arc::default();
        self.backend_reason = "no backend configured".into();
        self
    }

    /// The backend's name, if one is configured.
    pub fn backend_name(&self) -> Option<String> {
        self.backend.as_ref().map(|b| b.name())
    }

    /// The backend, if one is configured.
    pub fn backend_ref(&self) -> Option<&Arc<dyn Backend>> {
        self.backend.as_ref()
    }

    /// Sets the precedence, highest first. Layers left out are not consulted.
    pub fn precedence(mut self, order: impl IntoIterator<Item = Layer>) -> Self {
        let mut seen = HashSet::new();
        self.order = order.into_iter().filter(|l| seen.insert(*l)).collect();
        self
    }

    /// Reads `.env` from `path` instead of `./.env`. A missing file is fine.
    pub fn dotenv(mut self, path: impl Into<PathBuf>) -> Self {
        self.dotenv = Some(path.into());
        self
    }

    /// Does not read any `.env` file.
    pub fn no_dotenv(mut self) -> Self {
        self.dotenv = None;
        self
    }

    /// Reads the [`Layer::Files`] layer from `dir`: the value of a declaration with `env = "NAME"` is the
    /// content of `dir/NAME`, without one trailing newline (`\n` or `\r\n`).
    ///
    /// Without this call the directory is `SKM_SECRETS_DIR` (read from the loader's environment at load
    /// time; empty disables the layer), else `/run/secrets` when it exists. A missing file falls through
    /// to the next layer; a file that exists but cannot be read fails the field with an error naming the
    /// file. Files are read through their names on every load and hot-reload refresh, so the Kubernetes
    /// `..data` symlink swap of a secret volume is picked up by [`Loader::watch`].
    ///
    /// # Example
    /// ```
    /// use skm_runtime::{Layer, Loader};
    /// let loader = Loader::new()
    ///     .secrets_dir("/var/run/app-secrets")
    ///     .precedence([Layer::Env, Layer::Files, Layer::Default]); // env overrides files here
    /// assert!(format!("{loader:?}").contains("app-secrets"));
    /// ```
    pub fn secrets_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.secrets_dir = SecretsDir::Path(dir.into());
        self
    }

    /// Does not read any secret files directory (the [`Layer::Files`] layer is off).
    pub fn no_secrets_dir(mut self) -> Self {
        self.secrets_dir = SecretsDir::Disabled;
        self
    }

    /// Reads environment variables from `vars` instead of the process environment.
    pub fn env_vars<K: Into<String>, V: Into<String>>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        self.env = EnvSource::Map(Arc::new(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect()));
        self
    }

    /// Sets the profile that replaces `{profile}` in prefixes and dynamic paths (default: `SKM_PROFILE`).
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Strict mode: a backend outage is an error even when a lower layer has the value.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Lets a lower layer (or `None` for an `Option` field) stand in when the backend fails with `kind`.
    ///
    /// Only [`FailureKind::Forbidden`] and [`FailureKind::Decryption`] need this: by default they fail the
    /// load, because denied access or a wrong key is a configuration mistake that a fallback would hide.
    /// Outages (unavailable, throttled) fall back with a warning anyway, unless [`Loader::strict`]; strict
    /// mode wins over this setting. The environment variable `SKM_ALLOW_FALLBACK=forbidden,decryption` does
    /// the same for [`Loader::from_env`].
    ///
    /// # Example
    /// ```
    /// use skm_runtime::Loader;
    /// use skm_runtime::backend::FailureKind;
    /// let loader = Loader::new().allow_fallback_on(FailureKind::Forbidden);
    /// assert!(format!("{loader:?}").contains("Forbidden"));
    /// ```
    pub fn allow_fallback_on(mut self, kind: FailureKind) -> Self {
        if !self.allow_fallback.contains(&kind) {
            self.allow_fallback.push(kind);
        }
        self
    }

    /// How the leases of `#[secret(dynamic = "...")]` fields are renewed, re-issued and overlapped, whichever
    /// backend issues them; [`LeaseOptions::new`](crate::lease::LeaseOptions::new) by default.
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// use skm_runtime::{lease::LeaseOptions, Loader};
    /// let loader = Loader::new().lease_options(LeaseOptions::new().overlap(Duration::from_secs(30)));
    /// # let _ = loader;
    /// ```
    pub fn lease_options(mut self, options: crate::lease::LeaseOptions) -> Self {
        self.lease_options = options;
        self
    }

    /// Bounds every load and hot-reload refresh: the backend calls and the file reads (secret files, `.env`)
    /// all end within `deadline`; past it, what did not answer counts as unavailable and the error names the
    /// backend, what it was waiting for and the time spent. The default is [`Loader::DEFAULT_DEADLINE`] (30 s);
    /// `SKM_DEADLINE` (seconds) sets it for [`Loader::from_env`].
    ///
    /// `Duration::ZERO` means no deadline. That is dangerous: a backend that accepts connections and never
    /// answers then holds the load, and the service's start, forever.
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// use skm_runtime::Loader;
    /// assert_eq!(Loader::new().deadline_limit(), Some(Duration::from_secs(30)));
    /// assert_eq!(Loader::new().deadline(Duration::from_secs(5)).deadline_limit(), Some(Duration::from_secs(5)));
    /// assert_eq!(Loader::new().deadline(Duration::ZERO).deadline_limit(), None);
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = (!deadline.is_zero()).then_some(deadline);
        self
    }

    /// The deadline of a load, `None` when there is none ([`Loader::deadline`]).
    pub fn deadline_limit(&self) -> Option<Duration> {
        self.deadline
    }

    /// Keeps a last-known-good copy of what the backends answered, for a load to start on when a backend is
    /// unreachable: opt-in, off by default (env `SKM_OFFLINE_CACHE=24h` for [`Loader::from_env`]).
    ///
    /// After each typed load ([`Loader::load`]) whose fields all resolved, the backends' answers for the
    /// struct and profile are written encrypted with the local store's key, beside it
    /// (`<SKM_LOCAL_PATH>/cache/`, atomically, mode 0600). When a backend is *unavailable* at a later load
    /// (not when it denies access, reports a secret missing or fails to decrypt), its answers come from
    /// that copy if it is younger than `max_age`: the field's provenance says `offline cache (written 3 h ago,
    /// from …)` and a warning is printed (on stderr when no `tracing` subscriber is installed). Strict mode
    /// never uses the cache; leased fields are never cached. `Duration::ZERO` turns it off.
    ///
    /// The cache needs the `local` feature (the default): without it, a load with the cache set fails with
    /// [`Error::Config`].
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// use skm_runtime::Loader;
    /// let loader = Loader::new().offline_cache(Duration::from_secs(24 * 3600));
    /// # let _ = loader;
    /// ```
    pub fn offline_cache(mut self, max_age: Duration) -> Self {
        self.offline_cache = (!max_age.is_zero()).then_some(max_age);
        self
    }

    /// Whether an empty env or `.env` value of a secret-typed field counts as absent (the default: `true`).
    ///
    /// `KEY=` left in a `.env` template, or `export API_KEY=` in a CI job, is never a real secret: by default
    /// the next layer is tried, and a field no layer has fails as `missing (empty in env var KEY)`. A `plain`
    /// field's empty text stays a value. `empty_is_absent(false)` makes an empty value a value everywhere.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::Loader;
    /// let loader = Loader::new().empty_is_absent(false);
    /// assert!(format!("{loader:?}").contains("empty_is_absent: false"));
    /// ```
    pub fn empty_is_absent(mut self, absent: bool) -> Self {
        self.empty_is_absent = absent;
        self
    }

    /// Loads `T`.
    ///
    /// # Errors
    /// [`Error::Load`] lists every field that could not be resolved, with the sources tried;
    /// [`Error::Config`] and [`Error::Dotenv`] report set-up problems.
    pub async fn load<T: Secrets>(&self) -> Result<T, Error> {
        self.load_report().await.map(|l| l.value)
    }

    /// Loads `T` and reports where each field came from.
    ///
    /// # Errors
    /// As [`Loader::load`].
    pub async fn load_report<T: Secrets>(&self) -> Result<Loaded<T>, Error> {
        let fields = self.fields::<T>()?;
        let cache = self.cache_key(T::spec().name)?;
        let pass = self.run_cached(&fields, None, cache.as_ref()).await?;
        // Leases are issued once per load, after the fetch, so that a failed fetch issues none.
        let leases = crate::fetch::issue_fields(
            self.backend.as_ref(),
            &T::spec().leased_fields_for(self.resolved_profile()?.as_deref())?,
            self.lease_options,
            self.deadline,
        )
        .await;
        values::build(&fields, pass.resolved.expect("a first pass always resolves"), leases)
    }

    /// Resolves declared fields without building a struct and without returning any value: for tools
    /// (`skm check`) that only know the declarations.
    ///
    /// Each entry is the field's origin (`None` for an optional field absent everywhere) or why it failed.
    /// Types are not checked here; a typed [`Loader::load`] does that.
    ///
    /// # Errors
    /// Set-up problems only ([`Error::Config`], [`Error::Dotenv`]); field failures are in the entries.
    pub async fn check_fields(&self, fields: &[ResolvedField]) -> Result<Check, Error> {
        let pass = self.run(fields, None).await?;
        Ok(pass.resolved.expect("a first pass always resolves").check(fields))
    }

    /// Resolves `fields` and returns each winning value untyped (text or bytes) with its origin: for
    /// adapters that hand values on as they are, such as [`skm::figment`](https://docs.rs/skm-secrets) and
    /// `skm run`. Types are not checked; `struct_name` names the declarations in the error.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::{Loader, StructSpec};
    /// static SPEC: StructSpec = StructSpec { name: "Empty", prefix: None, fields: &[] };
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let loader = Loader::new().no_dotenv();
    /// let fields = SPEC.resolve(None)?;
    /// let raw = loader.load_raw("Empty", &fields).await?;
    /// assert!(raw.fields.is_empty());
    /// # Ok::<(), skm_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Loader::load`], without type errors.
    pub async fn load_raw(
        &self,
        struct_name: impl Into<Cow<'static, str>>,
        fields: &[ResolvedField],
    ) -> Result<RawValues, Error> {
        self.load_raw_tracked(struct_name, fields).await.map(|(raw, _)| raw)
    }

    /// [`Loader::load_raw`], with what a later [`Loader::reload_raw`] compares against.
    ///
    /// # Errors
    /// As [`Loader::load_raw`].
    pub async fn load_raw_tracked(
        &self,
        struct_name: impl Into<Cow<'static, str>>,
        fields: &[ResolvedField],
    ) -> Result<(RawValues, RawTracker), Error> {
        let pass = self.run(fields, None).await?;
        let raw = values::raw_values(
            struct_name.into(),
            fields,
            pass.resolved.expect("a first pass always resolves"),
        )?;
        Ok((raw, RawTracker { prior: pass.prior }))
    }

    /// Loads `fields` again only if something may have changed since `tracker`'s load, as hot reload does:
    /// where the backend tells versions cheaply ([`Backend::current_versions`]: AWS's `DescribeSecret`,
    /// Vault's metadata, ...) only the paths whose version moved are fetched, and the layers are resolved
    /// again only when a backend value, a secret file or the `.env` file changed.
    ///
    /// `Ok(None)` when nothing changed. A backend that is out (unavailable, throttled, past the deadline)
    /// is an error that keeps `tracker` as it was: the caller keeps its last good values.
    ///
    /// # Example
    /// ```
    /// use std::borrow::Cow;
    /// use skm_runtime::backend::{MemoryBackend, SecretValue};
    /// use skm_runtime::plan::ResolvedField;
    /// use skm_runtime::spec::{SecretSpec, Validators, VersionPin};
    /// use skm_runtime::Loader;
    ///
    /// static TOKEN: SecretSpec = SecretSpec {
    ///     path: Some(Cow::Borrowed("app/token")), key: None, env: None, default: None, optional: false,
    ///     plain: false, type_name: Cow::Borrowed("SecretString"), version: VersionPin::Current,
    ///     validate: Validators::NONE, rotating: false, backend: None,
    /// };
    /// let fields = [ResolvedField {
    ///     id: "token".into(), path: Some("app/token".into()), key: None, env: None, spec: (&TOKEN).into(),
    /// }];
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let memory = MemoryBackend::new();
    /// memory.insert("app/token", SecretValue::text("one"));
    /// let loader = Loader::new().backend(memory.clone()).no_dotenv();
    /// let (_, mut tracker) = loader.load_raw_tracked("App", &fields).await?;
    /// assert!(loader.reload_raw("App", &fields, &mut tracker).await?.is_none());
    /// assert_eq!(memory.fetch_calls(), 1); // the unchanged reload asked for versions only
    /// memory.insert("app/token", SecretValue::text("two"));
    /// assert!(loader.reload_raw("App", &fields, &mut tracker).await?.is_some());
    /// # Ok::<(), skm_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Loader::load_raw`].
    pub async fn reload_raw(
        &self,
        struct_name: impl Into<Cow<'static, str>>,
        fields: &[ResolvedField],
        tracker: &mut RawTracker,
    ) -> Result<Option<RawValues>, Error> {
        let pass = self.run(fields, Some(&tracker.prior)).await?;
        let raw = match pass.resolved {
            Some(resolved) => Some(values::raw_values(struct_name.into(), fields, resolved)?),
            None => None,
        };
        tracker.prior = pass.prior;
        Ok(raw)
    }

    /// The profile used for `{profile}` in prefixes: [`Loader::profile`], else `SKM_PROFILE`.
    ///
    /// # Errors
    /// The profile is not a single safe path segment.
    pub fn resolved_profile(&self) -> Result<Option<String>, Error> {
        let profile = self.profile.clone().or_else(|| self.env.get("SKM_PROFILE"));
        if let Some(p) = &profile {
            plan::check_profile(p)?;
        }
        Ok(profile)
    }
}

/// What [`Loader::reload_raw`] compares against: the backends' last answers and the secret files' and `.env`
/// file's stamps. Opaque; its `Debug` shows no value.
pub struct RawTracker {
    prior: run::Prior,
}

impl fmt::Debug for RawTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawTracker").finish_non_exhaustive()
    }
}

/// `SKM_DEADLINE`: seconds, fractions allowed; `0` for none.
impl Loader {
    /// The offline cache of struct `name` for this loader's profile, when [`Loader::offline_cache`] is set.
    fn cache_key(&self, name: &str) -> Result<Option<run::CacheKey>, Error> {
        let Some(max_age) = self.offline_cache else {
            return Ok(None);
        };
        #[cfg(feature = "local")]
        {
            let profile = self.resolved_profile()?;
            let env = |n: &str| self.env.get(n);
            run::CacheKey::new(name, profile.as_deref(), max_age, &env).map(Some)
        }
        #[cfg(not(feature = "local"))]
        {
            let _ = (name, max_age);
            Err(Error::config(
                "the offline cache (Loader::offline_cache) is kept with the local store's key; enable its cargo \
                 feature: skm-secrets = { version = \"0.1\", features = [\"local\"] }"
                    .into(),
            ))
        }
    }
}

fn parse_deadline(text: &str) -> Result<Duration, Error> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Error::config(format!(
                "SKM_DEADLINE=`{}`: use a number of seconds, e.g. `30` or `2.5` (`0` for no deadline)",
                text.escape_debug()
            ))
        })
}

/// `SKM_ALLOW_FALLBACK`'s names.
fn parse_fallback_kind(name: &str) -> Result<FailureKind, Error> {
    match name.to_ascii_lowercase().as_str() {
        "forbidden" => Ok(FailureKind::Forbidden),
        "decryption" => Ok(FailureKind::Decryption),
        other => Err(Error::config(format!(
            "SKM_ALLOW_FALLBACK=`{other}`: use a comma-separated list of `forbidden`, `decryption`"
        ))),
    }
}
