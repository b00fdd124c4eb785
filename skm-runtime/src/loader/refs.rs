//! References to secrets inside ordinary configuration values: `ref+BACKEND://PATH[#KEY]` (the `ref+`
//! convention of vals and helmfile). The `skm` facade's figment provider (`skm::figment::refs`) and `skm run`
//! (for environment variables) resolve them here, through the load's own machinery: each backend is the
//! loader's or built once from the registry, each backend's requests go in one
//! [`Backend::fetch`](crate::backend::Backend::fetch) call, all backends in one concurrent wave under the
//! loader's deadline, and every failure is reported together, as a load reports its fields.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures_util::future::join_all;
use secrecy::ExposeSecret;

use super::Loader;
use crate::backend::registry::{self, Descriptor, Env};
use crate::backend::{Backend, FailureKind, SecretValue};
use crate::error::{Attempt, AttemptOutcome, Error, FieldError, FieldProblem, LoadError};
use crate::fetch::{self, Bound};
use crate::plan::FetchRequest;
use crate::report::{Origin, Provenance};
use crate::resolve::layer::Layer;
use crate::resolve::Binding;
use crate::spec::VersionPin;
use crate::values::{RawField, RawValues};

/// What starts a reference.
pub const PREFIX: &str = "ref+";

/// A reference to a secret, `ref+BACKEND://PATH[?version=V][#KEY]`: the backend's registry name or alias (`aws`,
/// `vault`/`openbao`, `ssm`, `sops`, `local`, ...), the path as `#[secret(path = "...")]` would declare it for
/// that backend (for Vault, the KV mount first, as vals writes it: see
/// [`Backend::reference_path`](crate::backend::Backend::reference_path)), and optionally a key of the JSON object there:
/// `#url`, or vals's `#/url`; a nested key as vals writes it, `#/stripe/key`, reads `{"stripe": {"key": ...}}`
/// (each segment a property, or an index into an array, as a JSON pointer reads it) or, failing that, the
/// dotted key `stripe.key` that a flattened secret such as a SOPS file holds.
///
/// A version is pinned as vals pins it: `?version=3` (a number, or a backend's version id), `?version_id=ID`
/// or `?version_stage=LABEL` (AWS staging labels, Parameter Store labels), read as a declaration's
/// `version`, `version_id` and `version_stage` are by the backend named. No other query parameter is read:
/// a backend is configured by its environment variables, as for a load.
///
/// A reference names where a secret is, never the secret: its `Display` and `Debug` are the reference text.
///
/// # Example
/// ```
/// use skm_runtime::Reference;
/// let r = Reference::parse("ref+vault://db#url").unwrap();
/// assert_eq!((r.backend(), r.path(), r.key()), ("vault", "db", Some("url")));
/// assert_eq!(r.to_string(), "ref+vault://db#url");
/// assert!(Reference::is_reference("ref+aws://app/db"));
/// let nested = Reference::parse("ref+sops://app.yaml#/stripe/key").unwrap();
/// assert_eq!(nested.key(), Some("stripe/key"));
/// let pinned = Reference::parse("ref+vault://secret/db?version=2#url").unwrap();
/// assert_eq!((pinned.path(), pinned.version().to_string()), ("secret/db", "version 2".to_string()));
/// assert!(Reference::parse("ref+vault://db?address=https://elsewhere").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    backend: String,
    path: String,
    version: VersionPin,
    key: Option<String>,
}

impl Reference {
    /// Whether `text` is meant as a reference (it starts with `ref+`); [`Reference::parse`] checks the rest.
    pub fn is_reference(text: &str) -> bool {
        text.starts_with(PREFIX)
    }

    /// Parses `ref+BACKEND://PATH[?version=V][#KEY]`. vals's `#/KEY` is read as `#KEY`, and its `#/a/b` as the nested key
    /// `a/b`. The backend name is checked when the reference is resolved, so that an unknown name is reported
    /// with every other failure.
    ///
    /// # Errors
    /// Why `text` is not a reference. The sentence never quotes `text`: a value that merely starts with
    /// `ref+` may be a secret written in place.
    pub fn parse(text: &str) -> Result<Reference, String> {
        const FORM: &str = "a reference is `ref+BACKEND://PATH[?version=V][#KEY]`";
        let rest = text.strip_prefix(PREFIX).ok_or_else(|| format!("{FORM}: no `ref+`"))?;
        let (backend, tail) = rest
            .split_once("://")
            .ok_or_else(|| format!("{FORM}: no `://` after the backend"))?;
        if backend.is_empty()
            || !backend
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("{FORM}: the backend is not a name"));
        }
        let (path, key) = match tail.split_once('#') {
            None => (tail, None),
            Some((path, key)) => {
                // vals writes `#/url` for the key `url`, and `#/a/b` for a nested one.
                let key = key.strip_prefix('/').unwrap_or(key);
                if key.is_empty() {
                    return Err(format!("{FORM}: nothing after `#`"));
                }
                if key.split('/').any(str::is_empty) {
                    return Err(format!("{FORM}: a nested key (`#/a/b`) has an empty segment"));
                }
                (path, Some(key.to_string()))
            }
        };
        let (path, version) = match path.split_once('?') {
            None => (path, VersionPin::Current),
            Some((path, query)) => (
                path,
                Reference::version_of(query).map_err(|why| format!("{FORM}: {why}"))?,
            ),
        };
        if path.is_empty() {
            return Err(format!("{FORM}: no path"));
        }
        Ok(Reference {
            backend: backend.to_string(),
            path: path.to_string(),
            version,
            key,
        })
    }

    /// The version a query (`version=3`) pins. Nothing of the query is quoted in an error.
    fn version_of(query: &str) -> Result<VersionPin, String> {
        const ONLY: &str = "the only query parameters read are one of `version`, `version_id` and `version_stage`; \
                            the backend is configured by its environment variables, as for a load";
        let Some((name, value)) = query.split_once('=') else {
            return Err(ONLY.into());
        };
        if value.is_empty() || value.contains(['&', '=', '?']) {
            return Err(format!("{ONLY}, each with a value"));
        }
        Ok(match name {
            "version" => match value.parse::<u64>() {
                Ok(n) => VersionPin::Number(n),
                Err(_) => VersionPin::id(value.to_string()),
            },
            "version_id" => VersionPin::id(value.to_string()),
            "version_stage" => VersionPin::stage(value.to_string()),
            _ => return Err(ONLY.into()),
        })
    }

    /// The backend's name as written.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The path in the backend.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The key inside the secret, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The version pinned by `?version=`, `?version_id=` or `?version_stage=` ([`VersionPin::Current`] without).
    pub fn version(&self) -> &VersionPin {
        &self.version
    }

    /// The request for this reference's version of `path` (the path as the backend names it).
    fn request(&self, path: String) -> FetchRequest {
        FetchRequest {
            path,
            version: self.version.clone(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}://{}", self.backend, self.path)?;
        match &self.version {
            VersionPin::Number(n) => write!(f, "?version={n}")?,
            VersionPin::Id(id) => write!(f, "?version_id={id}")?,
            VersionPin::Stage(label) => write!(f, "?version_stage={label}")?,
            // `Previous` is never parsed.
            VersionPin::Current | VersionPin::Previous => {}
        }
        match &self.key {
            // vals's form, so that a nested key reads as a path.
            Some(k) if k.contains('/') => write!(f, "#/{k}"),
            Some(k) => write!(f, "#{k}"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl Loader {
    /// Resolves references, `ref+BACKEND://PATH[#KEY]` ([`Reference`]), each given with the name of the place
    /// it was found (a config key such as `db.url`, an environment variable): for adapters that find
    /// references in ordinary configuration, such as `skm::figment::refs` and `skm run`.
    ///
    /// Each backend is the one this loader has under that name ([`Loader::with_backend`], its default backend
    /// when detection chose that name, or one [`Loader::from_env`] detected); otherwise it is built once from
    /// the registry, reading this loader's environment ([`Loader::env_vars`], else the process's), within the
    /// deadline. Each backend's references go in one [`Backend::fetch`](crate::backend::Backend::fetch) call
    /// (a path read by several references once), every backend concurrently, in one wave under
    /// [`Loader::deadline`]. Layers do not apply: a reference names its one source.
    ///
    /// The values come back in order, named as given, with an [`Origin`] whose source is the backend's
    /// registry name and whose location is `secret PATH [key KEY]`: `vault: secret db key url`.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::backend::{MemoryBackend, SecretValue};
    /// use skm_runtime::Loader;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let vault = MemoryBackend::new();
    /// vault.insert("db", SecretValue::map([("url", "postgres://db")]));
    /// let loader = Loader::new().with_backend("vault", vault.clone());
    /// let refs = [("db.url".to_string(), "ref+vault://db#url".to_string())];
    /// let raw = loader.resolve_refs("config", &refs).await?;
    /// assert_eq!(raw.fields[0].expose_str(), Some("postgres://db"));
    /// assert_eq!(raw.fields[0].origin.to_string(), "vault: secret db key url");
    /// assert_eq!(vault.fetch_calls(), 1);
    /// # Ok::<(), skm_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::Load`] named `context`, listing every reference that failed (malformed, an unknown backend or
    /// one not compiled in, a backend that cannot be set up, a missing secret or key, a backend failure),
    /// each with its place and the reference, never a value.
    pub async fn resolve_refs(&self, context: &'static str, refs: &[(String, String)]) -> Result<RawValues, Error> {
        let mut failures: BTreeMap<usize, FieldError> = BTreeMap::new();
        // Each reference's backend.
        let mut parsed: Vec<Option<(Reference, &'static Descriptor)>> = Vec::with_capacity(refs.len());
        let mut descriptors: BTreeMap<&'static str, &'static Descriptor> = BTreeMap::new();
        for (i, (name, text)) in refs.iter().enumerate() {
            let reference = match Reference::parse(text) {
                Ok(r) => r,
                Err(why) => {
                    // Not a reference: its text may be a value, so only the place is named.
                    failures.insert(i, failure(name, None, FieldProblem::Invalid(why), Vec::new()));
                    parsed.push(None);
                    continue;
                }
            };
            let Some(d) = registry::find(&reference.backend) else {
                let why = format!(
                    "unknown backend `{}`: use one of {}",
                    reference.backend,
                    registry::all().iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
                );
                failures.insert(
                    i,
                    failure(name, Some(&reference), FieldProblem::Invalid(why), Vec::new()),
                );
                parsed.push(None);
                continue;
            };
            descriptors.insert(d.name, d);
            parsed.push(Some((reference, d)));
        }

        // Every backend set up concurrently; each says what its references' paths name in it (Vault's
        // mount-first form), and its requests are those paths, each once.
        let built = join_all(descriptors.values().map(|d| self.reference_backend(d))).await;
        let mut backends: BTreeMap<&'static str, Arc<dyn Backend>> = BTreeMap::new();
        let mut unbound: BTreeMap<&'static str, String> = BTreeMap::new();
        for (name, backend) in descriptors.keys().zip(built) {
            match backend {
                Ok(backend) => {
                    backends.insert(*name, backend);
                }
                Err(why) => {
                    unbound.insert(*name, why);
                }
            }
        }
        let paths: Vec<Option<String>> = parsed
            .iter()
            .map(|entry| {
                let (reference, d) = entry.as_ref()?;
                let backend = backends.get(d.name)?;
                Some(backend.reference_path(&reference.path).into_owned())
            })
            .collect();
        let mut groups: BTreeMap<&'static str, Vec<FetchRequest>> = BTreeMap::new();
        for (entry, path) in parsed.iter().zip(&paths) {
            if let (Some((reference, d)), Some(path)) = (entry, path) {
                let requests = groups.entry(d.name).or_default();
                let request = reference.request(path.clone());
                if !requests.contains(&request) {
                    requests.push(request);
                }
            }
        }
        let bound: Vec<Bound<'_>> = groups
            .iter()
            .map(|(name, requests)| Bound {
                route: Some(*name),
                backend: backends[name].clone(),
                requests,
            })
            .collect();
        let fetched = fetch::wave(&bound, self.deadline).await;

        let mut fields = Vec::new();
        let mut origins = Vec::new();
        for (i, (((name, _), entry), path)) in refs.iter().zip(parsed).zip(paths).enumerate() {
            let Some((reference, d)) = entry else { continue };
            let attempt = |outcome| {
                vec![Attempt {
                    source: reference.to_string(),
                    outcome,
                }]
            };
            if let Some(why) = unbound.get(d.name) {
                let problem = FieldProblem::Invalid(why.clone());
                failures.insert(i, failure(name, Some(&reference), problem, Vec::new()));
                continue;
            }
            // Bound backends have every path; an unbound one was reported above.
            let Some(path) = path else { continue };
            let request = reference.request(path.clone());
            let result = fetched.get(&Some(d.name)).and_then(|g| g.get(&request));
            let payload = match result {
                Some(Ok(p)) => p,
                Some(Err(e)) if e.kind == FailureKind::NotFound => {
                    let outcome = AttemptOutcome::Missing(e.detail.clone());
                    failures.insert(
                        i,
                        failure(name, Some(&reference), FieldProblem::Missing, attempt(outcome)),
                    );
                    continue;
                }
                Some(Err(e)) => {
                    let outcome = AttemptOutcome::Failed {
                        kind: e.kind,
                        detail: e.detail.clone(),
                    };
                    let problem = FieldProblem::Backend(e.kind);
                    failures.insert(i, failure(name, Some(&reference), problem, attempt(outcome)));
                    continue;
                }
                None => {
                    let problem = FieldProblem::Backend(FailureKind::Other);
                    failures.insert(i, failure(name, Some(&reference), problem, Vec::new()));
                    continue;
                }
            };
            let bytes = match (&payload.value, reference.key()) {
                (SecretValue::Text(t), None) => t.expose_secret().as_bytes().to_vec(),
                (SecretValue::Binary(b), None) => b.expose_secret().clone(),
                (SecretValue::Binary(_), Some(k)) => {
                    let why =
                        format!("`{path}` is binary, so key `{k}` cannot be read; remove `#{k}` to read the bytes");
                    failures.insert(
                        i,
                        failure(name, Some(&reference), FieldProblem::Invalid(why), Vec::new()),
                    );
                    continue;
                }
                (SecretValue::Text(t), Some(k)) => match key_in(t.expose_secret(), &path, k) {
                    Ok(Some(text)) => text.into_bytes(),
                    Ok(None) => {
                        let outcome = AttemptOutcome::Missing(format!("`{path}` has no key `{k}`"));
                        failures.insert(
                            i,
                            failure(name, Some(&reference), FieldProblem::Missing, attempt(outcome)),
                        );
                        continue;
                    }
                    Err(why) => {
                        failures.insert(
                            i,
                            failure(name, Some(&reference), FieldProblem::Invalid(why), Vec::new()),
                        );
                        continue;
                    }
                },
            };
            // A backend may name the place itself (Key Vault: the mapped name and version).
            let base = payload.location.clone().unwrap_or_else(|| format!("secret {path}"));
            let origin = Origin {
                field: name.clone(),
                layer: Some(Layer::Backend),
                source: d.name.to_string(),
                location: match reference.key() {
                    Some(k) => format!("{base} key {k}"),
                    None => base,
                },
                version: payload.version.clone(),
            };
            origins.push(origin.clone());
            fields.push(RawField::new(name.clone(), None, origin, bytes));
        }

        if !failures.is_empty() {
            return Err(Error::Load(LoadError {
                struct_name: context.into(),
                declared: refs.len(),
                fields: failures.into_values().collect(),
            }));
        }
        Ok(RawValues {
            fields,
            provenance: Provenance {
                backend: self.backend_name(),
                backend_reason: "each reference names its backend".into(),
                fields: origins,
                warnings: Vec::new(),
            },
        })
    }

    /// The backend that serves references to `d`, or why there is none.
    async fn reference_backend(&self, d: &'static Descriptor) -> Result<Arc<dyn Backend>, String> {
        if let Some(b) = self.routed.get(d.name) {
            return Ok(b.clone());
        }
        if let (Some(b), Some(kind)) = (&self.backend, self.backend_kind) {
            if kind == d.name {
                return Ok(b.clone());
            }
        }
        if self.detected.iter().any(|x| x.descriptor.name == d.name) {
            return match self.route_backend(d.name, false).await {
                Ok(b) => Ok(b),
                Err(Binding::Unconfigured { why, .. }) => Err(why),
                Err(Binding::Bound(_)) => Err(format!("backend `{}` cannot be set up", d.name)),
            };
        }
        if !d.compiled {
            return Err(d.not_compiled().to_string());
        }
        let source = self.env.clone();
        let env: Env = Arc::new(move |name: &str| source.get(name));
        let build = d.build_admin(env);
        let built = match self.deadline {
            Some(limit) => tokio::time::timeout(limit, build).await.map_err(|_| {
                format!(
                    "setting backend `{}` up did not finish within the deadline of {}",
                    d.name,
                    crate::failure::seconds(limit)
                )
            })?,
            None => build.await,
        };
        built
            .map(|b| b as Arc<dyn Backend>)
            .map_err(|e| format!("backend `{}` cannot be set up: {e}", d.name))
    }
}

/// Key `key` of the JSON secret at `path`: a property, or, with `/` (`stripe/key`), a nested value; `None`
/// when missing, or why the text cannot hold keys (never the value).
fn key_in(text: &str, path: &str, key: &str) -> Result<Option<String>, String> {
    if !key.contains(['/', '~']) {
        return crate::resolve::key_of(text, path, key);
    }
    let Ok(whole) = serde_json::from_str::<serde_json::Value>(text) else {
        return Err(format!(
            "`{path}` is not JSON, so key `{key}` cannot be read; remove `#/{key}` to read the whole value"
        ));
    };
    // A JSON pointer reads `~1` as `/` and `~0` as `~` in a segment, so a key holding `/` can be named.
    let found = whole.pointer(&format!("/{key}")).or_else(|| {
        // A flattened secret (a SOPS file) holds the nested key as `stripe.key`; a key with `~` that is
        // not an escape is read as written.
        whole.as_object()?.get(&key.replace('/', "."))
    });
    Ok(found.and_then(crate::resolve::json_text))
}

/// One failed reference, named by its place; `reference` is `None` when the text was not a reference.
fn failure(name: &str, reference: Option<&Reference>, reason: FieldProblem, attempts: Vec<Attempt>) -> FieldError {
    FieldError {
        field: name.to_string(),
        path: reference.map(|r| r.path.clone()),
        key: reference.and_then(|r| r.key.clone()),
        env: None,
        type_name: "reference".into(),
        reason,
        attempts: match (reference, attempts.is_empty()) {
            // The reference itself, so that the report says which one failed.
            (Some(r), true) => vec![Attempt {
                source: r.to_string(),
                outcome: AttemptOutcome::Skipped("not read".into()),
            }],
            _ => attempts,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    #[test]
    fn parses_the_forms_and_refuses_the_rest() {
        let r = Reference::parse("ref+openbao://secret/db#/url").unwrap();
        assert_eq!((r.backend(), r.path(), r.key()), ("openbao", "secret/db", Some("url")));
        let r = Reference::parse("ref+ssm:///myapp/db").unwrap();
        assert_eq!((r.path(), r.key()), ("/myapp/db", None));
        for (text, version, shown) in [
            (
                "ref+vault://db?version=3#/url",
                VersionPin::Number(3),
                "ref+vault://db?version=3#url",
            ),
            (
                "ref+aws://db?version=abc-1",
                VersionPin::id("abc-1"),
                "ref+aws://db?version_id=abc-1",
            ),
            (
                "ref+aws://db?version_id=7",
                VersionPin::id("7"),
                "ref+aws://db?version_id=7",
            ),
            (
                "ref+aws://db?version_stage=AWSPREVIOUS#k",
                VersionPin::stage("AWSPREVIOUS"),
                "ref+aws://db?version_stage=AWSPREVIOUS#k",
            ),
        ] {
            let r = Reference::parse(text).unwrap();
            assert_eq!((r.path(), r.version(), r.to_string().as_str()), ("db", &version, shown));
            assert_eq!(
                Reference::parse(shown).unwrap(),
                r,
                "the text shown reads back the same"
            );
        }
        for bad in [
            "ref+vault:/db",
            "ref+://db",
            "ref+vault://",
            "ref+vault://db#",
            "ref+vault://db#/a//b",
            "ref+vault://db#/a/",
            "ref+vault://db?x=1",
            "ref+vault://db?version",
            "ref+vault://db?version=",
            "ref+vault://db?version=1&address=x",
            "ref+vault://?version=1",
            "ref+hunter2",
            "plain",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(!e.contains(bad), "{e}");
        }
    }

    #[tokio::test]
    async fn every_failure_is_reported_together_and_no_value_is() {
        let memory = MemoryBackend::new();
        memory.insert("db", SecretValue::map([("url", "SENTINEL-url")]));
        memory.insert("plain", SecretValue::text("SENTINEL-plain"));
        let loader = Loader::new().no_dotenv().with_backend("vault", memory.clone());
        let refs: Vec<(String, String)> = [
            ("a", "ref+vault://db#url"),
            ("b", "ref+vault://db#nope"),
            ("c", "ref+nope://x"),
            ("d", "ref+hunter2-SENTINEL"),
            ("e", "ref+vault://plain#k"),
            ("f", "ref+vault://gone"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let e = loader.resolve_refs("config", &refs).await.unwrap_err();
        let text = format!("{e}\n{e:?}\n{e:#?}");
        assert!(!text.contains("SENTINEL"), "{text}");
        let failed: Vec<&str> = e.as_load().unwrap().fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(failed, ["b", "c", "d", "e", "f"]);
        assert!(
            text.contains("ref+vault://db#nope") && text.contains("unknown backend `nope`"),
            "{text}"
        );
        assert_eq!(memory.fetch_calls(), 1, "one call for every reference to the backend");
    }

    #[tokio::test]
    async fn a_nested_key_reads_a_nested_value_or_a_flattened_one() {
        let memory = MemoryBackend::new();
        memory.insert(
            "app",
            SecretValue::text(r#"{"stripe": {"key": "SENTINEL-nested", "ids": [4, "SENTINEL-item"]}, "a/b": "slash"}"#),
        );
        // A SOPS file's values come flattened.
        memory.insert("flat", SecretValue::map([("stripe.key", "SENTINEL-flat")]));
        memory.insert("list", SecretValue::text(r#"["SENTINEL-list"]"#));
        let loader = Loader::new().no_dotenv().with_backend("sops", memory.clone());
        let refs: Vec<(String, String)> = [
            ("nested", "ref+sops://app#/stripe/key"),
            ("number", "ref+sops://app#/stripe/ids/0"),
            ("item", "ref+sops://app#/stripe/ids/1"),
            ("escaped", "ref+sops://app#/a~1b"),
            ("object", "ref+sops://app#/stripe/ids"),
            ("flat", "ref+sops://flat#/stripe/key"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let raw = loader.resolve_refs("config", &refs).await.unwrap();
        let got: Vec<(&str, &str)> = raw
            .fields
            .iter()
            .map(|f| (f.field.as_str(), f.expose_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("nested", "SENTINEL-nested"),
                ("number", "4"),
                ("item", "SENTINEL-item"),
                ("escaped", "slash"),
                ("object", r#"[4,"SENTINEL-item"]"#),
                ("flat", "SENTINEL-flat"),
            ]
        );
        assert_eq!(raw.fields[0].origin.to_string(), "sops: secret app key stripe/key");

        let missing: Vec<(String, String)> = [
            ("gone", "ref+sops://app#/stripe/nope"),
            ("past", "ref+sops://app#/stripe/key/deeper"),
            ("index", "ref+sops://list#/0/x"),
            ("text", "ref+sops://notjson#/a/b"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        memory.insert("notjson", SecretValue::text("SENTINEL-text"));
        let e = loader.resolve_refs("config", &missing).await.unwrap_err();
        let text = format!("{e}\n{e:?}");
        assert!(!text.contains("SENTINEL"), "{text}");
        let failed: Vec<&str> = e.as_load().unwrap().fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(failed, ["gone", "past", "index", "text"]);
        assert!(text.contains("ref+sops://app#/stripe/nope"), "{text}");
    }

    #[tokio::test]
    async fn a_pinned_version_is_read_in_the_same_call_as_the_current_one() {
        let memory = MemoryBackend::new();
        memory.insert("db", SecretValue::map([("url", "SENTINEL-v1")]));
        memory.insert("db", SecretValue::map([("url", "SENTINEL-v2")]));
        let loader = Loader::new().no_dotenv().with_backend("vault", memory.clone());
        let refs: Vec<(String, String)> = [
            ("now", "ref+vault://db#url"),
            ("then", "ref+vault://db?version=1#url"),
            ("never", "ref+vault://db?version=9#url"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let e = loader.resolve_refs("config", &refs).await.unwrap_err();
        let failed: Vec<&str> = e.as_load().unwrap().fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(failed, ["never"], "{e}");
        assert!(e.to_string().contains("ref+vault://db?version=9#url"), "{e}");
        assert!(!format!("{e}{e:?}").contains("SENTINEL"));

        let raw = loader.resolve_refs("config", &refs[..2]).await.unwrap();
        let got: Vec<&str> = raw.fields.iter().map(|f| f.expose_str().unwrap()).collect();
        assert_eq!(got, ["SENTINEL-v2", "SENTINEL-v1"]);
        assert_eq!(raw.fields[1].origin.version.as_deref(), Some("1"));
        assert_eq!(memory.fetch_calls(), 2, "one call per resolution, both versions in it");
    }
}
