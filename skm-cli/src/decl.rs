//! Declarations: which secrets a service declares, from an embedded struct or a manifest file.
//!
//! A manifest is the export of a struct's declarations (`skm manifest`), read back by the standalone binary
//! with `--manifest FILE`. It carries each field's validators, and the default value of `plain` fields only
//! (a plain field is declared not secret); a secret-typed field's default is only flagged, never written,
//! and the standalone tool says it cannot supply it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::{safe, select, valid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use skm_runtime::backend::registry::{self, Descriptor};
use skm_runtime::backend::AdminBackend;
use skm_runtime::detect::Choice;
use skm_runtime::spec::Pattern;
use skm_runtime::{Error, Loader, Provenance, ResolvedField, SecretSpec, Secrets, Validators, VersionPin};

/// The manifest format version this build writes.
///
/// Format 2 added each field's validators (`min_len`, `not`, `pattern`) and the `default` of `plain` fields.
/// This build also reads format 1 ([`MANIFEST_FORMATS_READ`]): such a file has no validators, and its
/// defaults are only flagged (`has_default`), so the standalone tool cannot supply them.
pub const MANIFEST_FORMAT: u32 = 2;

/// The manifest format versions this build reads: 1 and 2.
pub const MANIFEST_FORMATS_READ: std::ops::RangeInclusive<u32> = 1..=MANIFEST_FORMAT;

/// A typed load of the embedded struct, returning provenance only: it catches values of the wrong type,
/// which [`Loader::check_fields`] cannot see.
pub(crate) type TypedLoad = for<'a> fn(&'a Loader) -> Pin<Box<dyn Future<Output = Result<Provenance, Error>> + 'a>>;

/// Where the declarations come from.
#[derive(Clone)]
pub(crate) enum DeclSource {
    /// Compiled into this binary.
    Embedded {
        name: &'static str,
        resolve: fn(Option<&str>) -> Result<Vec<ResolvedField>, Error>,
        typed: TypedLoad,
    },
    /// The standalone binary: `--manifest FILE`, if given.
    Manifest,
}

impl DeclSource {
    pub(crate) fn embedded<T: Secrets>() -> Self {
        fn resolve<T: Secrets>(profile: Option<&str>) -> Result<Vec<ResolvedField>, Error> {
            T::spec().resolve(profile)
        }
        fn typed<T: Secrets>(loader: &Loader) -> Pin<Box<dyn Future<Output = Result<Provenance, Error>> + '_>> {
            // The loaded struct is dropped at once: only its provenance leaves this function.
            Box::pin(async move { loader.load_report::<T>().await.map(|l| l.provenance) })
        }
        DeclSource::Embedded {
            name: T::spec().name,
            resolve: resolve::<T>,
            typed: typed::<T>,
        }
    }
}

/// The declarations a command works on.
#[derive(Clone)]
pub(crate) struct Declarations {
    /// The struct's name.
    pub struct_name: String,
    /// The profile the paths were resolved with.
    pub profile: Option<String>,
    /// Every declared secret, in declaration order.
    pub fields: Vec<ResolvedField>,
    /// The typed load, for an embedded struct.
    pub typed: Option<TypedLoad>,
    /// Fields declared with a default that these declarations do not carry (a secret-typed field's default,
    /// or any default in a format-1 manifest): the standalone tool cannot supply it, and says so.
    pub unsupplied_defaults: Vec<String>,
}

impl Declarations {
    /// Whether `field` is declared with a default, carried here or not.
    pub(crate) fn has_default(&self, field: &ResolvedField) -> bool {
        field.spec.default.is_some() || self.unsupplied_defaults.contains(&field.id)
    }

    /// Why the tool could not supply the defaults of the `missing` fields, one sentence per field whose
    /// default these declarations lack; empty when there is none.
    pub(crate) fn unsupplied_notes<'a>(&self, missing: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut notes = Vec::new();
        for id in missing {
            if !self.unsupplied_defaults.iter().any(|u| u == id) {
                continue;
            }
            let Some(f) = self.fields.iter().find(|f| f.id == id) else {
                continue;
            };
            let mut sources: Vec<String> = f.env.iter().map(|e| format!("set {e}")).collect();
            if f.path.is_some() {
                sources.push(format!("store it at {}", location(f)));
            }
            sources.push("run the command through the application's own `secrets` binary".into());
            let why = if f.spec.plain {
                "its default is not in this manifest (written by an older `skm manifest`: regenerate it)"
            } else {
                "its default is compiled into the application and a manifest never carries a secret-typed \
                 field's default"
            };
            notes.push(format!(
                "`{id}`: {why}, so the standalone tool cannot supply it: {}",
                sources.join(", or ")
            ));
        }
        notes
    }
}

/// The fields a failed load reports missing.
pub(crate) fn missing_fields(e: &Error) -> Vec<&str> {
    match e {
        Error::Load(load) => load
            .fields
            .iter()
            .filter(|f| matches!(f.reason, skm_runtime::FieldProblem::Missing))
            .map(|f| f.field.as_str())
            .collect(),
        _ => Vec::new(),
    }
}

/// One declared secret in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestField {
    /// Dotted field id, e.g. `db.url` for a flattened field.
    pub field: String,
    /// The full backend path, prefixes applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The key inside the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The field's type as written.
    #[serde(rename = "type")]
    pub type_name: String,
    /// An `Option` field: absent everywhere is fine.
    #[serde(default)]
    pub optional: bool,
    /// A default is declared. Its value is exported for a `plain` field only (in `default`).
    #[serde(default)]
    pub has_default: bool,
    /// `#[secret(plain)]`.
    #[serde(default)]
    pub plain: bool,
    /// The declared default of a `plain` field (a plain field is not a secret). A secret-typed field's
    /// default is never exported: `has_default` only flags it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// `min_len`: the least number of characters the value may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_len: Option<usize>,
    /// `not`: placeholder values to reject (compared trimmed, ignoring ASCII case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not: Vec<String>,
    /// `pattern`: a regular expression (syntax of the `regex` crate) the value must match somewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Which version is read.
    #[serde(default)]
    pub version: ManifestVersion,
    /// The backend the field is routed to (`#[secret(backend = "vault")]`): a registry name or alias;
    /// absent for the default backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// A version pin in a manifest: `"current"`, `"previous"`, `{ stage = "AWSPREVIOUS" }`, `{ id = "..." }`,
/// `{ number = 3 }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ManifestVersion {
    /// The current version.
    #[default]
    Current,
    /// The version before the current one.
    Previous,
    /// An AWS staging label.
    Stage(String),
    /// An AWS version id.
    Id(String),
    /// A numbered version.
    Number(u64),
}

/// The export of a struct's declarations: paths, names, types, validators and `plain` defaults, never a
/// secret value.
///
/// Its JSON Schema (`skm manifest --schema`) is [`Manifest::json_schema`]'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// The schema's own words: an editor shows them to people editing `skm.toml`, where rustdoc links mean nothing.
#[schemars(
    title = "skm manifest",
    description = "The declarations of a skm struct, exported by `skm manifest` (never a secret value), read by the \
                   standalone `skm --manifest FILE`."
)]
pub struct Manifest {
    /// The format version ([`MANIFEST_FORMAT`] is written; [`MANIFEST_FORMATS_READ`] are read).
    #[schemars(
        extend("enum" = [1, 2]),
        description = "The manifest format version: 2 (1 is still read: no validators, defaults only flagged)."
    )]
    pub skm_manifest: u32,
    /// The struct's name.
    #[serde(rename = "struct")]
    pub struct_name: String,
    /// The profile the paths were resolved with, if the struct's prefix used `{profile}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The declared secrets.
    #[serde(default, rename = "secret")]
    pub secrets: Vec<ManifestField>,
}

impl Manifest {
    /// The JSON Schema (draft 2020-12) of a manifest file, derived from the types that read it, so editors
    /// validate a hand-edited `skm.toml` as strictly as `--manifest` does (unknown keys and wrong types are
    /// errors). `skm manifest --schema` prints it.
    ///
    /// # Example
    /// ```
    /// let schema = skm_cli::Manifest::json_schema();
    /// let formats = schema["properties"]["skm_manifest"]["enum"].as_array().unwrap();
    /// assert!(formats.iter().any(|f| f == skm_cli::MANIFEST_FORMAT));
    /// assert_eq!(schema["additionalProperties"], false);
    /// ```
    pub fn json_schema() -> serde_json::Value {
        let schema = schemars::generate::SchemaSettings::draft2020_12()
            .for_deserialize()
            .into_generator()
            .into_root_schema_for::<Manifest>();
        schema.to_value()
    }

    pub(crate) fn from_declarations(d: &Declarations) -> Manifest {
        Manifest {
            skm_manifest: MANIFEST_FORMAT,
            struct_name: d.struct_name.clone(),
            profile: d.profile.clone(),
            secrets: d
                .fields
                .iter()
                .map(|f| ManifestField {
                    field: f.id.clone(),
                    path: f.path.clone(),
                    key: f.key.as_deref().map(str::to_string),
                    env: f.env.as_deref().map(str::to_string),
                    type_name: f.spec.type_name.to_string(),
                    optional: f.spec.optional,
                    has_default: d.has_default(f),
                    plain: f.spec.plain,
                    // Only a plain field's default: a secret-typed one is compiled in and stays there.
                    default: f.spec.default.as_deref().filter(|_| f.spec.plain).map(str::to_string),
                    min_len: f.spec.validate.min_len,
                    not: f.spec.validate.not.iter().map(|s| s.to_string()).collect(),
                    pattern: f.spec.validate.pattern.as_ref().map(|p| p.source.to_string()),
                    version: pin_to_manifest(f.spec.version.clone()),
                    backend: f.route().map(str::to_string),
                })
                .collect(),
        }
    }

    /// Reads a manifest from `path`: TOML, or JSON when the name ends in `.json` or the text starts with `{`.
    ///
    /// A parse error names the position and the kind of problem only: the file may be the wrong one (a
    /// `.env` passed by mistake), and the parsers' own messages quote the offending line.
    pub(crate) fn read(path: &Path) -> Result<Manifest, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read manifest {}: {e}", path.display()))?;
        let is_json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
        let parsed: Result<Manifest, (usize, usize, String)> = if is_json {
            serde_json::from_str(&text).map_err(|e| (e.line(), e.column(), safe::parse_message(&e.to_string())))
        } else {
            toml::from_str(&text).map_err(|e| {
                let (line, column) = e.span().map_or((0, 0), |s| safe::line_col(&text, s.start));
                (line, column, safe::parse_message(e.message()))
            })
        };
        let manifest = parsed.map_err(|(line, column, why)| {
            let at = if line == 0 {
                String::new()
            } else {
                format!(" at line {line}, column {column}")
            };
            format!(
                "invalid manifest {}{at}: {why} (is it a manifest written by `skm manifest`? its content is not \
                 shown, in case it is a file of secrets)",
                path.display()
            )
        })?;
        if !MANIFEST_FORMATS_READ.contains(&manifest.skm_manifest) {
            return Err(format!(
                "manifest {} has format {}, but this skm reads formats {} to {}: regenerate it with `skm manifest`",
                path.display(),
                manifest.skm_manifest,
                MANIFEST_FORMATS_READ.start(),
                MANIFEST_FORMATS_READ.end()
            ));
        }
        let problems = valid::check(&manifest);
        if !problems.is_empty() {
            return Err(format!(
                "invalid manifest {}:\n  - {}\nregenerate it with `skm manifest` from the application's `secrets` binary",
                path.display(),
                problems.join("\n  - ")
            ));
        }
        Ok(manifest)
    }

    /// The declarations this manifest describes, owned (the derive's are `static`, borrowed).
    pub(crate) fn into_declarations(self) -> Declarations {
        let mut unsupplied_defaults = Vec::new();
        let fields = self
            .secrets
            .into_iter()
            .map(|m| {
                // A plain field's default is carried; any other declared default is not, and a placeholder
                // would pass an empty value where the application passes its default.
                let default = match (m.has_default || m.default.is_some(), m.default) {
                    (_, Some(v)) if m.plain => Some(Cow::Owned(v)),
                    (true, _) => {
                        unsupplied_defaults.push(m.field.clone());
                        None
                    }
                    (false, _) => None,
                };
                let validate = Validators {
                    min_len: m.min_len,
                    not: Cow::Owned(m.not.into_iter().map(Cow::Owned).collect()),
                    pattern: m.pattern.map(Pattern::regex_owned),
                };
                let key = m.key.map(Cow::Owned);
                let env = m.env.map(Cow::Owned);
                // Checked by `valid::check`: a known name, which the registry maps to its canonical,
                // `static` form.
                let backend = m
                    .backend
                    .as_deref()
                    .and_then(skm_runtime::backend::registry::find)
                    .map(|d| d.name);
                let spec = SecretSpec {
                    path: None,
                    key: key.clone(),
                    env: env.clone(),
                    default,
                    optional: m.optional,
                    plain: m.plain,
                    type_name: Cow::Owned(m.type_name),
                    version: manifest_to_pin(m.version),
                    validate,
                    // Rotation grace is not in the manifest: the standalone tool reads the current version.
                    rotating: false,
                    backend,
                };
                ResolvedField {
                    id: m.field,
                    path: m.path,
                    key,
                    env,
                    spec: spec.into(),
                }
            })
            .collect();
        Declarations {
            struct_name: self.struct_name,
            profile: self.profile,
            fields,
            typed: None,
            unsupplied_defaults,
        }
    }
}

/// A backend that declared fields are routed to (`backend = "vault"`), other than the command's default one.
pub(crate) struct Routed {
    /// The registry entry of the route.
    pub descriptor: &'static Descriptor,
    /// The ids of the fields routed to it, in declaration order.
    pub fields: Vec<String>,
    /// Their distinct paths, sorted.
    pub paths: Vec<String>,
    /// The backend, built from the environment as `Loader::from_env` would; else why it is not available.
    pub backend: Result<Arc<dyn AdminBackend>, String>,
}

/// The backends `fields` are routed to besides `choice` (the default backend), each built from the process
/// environment when its detection signal is present, as a load does. Empty when no backend is wanted at all
/// (`--backend none`, `SKM_BACKEND=none`), where routed fields fall back to env like the others.
pub(crate) async fn routed_backends(fields: &[ResolvedField], choice: &Choice) -> Vec<Routed> {
    let explicit_none =
        choice.backend.is_none() && (choice.reason == "SKM_BACKEND=none" || choice.reason == "--backend none");
    let mut groups: BTreeMap<&'static str, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for f in fields {
        let (Some(route), Some(path)) = (f.route(), &f.path) else {
            continue;
        };
        if explicit_none || Some(route) == choice.backend.map(|d| d.name) {
            continue;
        }
        let group = groups.entry(route).or_default();
        group.0.push(f.id.clone());
        if !group.1.contains(path) {
            group.1.push(path.clone());
        }
    }
    let mut out = Vec::new();
    for (route, (fields, mut paths)) in groups {
        // The manifest check and the derive accept registry names only.
        let Some(descriptor) = registry::find(route) else {
            continue;
        };
        paths.sort();
        let backend = if !descriptor.compiled {
            Err(descriptor.not_compiled().to_string())
        } else if (descriptor.signal)(&select::env_var).is_none() {
            Err(format!(
                "not configured: it is configured when {}",
                descriptor.signal_doc
            ))
        } else {
            match select::build(Some(descriptor)).await {
                Ok(Some(b)) => Ok(b),
                Ok(None) => Err("no backend was built".into()),
                Err(crate::Fail::Usage(m) | crate::Fail::Failed(m)) => Err(m),
            }
        };
        out.push(Routed {
            descriptor,
            fields,
            paths,
            backend,
        });
    }
    out
}

/// `loader` with every backend `fields` are routed to that the environment configures, as
/// `Loader::from_env` would; a route left unconfigured fails its fields in the load, with the others.
pub(crate) async fn with_routed(mut loader: Loader, fields: &[ResolvedField], choice: &Choice) -> Loader {
    for r in routed_backends(fields, choice).await {
        if let Ok(b) = r.backend {
            loader = loader.with_backend_arc(r.descriptor.name, Arc::new(select::ReadOnly(b)));
        }
    }
    loader
}

fn pin_to_manifest(pin: VersionPin) -> ManifestVersion {
    match pin {
        VersionPin::Current => ManifestVersion::Current,
        VersionPin::Previous => ManifestVersion::Previous,
        VersionPin::Stage(s) => ManifestVersion::Stage(s.to_string()),
        VersionPin::Id(s) => ManifestVersion::Id(s.to_string()),
        VersionPin::Number(n) => ManifestVersion::Number(n),
        // A pin added to the runtime later: its display form is the best value-free description.
        #[allow(unreachable_patterns)]
        other => ManifestVersion::Stage(other.to_string()),
    }
}

fn manifest_to_pin(v: ManifestVersion) -> VersionPin {
    match v {
        ManifestVersion::Current => VersionPin::Current,
        ManifestVersion::Previous => VersionPin::Previous,
        ManifestVersion::Stage(s) => VersionPin::stage(s),
        ManifestVersion::Id(s) => VersionPin::id(s),
        ManifestVersion::Number(n) => VersionPin::Number(n),
    }
}

/// A short, value-free description of where a field lives: `auth/jwt#secret`.
pub(crate) fn location(f: &ResolvedField) -> String {
    match (&f.path, f.key.as_deref()) {
        (Some(p), Some(k)) => format!("{p}#{k}"),
        (Some(p), None) => p.clone(),
        _ => String::new(),
    }
}
