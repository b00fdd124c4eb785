//! The load pipeline: spec → plan → fetch → layer → typed value.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use serde::de::DeserializeOwned;

use crate::backend::{Backend, FailureKind, FetchError, FetchRequest, FetchResult, SecretValue};
use crate::de::{self, Raw};
use crate::error::{Attempt, AttemptOutcome, FieldError, FieldProblem, LoadError};
use crate::layer::{DotenvFile, EnvSource, Found, Layer, Snapshot};
use crate::plan::Plan;
use crate::rotating::Rotating;
use crate::spec::{ResolvedField, Secrets, VersionPin};
use crate::Error;
use secrecy::ExposeSecret;

/// Loads a [`Secrets`] struct from a backend, the process environment, a `.env` file and declared defaults.
///
/// Default precedence, highest first: backend → process env → `.env` → default ([`Layer::DEFAULT_ORDER`]).
/// When the backend is unreachable (or denies access) and a lower layer has the value, the load succeeds
/// and logs a warning; [`Loader::strict`] makes that an error. A secret that is *not found* in the
/// backend falls back silently: env and `.env` are the intended fallbacks.
///
/// Loading never modifies the process environment.
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
    order: Vec<Layer>,
    dotenv: Option<PathBuf>,
    env: EnvSource,
    profile: Option<String>,
    strict: bool,
    deadline: Option<Duration>,
}

impl fmt::Debug for Loader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("backend", &self.backend_name())
            .field("backend_reason", &self.backend_reason)
            .field("order", &self.order)
            .field("dotenv", &self.dotenv)
            .field("env", &self.env)
            .field("profile", &self.profile)
            .field("strict", &self.strict)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

impl Loader {
    /// A loader with no backend: process env, `./.env` and defaults, in the default order.
    pub fn new() -> Self {
        Loader {
            backend: None,
            backend_reason: "no backend configured".into(),
            order: Layer::DEFAULT_ORDER.to_vec(),
            dotenv: Some(PathBuf::from(".env")),
            env: EnvSource::Process,
            profile: None,
            strict: false,
            deadline: None,
        }
    }

    /// A loader whose backend is chosen from the environment, as `AppSecrets::load()` does.
    ///
    /// Reads `SKM_BACKEND` (`aws`, `vault`, `local`, `none`), which always wins; otherwise `AWS_REGION` or
    /// `AWS_DEFAULT_REGION` selects AWS, `VAULT_ADDR` selects Vault, an existing local store selects it,
    /// and else no backend is used. Also reads `SKM_PROFILE` (at load time), `SKM_DOTENV` (the `.env`
    /// path; empty disables it) and `SKM_STRICT` (`1`/`true`). See [`crate::detect`] for the details.
    ///
    /// # Errors
    /// `SKM_BACKEND` has an unknown value, names a backend this build lacks, or the backend cannot be set up.
    pub async fn from_env() -> Result<Self, Error> {
        let lookup = |name: &str| std::env::var(name).ok();
        let choice = crate::detect::detect(&lookup)?;
        tracing::info!(target: "skm", backend = %choice.name(), reason = %choice.reason, "skm backend selected");
        let mut loader = Loader::new();
        loader.backend = crate::detect::build(&choice).await?;
        loader.backend_reason = choice.reason;
        if let Some(path) = lookup("SKM_DOTENV") {
            loader.dotenv = (!path.is_empty()).then(|| PathBuf::from(path));
        }
        if let Some(strict) = lookup("SKM_STRICT") {
            loader.strict = matches!(strict.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on");
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

    /// Removes the backend: only env, `.env` and defaults are used.
    pub fn no_backend(mut self) -> Self {
        self.backend = None;
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

    /// Reads environment variables from `vars` instead of the process environment.
    pub fn env_vars<K: Into<String>, V: Into<String>>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        self.env = EnvSource::Map(Arc::new(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect()));
        self
    }

    /// Sets the profile that replaces `{profile}` in prefixes (default: `SKM_PROFILE`).
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Strict mode: a backend outage is an error even when a lower layer has the value.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Bounds the backend fetch; past it, every backend path counts as unavailable.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
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
        let spec = T::spec();
        let fields = spec.resolve(self.resolved_profile()?.as_deref())?;
        let resolved = self.resolve_all(&fields).await?;
        Self::build(spec, &fields, resolved)
    }

    /// Builds `T` from resolved fields, collecting every failure.
    pub(crate) fn build<T: Secrets>(
        spec: &'static crate::spec::StructSpec,
        fields: &[ResolvedField],
        resolved: Resolved,
    ) -> Result<Loaded<T>, Error> {
        let mut values = Values {
            resolutions: &resolved.resolutions,
            scope: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            strict: resolved.strict,
        };
        let built = T::from_values(&mut values);
        let Values { errors, warnings, .. } = values;
        let mut provenance = resolved.provenance;
        provenance.warnings.extend(warnings);
        match built {
            Some(value) if errors.is_empty() => Ok(Loaded { value, provenance }),
            _ => Err(Error::Load(LoadError {
                struct_name: spec.name,
                declared: fields.len(),
                fields: errors,
            })),
        }
    }

    /// The profile used for `{profile}` in prefixes: [`Loader::profile`], else `SKM_PROFILE`.
    ///
    /// # Errors
    /// The profile is not a single safe path segment.
    pub fn resolved_profile(&self) -> Result<Option<String>, Error> {
        let profile = self.profile.clone().or_else(|| self.env.get("SKM_PROFILE"));
        if let Some(p) = &profile {
            check_profile(p)?;
        }
        Ok(profile)
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
        let resolved = self.resolve_all(fields).await?;
        let mut entries = Vec::new();
        for field in fields {
            entries.push(match resolved.resolutions.get(&field.id) {
                Some(Resolution::Found { origin, .. }) => Ok(Some(origin.clone())),
                Some(Resolution::Failed(e)) => Err(e.clone()),
                _ => Ok(None),
            });
        }
        Ok(Check {
            fields: fields.iter().map(|f| f.id.clone()).zip(entries).collect(),
            provenance: resolved.provenance,
        })
    }

    async fn resolve_all(&self, fields: &[ResolvedField]) -> Result<Resolved, Error> {
        check_unique(fields)?;
        let fetched = self.fetch(fields).await;
        self.resolve_with(fields, &fetched)
    }

    /// Layers already-fetched backend results with env, `.env` and defaults.
    pub(crate) fn resolve_with(
        &self,
        fields: &[ResolvedField],
        fetched: &HashMap<FetchRequest, FetchResult>,
    ) -> Result<Resolved, Error> {
        let dotenv = match (&self.dotenv, self.order.contains(&Layer::Dotenv)) {
            (Some(path), true) => DotenvFile::read(path)?,
            _ => None,
        };
        if let (Some(path), Some(_)) = (&self.dotenv, &dotenv) {
            crate::gitcheck::warn_if_not_ignored_in_background(path, "the .env file");
        }

        let sources = Sources {
            loader: self,
            fetched,
            dotenv: dotenv.as_ref(),
        };
        let mut resolutions = HashMap::new();
        let mut warnings = Vec::new();
        let mut origins = Vec::new();
        // Each layer is asked once per field; the found values move into figment, the rest stays for the report.
        let mut table: Vec<Vec<Lookup>> = fields
            .iter()
            .map(|f| self.order.iter().map(|layer| sources.lookup(*layer, f)).collect())
            .collect();
        let figment = sources.figment(fields, &mut table);
        for (field, lookups) in fields.iter().zip(table) {
            let res = sources.resolve(field, lookups, &figment, &mut warnings);
            origins.push(match &res {
                Resolution::Found { origin, .. } => origin.clone(),
                _ => Origin {
                    field: field.id.clone(),
                    layer: None,
                    source: "none".into(),
                    location: String::new(),
                    version: None,
                },
            });
            audit_field(field, &res);
            resolutions.insert(field.id.clone(), res);
        }
        Ok(Resolved {
            resolutions,
            strict: self.strict,
            provenance: Provenance {
                backend: self.backend_name(),
                backend_reason: self.backend_reason.clone(),
                fields: origins,
                warnings,
            },
        })
    }

    pub(crate) async fn fetch(&self, fields: &[ResolvedField]) -> HashMap<FetchRequest, FetchResult> {
        let Some(backend) = self.backend.as_ref().filter(|_| self.order.contains(&Layer::Backend)) else {
            return HashMap::new();
        };
        let plan = Plan::new(fields);
        if plan.is_empty() {
            return HashMap::new();
        }
        let started = std::time::Instant::now();
        let call = backend.fetch(&plan.requests);
        let results = match self.deadline {
            Some(d) => match tokio::time::timeout(d, call).await {
                Ok(r) => r,
                Err(_) => {
                    vec![Err(FetchError::unavailable(format!("deadline of {d:?} exceeded"))); plan.requests.len()]
                }
            },
            None => call.await,
        };
        tracing::debug!(target: "skm", backend = %backend.name(), paths = plan.requests.len(),
            elapsed_ms = started.elapsed().as_millis() as u64, "fetched");
        let results = if results.len() == plan.requests.len() {
            results
        } else {
            let why = format!(
                "backend returned {} results for {} requests",
                results.len(),
                plan.requests.len()
            );
            vec![Err(FetchError::new(FailureKind::Other, why)); plan.requests.len()]
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let backend_name = backend.name();
        for (request, result) in plan.requests.iter().zip(&results) {
            let (outcome, version) = match result {
                Ok(p) => ("found".to_string(), p.version.clone().unwrap_or_default()),
                Err(e) => (e.kind.to_string(), String::new()),
            };
            tracing::info!(target: "skm::audit", backend = %backend_name, path = %request.path,
                pin = %request.version, outcome = %outcome, version = %version, latency_ms, "fetch");
        }
        plan.requests.into_iter().zip(results).collect()
    }
}

pub(crate) fn check_profile(p: &str) -> Result<(), Error> {
    let ok = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && p != "."
        && p != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid profile `{p}`: use letters, digits, `-`, `_` or `.` (e.g. SKM_PROFILE=prod)"
        )))
    }
}

/// Flattened structs can repeat a name the derive could not see; catch it before loading.
fn check_unique(fields: &[ResolvedField]) -> Result<(), Error> {
    let mut envs = HashMap::new();
    let mut paths = HashMap::new();
    for f in fields {
        if let Some(e) = f.env {
            if let Some(prev) = envs.insert(e, &f.id) {
                return Err(Error::Config(format!(
                    "fields `{prev}` and `{}` both read env var {e}: give each its own name",
                    f.id
                )));
            }
        }
        if let Some(p) = &f.path {
            if let Some(prev) = paths.insert((p.clone(), f.key, f.spec.version), &f.id) {
                return Err(Error::Config(format!(
                    "fields `{prev}` and `{}` both read path `{p}`{}: give each its own key",
                    f.id,
                    f.key.map(|k| format!(" key `{k}`")).unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

pub(crate) struct Resolved {
    resolutions: HashMap<String, Resolution>,
    strict: bool,
    provenance: Provenance,
}

/// The result of [`Loader::check_fields`]: per field, its origin or its failure. Never a value.
#[derive(Debug, Clone)]
pub struct Check {
    /// `(field id, origin or failure)`, in declaration order.
    pub fields: Vec<(String, Result<Option<Origin>, FieldError>)>,
    /// Where each resolved field came from, and warnings.
    pub provenance: Provenance,
}

impl Check {
    /// Whether every field resolved.
    pub fn is_ok(&self) -> bool {
        self.fields.iter().all(|(_, r)| r.is_ok())
    }
}

/// A loaded struct and where each field came from.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The loaded struct.
    pub value: T,
    /// Where each field came from.
    pub provenance: Provenance,
}

/// Where each field of a load came from. Never holds a value.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The backend's name, if one was configured.
    pub backend: Option<String>,
    /// Why this backend (or none) was chosen.
    pub backend_reason: String,
    /// One entry per declared secret, in declaration order.
    pub fields: Vec<Origin>,
    /// Warnings raised during the load (e.g. a fallback because the backend was unreachable).
    pub warnings: Vec<String>,
}

impl Provenance {
    /// The origin of the field with dotted id `field` (`db.url` for a flattened field).
    pub fn get(&self, field: &str) -> Option<&Origin> {
        self.fields.iter().find(|o| o.field == field)
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Some(b) => writeln!(f, "backend: {b} ({})", self.backend_reason)?,
            None => writeln!(f, "backend: none ({})", self.backend_reason)?,
        }
        let width = self.fields.iter().map(|o| o.field.len()).max().unwrap_or(0);
        for o in &self.fields {
            writeln!(f, "  {:width$}  {}", o.field, o)?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}

/// Where one field's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Dotted field id.
    pub field: String,
    /// The layer that supplied the value; `None` for an optional field absent everywhere.
    pub layer: Option<Layer>,
    /// The source's name (`env var`, `.env file`, the backend's name, `default`).
    pub source: String,
    /// The location inside the source (`JWT_SECRET_KEY`, `./.env line 3`, `secret auth/jwt key secret`).
    pub location: String,
    /// The backend's version of the secret, when the backend supplied the value.
    pub version: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.layer {
            None => f.write_str("absent (None)"),
            Some(_) => write!(f, "{}: {}", self.source, self.location),
        }
    }
}

/// What one layer said about one field.
enum Lookup {
    Found(Found, String),
    Missing(String),
    Failed(FailureKind, String),
    Skipped(String),
}

/// The outcome for one field, consumed by the generated `from_values`.
pub(crate) enum Resolution {
    Found {
        raw: Found,
        origin: Origin,
        field: ResolvedField,
        attempts: Vec<Attempt>,
        /// A [`Rotating`] field's previous version, when the current came from the backend and it has one.
        previous: Option<Previous>,
    },
    Absent,
    Failed(FieldError),
}

/// The previous version of a rotating field, and the source that names it in messages.
pub(crate) struct Previous {
    raw: Found,
    source: String,
}

struct Sources<'a> {
    loader: &'a Loader,
    fetched: &'a HashMap<FetchRequest, FetchResult>,
    dotenv: Option<&'a DotenvFile>,
}

impl Sources<'_> {
    fn source_name(&self, layer: Layer, field: &ResolvedField) -> String {
        match layer {
            Layer::Backend => {
                let name = self.loader.backend_name().unwrap_or_else(|| "backend".into());
                match (&field.path, field.key) {
                    (Some(p), Some(k)) => format!("{name} secret `{p}` key `{k}`"),
                    (Some(p), None) => format!("{name} secret `{p}`"),
                    _ => name,
                }
            }
            Layer::Env => format!("env var {}", field.env.unwrap_or("(none)")),
            Layer::Dotenv => match &self.loader.dotenv {
                Some(p) => format!(".env file {}", p.display()),
                None => ".env file".into(),
            },
            Layer::Default => "declared default".into(),
        }
    }

    fn lookup(&self, layer: Layer, field: &ResolvedField) -> Lookup {
        match layer {
            Layer::Backend => self.backend_lookup(field, field.spec.version),
            Layer::Env => match field.env {
                None => Lookup::Skipped("no `env` declared".into()),
                Some(name) => match self.loader.env.get(name) {
                    Some(v) => Lookup::Found(Found::Text(v), name.to_string()),
                    None => Lookup::Missing("not set".into()),
                },
            },
            Layer::Dotenv => match (field.env, &self.loader.dotenv, self.dotenv) {
                (None, _, _) => Lookup::Skipped("no `env` declared".into()),
                (_, None, _) => Lookup::Skipped("disabled".into()),
                (_, Some(_), None) => Lookup::Missing("no such file".into()),
                (Some(name), Some(_), Some(file)) => match file.get(name) {
                    Some((v, line)) => Lookup::Found(
                        Found::Text(v.to_string()),
                        format!("{} line {line}", file.path.display()),
                    ),
                    None => Lookup::Missing(format!("{name} not in file")),
                },
            },
            Layer::Default => match field.spec.default {
                Some(d) => Lookup::Found(Found::Text(d.to_string()), "#[secret(default = ...)]".into()),
                None => Lookup::Skipped("none declared".into()),
            },
        }
    }

    /// What the backend holds for `field` at `version` (the declared pin, or the previous of a rotating field).
    fn backend_lookup(&self, field: &ResolvedField, version: VersionPin) -> Lookup {
        let Some(path) = &field.path else {
            return Lookup::Skipped("no `path` declared".into());
        };
        if self.loader.backend.is_none() {
            return Lookup::Skipped(self.loader.backend_reason.clone());
        }
        let request = FetchRequest {
            path: path.clone(),
            version,
        };
        let location = match field.key {
            Some(k) => format!("secret {path} key {k}"),
            None => format!("secret {path}"),
        };
        match self.fetched.get(&request) {
            None => Lookup::Failed(FailureKind::Other, "not fetched".into()),
            Some(Err(e)) if e.kind == FailureKind::NotFound => Lookup::Missing(e.detail.clone()),
            Some(Err(e)) => Lookup::Failed(e.kind, e.detail.clone()),
            Some(Ok(payload)) => match (&payload.value, field.key) {
                (SecretValue::Text(t), None) => Lookup::Found(Found::Text(t.expose_secret().to_string()), location),
                (SecretValue::Binary(b), None) => Lookup::Found(Found::Binary(b.expose_secret().clone()), location),
                (SecretValue::Binary(_), Some(k)) => Lookup::Failed(
                    FailureKind::Invalid,
                    format!("`{path}` is binary, so key `{k}` cannot be read; remove `key` to read the bytes"),
                ),
                (SecretValue::Text(t), Some(k)) => extract_key(t.expose_secret(), path, k, location),
            },
        }
    }

    /// One figment provider per layer, merged lowest first so that higher layers win.
    ///
    /// `table[field][layer]` holds the lookups in precedence order; found values are moved out of it (the
    /// `Found` entries stay, emptied, to tell the report which layers had a value).
    fn figment(&self, fields: &[ResolvedField], table: &mut [Vec<Lookup>]) -> Figment {
        let mut figment = Figment::new();
        for (index, layer) in self.loader.order.iter().enumerate().rev() {
            let source = match layer {
                Layer::Dotenv => self.loader.dotenv.clone().map(figment::Source::File),
                _ => None,
            };
            let name = match layer {
                Layer::Backend => self.loader.backend_name().unwrap_or_else(|| "backend".into()),
                Layer::Env => "env var".into(),
                Layer::Dotenv => ".env file".into(),
                Layer::Default => "default".into(),
            };
            let mut snapshot = Snapshot::new(name, source);
            for (field, lookups) in fields.iter().zip(table.iter_mut()) {
                if let Lookup::Found(value, location) = &mut lookups[index] {
                    snapshot.insert(&field.id, value.take(), location.clone());
                }
            }
            figment = figment.merge(snapshot);
        }
        figment
    }

    /// Decides one field from its `lookups` (one per layer, in precedence order) and figment's merge.
    fn resolve(
        &self,
        field: &ResolvedField,
        lookups: Vec<Lookup>,
        figment: &Figment,
        warnings: &mut Vec<String>,
    ) -> Resolution {
        let mut attempts = Vec::new();
        let mut winner: Option<Layer> = None;
        let mut outage: Option<(FailureKind, String)> = None;
        let mut invalid: Option<String> = None;
        for (layer, lookup) in self.loader.order.iter().zip(lookups) {
            let outcome = match lookup {
                Lookup::Found(..) if winner.is_some() => AttemptOutcome::Shadowed,
                Lookup::Found(..) => {
                    winner = Some(*layer);
                    AttemptOutcome::Found
                }
                Lookup::Missing(why) => AttemptOutcome::Missing(why),
                Lookup::Skipped(why) => AttemptOutcome::Skipped(why),
                Lookup::Failed(kind, detail) => {
                    if winner.is_none() {
                        if kind == FailureKind::Invalid {
                            invalid.get_or_insert_with(|| detail.clone());
                        } else {
                            outage.get_or_insert_with(|| (kind, detail.clone()));
                        }
                    }
                    AttemptOutcome::Failed { kind, detail }
                }
            };
            attempts.push(Attempt {
                source: self.source_name(*layer, field),
                outcome,
            });
        }

        let fail = |reason: FieldProblem, attempts: Vec<Attempt>| {
            Resolution::Failed(FieldError {
                field: field.id.clone(),
                path: field.path.clone(),
                key: field.key.map(str::to_string),
                env: field.env.map(str::to_string),
                type_name: field.spec.type_name,
                reason,
                attempts,
            })
        };
        if let Some(why) = invalid {
            return fail(FieldProblem::Invalid(why), attempts);
        }
        if let Some((kind, detail)) = &outage {
            if self.loader.strict {
                return fail(FieldProblem::Backend(*kind), attempts);
            }
            if winner.is_some() || field.spec.optional {
                let fallback = winner.map_or_else(|| "None".to_string(), |l| l.to_string());
                tracing::warn!(target: "skm", field = %field.id, path = field.path.as_deref().unwrap_or(""),
                    reason = %kind, detail = %detail, fallback = %fallback,
                    "backend failed; using a lower layer");
                warnings.push(format!(
                    "field `{}`: backend {kind} ({detail}); used {fallback} instead",
                    field.id
                ));
            }
        }
        let Some(layer) = winner else {
            // Strict mode with an outage already returned above.
            if field.spec.optional {
                return Resolution::Absent;
            }
            let reason = outage.map_or(FieldProblem::Missing, |(k, _)| FieldProblem::Backend(k));
            return fail(reason, attempts);
        };
        // Figment merged the layers; its winner carries the metadata that names the source.
        let (raw, origin) = match figment.find_value(&field.id) {
            Ok(value) => {
                let md = figment.get_metadata(value.tag());
                let raw = match value {
                    figment::value::Value::String(_, s) => Found::Text(s),
                    other => Found::Binary(other.deserialize::<Vec<u8>>().unwrap_or_default()),
                };
                let origin = Origin {
                    field: field.id.clone(),
                    layer: Some(layer),
                    source: md.map_or_else(|| layer.to_string(), |m| m.name.to_string()),
                    location: md.map_or_else(String::new, |m| {
                        m.interpolate(&figment::Profile::Default, &field.id.split('.').collect::<Vec<_>>())
                    }),
                    version: match (layer, &field.path) {
                        (Layer::Backend, Some(path)) => self
                            .fetched
                            .get(&FetchRequest {
                                path: path.clone(),
                                version: field.spec.version,
                            })
                            .and_then(|r| r.as_ref().ok())
                            .and_then(|p| p.version.clone()),
                        _ => None,
                    },
                };
                (raw, origin)
            }
            Err(_) => return fail(FieldProblem::Missing, attempts),
        };
        // The winner is the source of truth: a bad value there is an error, not a reason to try lower layers.
        if let Err(why) = validate(field, &raw, &origin.to_string()) {
            return fail(FieldProblem::Validation(why), attempts);
        }
        // A previous version is only meaningful next to the backend's current one, not next to an env value.
        let previous = if field.spec.rotating && layer == Layer::Backend {
            match self.previous(field, &mut attempts, warnings) {
                Ok(previous) => previous,
                Err(problem) => return fail(problem, attempts),
            }
        } else {
            None
        };
        Resolution::Found {
            raw,
            origin,
            field: field.clone(),
            attempts,
            previous,
        }
    }

    /// The backend's previous version of a rotating field. Not found is `None`; a failure is a warning and
    /// `None`, or in strict mode the field's error; a value failing the validators is dropped with a warning
    /// (it must not be accepted, but the current version is fine).
    fn previous(
        &self,
        field: &ResolvedField,
        attempts: &mut Vec<Attempt>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Previous>, FieldProblem> {
        let source = format!("{} (previous version)", self.source_name(Layer::Backend, field));
        let mut warn = |what: String| {
            tracing::warn!(target: "skm", field = %field.id, path = field.path.as_deref().unwrap_or(""),
                problem = %what, "previous version unusable; rotation grace has only the current version");
            warnings.push(format!(
                "field `{}`: {what}; only the current version is used",
                field.id
            ));
        };
        let (outcome, previous) = match self.backend_lookup(field, VersionPin::Previous) {
            Lookup::Found(raw, _) => match validate(field, &raw, &source) {
                Ok(()) => (
                    AttemptOutcome::Found,
                    Some(Previous {
                        raw,
                        source: source.clone(),
                    }),
                ),
                Err(why) => {
                    warn(why.clone());
                    let outcome = AttemptOutcome::Failed {
                        kind: FailureKind::Invalid,
                        detail: why,
                    };
                    (outcome, None)
                }
            },
            Lookup::Missing(why) => (AttemptOutcome::Missing(why), None),
            Lookup::Skipped(why) => (AttemptOutcome::Skipped(why), None),
            Lookup::Failed(kind, detail) => {
                if self.loader.strict {
                    attempts.push(Attempt {
                        source,
                        outcome: AttemptOutcome::Failed {
                            kind,
                            detail: detail.clone(),
                        },
                    });
                    return Err(match kind {
                        FailureKind::Invalid => FieldProblem::Invalid(detail),
                        _ => FieldProblem::Backend(kind),
                    });
                }
                warn(format!("{source}: {kind} ({detail})"));
                (AttemptOutcome::Failed { kind, detail }, None)
            }
        };
        attempts.push(Attempt { source, outcome });
        Ok(previous)
    }
}

/// Applies the field's validators to a found value; the message names `source`, never the value.
fn validate(field: &ResolvedField, raw: &Found, source: &str) -> Result<(), String> {
    let validators = &field.spec.validate;
    if validators.is_empty() {
        return Ok(());
    }
    let checked = match raw {
        Found::Text(s) => validators.check(s),
        Found::Binary(b) => match std::str::from_utf8(b) {
            Ok(s) => validators.check(s),
            Err(_) => Err("is binary, not UTF-8 text, so its validators cannot check it".to_string()),
        },
    };
    checked.map_err(|problems| format!("the value from {source} {problems}"))
}

/// One `skm::audit` event per field: which source served it, or why it failed. Never the value.
fn audit_field(field: &ResolvedField, res: &Resolution) {
    let (outcome, source, version) = match res {
        Resolution::Found { origin, .. } => (
            "found".to_string(),
            origin.to_string(),
            origin.version.clone().unwrap_or_default(),
        ),
        Resolution::Absent => ("absent".to_string(), String::new(), String::new()),
        Resolution::Failed(e) => (e.reason.to_string(), String::new(), String::new()),
    };
    tracing::info!(target: "skm::audit", field = %field.id, path = %field.path.as_deref().unwrap_or(""),
        key = %field.key.unwrap_or(""), outcome = %outcome, source = %source, version = %version, "resolve");
}

/// Reads property `key` of a JSON object secret. A non-object is an error, never a silent miss.
fn extract_key(text: &str, path: &str, key: &str, location: String) -> Lookup {
    let parsed: Result<serde_json::Map<String, serde_json::Value>, _> = serde_json::from_str(text);
    match parsed {
        Err(_) => Lookup::Failed(
            FailureKind::Invalid,
            format!(
                "`{path}` is not a JSON object, so key `{key}` cannot be read; remove `key` to read the whole value"
            ),
        ),
        Ok(map) => match map.get(key) {
            None => Lookup::Missing(format!("`{path}` has no key `{key}`")),
            Some(serde_json::Value::String(s)) => Lookup::Found(Found::Text(s.clone()), location),
            Some(serde_json::Value::Null) => Lookup::Missing(format!("key `{key}` is null")),
            // Numbers, booleans and nested objects keep their JSON text; the field's type parses it.
            Some(other) => Lookup::Found(Found::Text(other.to_string()), location),
        },
    }
}

/// [`extract_key`] without a loader around it, for [`crate::fuzzing`]: the value of `key`, `None` when
/// missing, or why the text cannot hold keys.
pub(crate) fn extract_key_text(text: &str, key: &str) -> Result<Option<String>, String> {
    match extract_key(text, "fuzz", key, String::new()) {
        Lookup::Found(Found::Text(ref s), _) => Ok(Some(s.clone())),
        Lookup::Found(Found::Binary(_), _) => Err("binary".into()),
        Lookup::Missing(_) => Ok(None),
        Lookup::Failed(_, why) | Lookup::Skipped(why) => Err(why),
    }
}

/// Resolved values handed to the generated `from_values`; records every failure.
#[doc(hidden)]
pub struct Values<'a> {
    resolutions: &'a HashMap<String, Resolution>,
    scope: Vec<&'static str>,
    errors: Vec<FieldError>,
    /// Added to the load's provenance (e.g. a previous version that does not convert).
    warnings: Vec<String>,
    strict: bool,
}

impl Values<'_> {
    fn id(&self, field: &str) -> String {
        let mut parts = self.scope.clone();
        parts.push(field);
        parts.join(".")
    }

    /// Converts the resolved value of `field` to `T`, recording a failure and returning `None` if it cannot.
    pub fn take<T: DeserializeOwned>(&mut self, field: &'static str) -> Option<T> {
        let id = self.id(field);
        match self.resolutions.get(&id) {
            None => None,
            Some(Resolution::Failed(e)) => {
                self.errors.push(e.clone());
                None
            }
            Some(Resolution::Absent) => de::extract(Raw::Absent).ok(),
            Some(Resolution::Found {
                raw,
                origin,
                field,
                attempts,
                ..
            }) => {
                let raw = match raw {
                    Found::Text(s) => Raw::Text(s),
                    Found::Binary(b) => Raw::Binary(b),
                };
                match de::extract::<T>(raw) {
                    Ok(v) => Some(v),
                    Err(detail) => {
                        self.errors.push(FieldError {
                            field: id,
                            path: field.path.clone(),
                            key: field.key.map(str::to_string),
                            env: field.env.map(str::to_string),
                            type_name: field.spec.type_name,
                            reason: FieldProblem::WrongType {
                                expected: field.spec.type_name,
                                source: origin.to_string(),
                                detail,
                            },
                            attempts: attempts.clone(),
                        });
                        None
                    }
                }
            }
        }
    }

    /// Converts a rotating field: its current value as [`Values::take`] does, and the previous version the
    /// backend returned, if any.
    ///
    /// A previous version that does not convert to `T` is dropped with a warning, or in strict mode recorded
    /// as the field's failure.
    pub fn take_rotating<T: DeserializeOwned>(&mut self, field: &'static str) -> Option<Rotating<T>> {
        let current = self.take::<T>(field)?;
        let id = self.id(field);
        let Some(Resolution::Found {
            previous: Some(previous),
            field: resolved,
            attempts,
            ..
        }) = self.resolutions.get(&id)
        else {
            return Some(Rotating::new(current, None));
        };
        let raw = match &previous.raw {
            Found::Text(s) => Raw::Text(s),
            Found::Binary(b) => Raw::Binary(b),
        };
        match de::extract::<T>(raw) {
            Ok(v) => Some(Rotating::new(current, Some(v))),
            Err(detail) if self.strict => {
                self.errors.push(FieldError {
                    field: id,
                    path: resolved.path.clone(),
                    key: resolved.key.map(str::to_string),
                    env: resolved.env.map(str::to_string),
                    type_name: resolved.spec.type_name,
                    reason: FieldProblem::WrongType {
                        expected: resolved.spec.type_name,
                        source: previous.source.clone(),
                        detail,
                    },
                    attempts: attempts.clone(),
                });
                None
            }
            Err(detail) => {
                let what = format!(
                    "the value from {} is not a valid `{}` ({detail})",
                    previous.source, resolved.spec.type_name
                );
                tracing::warn!(target: "skm", field = %id, problem = %what,
                    "previous version unusable; rotation grace has only the current version");
                self.warnings
                    .push(format!("field `{id}`: {what}; only the current version is used"));
                Some(Rotating::new(current, None))
            }
        }
    }

    /// Builds the flattened struct `T` stored in `field`.
    pub fn nested<T: Secrets>(&mut self, field: &'static str) -> Option<T> {
        self.scope.push(field);
        let value = T::from_values(self);
        self.scope.pop();
        value
    }
}
