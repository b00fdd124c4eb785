//! Stage 4, resolve: asks every layer once per field, lets figment's merge pick the one winner, and
//! decides what a failing layer means (fall back, warn, or fail the field).
//!
//! Found values go into [`Slots`], skm's own zeroizing storage; figment only sees slot numbers (see
//! [`crate::layer`]). The winner's slot and its [`figment::Metadata`] come back from the merge, so the
//! winner and its provenance are decided once, by figment. The other layers' lookups only explain the
//! decision: which layers were shadowed, and which failed *above* the winner.
//!
//! Falling back past a failing backend:
//! - not found: silently (env and `.env` are the intended fallbacks);
//! - unavailable, throttled, other: with a warning, or an error in strict mode;
//! - forbidden, decryption failed: an error (a configuration problem, not an outage) unless the loader
//!   allows fallback for that kind ([`Loader::allow_fallback_on`](crate::Loader::allow_fallback_on));
//! - invalid (e.g. `key` on a value that is not a JSON object): always an error.
//!
//! A field routed to another backend (`#[secret(backend = "vault")]`) follows the same rules, per field,
//! with that backend's results. A route no backend is configured for fails the field, unless the loader
//! has no backend at all (env, `.env` and defaults only), where routed fields fall through like the others.

use std::collections::HashMap;
use std::path::Path;

use figment::Figment;
use secrecy::ExposeSecret;

use crate::backend::{FailureKind, FetchRequest, SecretValue};
use crate::dotenv::{DotenvError, DotenvFile};
use crate::error::{Attempt, AttemptOutcome, Error, FieldError, FieldProblem};
use crate::fetch::{Fetched, Group};
use crate::layer::{EnvSource, Layer, Snapshot};
use crate::plan::ResolvedField;
use crate::spec::VersionPin;

/// What the resolve stage needs from the loader's settings.
pub(crate) struct Sources<'a> {
    pub(crate) order: &'a [Layer],
    pub(crate) backend: Option<String>,
    pub(crate) backend_reason: &'a str,
    pub(crate) env: &'a EnvSource,
    pub(crate) dotenv: Option<&'a Path>,
    /// The secret files directory, when the files layer is on.
    pub(crate) files: Option<&'a Path>,
    pub(crate) strict: bool,
    pub(crate) allow_fallback: &'a [FailureKind],
    pub(crate) fetched: &'a Fetched,
    /// How the loader bound each routed backend name of the plan.
    pub(crate) routed: &'a HashMap<&'static str, Binding>,
}

/// How a routed backend name (`#[secret(backend = "vault")]`) was bound by the loader.
pub(crate) enum Binding {
    /// Served by the backend with this display name.
    Bound(String),
    /// No backend is configured for it: the sentence says which signal or call would configure it.
    /// `fail` is false when the loader has no backend at all, so that the field falls through like every
    /// other field of an env-only load.
    Unconfigured { why: String, fail: bool },
}

/// A found value: text or bytes, wiped when dropped.
pub(crate) enum Found {
    Text(String),
    Binary(Vec<u8>),
}

impl Found {
    fn take(&mut self) -> Found {
        match self {
            Found::Text(s) => Found::Text(std::mem::take(s)),
            Found::Binary(b) => Found::Binary(std::mem::take(b)),
        }
    }
}

impl Drop for Found {
    // Intermediate copies of a value are wiped, not just freed.
    fn drop(&mut self) {
        use zeroize::Zeroize;
        match self {
            Found::Text(s) => s.zeroize(),
            Found::Binary(b) => b.zeroize(),
        }
    }
}

/// The values one load found, indexed by the slot numbers figment carries. Every slot is wiped on drop.
struct Slots(Vec<(usize, Found)>);

/// What one layer said about one field.
enum Lookup {
    Found(Found, String),
    Missing(String),
    Failed(FailureKind, String),
    Skipped(String),
    /// The `.env` file exists but cannot be read or parsed; only an error if the field reaches it.
    Unreadable,
}

/// The winning source of a field.
pub(crate) struct Winner {
    pub(crate) layer: Layer,
    pub(crate) source: String,
    pub(crate) location: String,
    pub(crate) version: Option<String>,
}

/// The previous version of a rotating field, and the source that names it in messages.
pub(crate) struct Previous {
    pub(crate) raw: Found,
    pub(crate) source: String,
}

/// The decision for one field.
pub(crate) enum Decided {
    Found {
        raw: Found,
        winner: Winner,
        attempts: Vec<Attempt>,
        previous: Option<Previous>,
    },
    Absent,
    Failed(FieldError),
}

/// Resolves every field; returns one decision per field (in order) and the load's warnings.
///
/// # Errors
/// The `.env` file is unreadable or malformed and a field reached the `.env` layer.
pub(crate) fn resolve(src: &Sources<'_>, fields: &[ResolvedField]) -> Result<(Vec<Decided>, Vec<String>), Error> {
    let mut dotenv_error: Option<DotenvError> = None;
    let dotenv = match src.dotenv.filter(|_| src.order.contains(&Layer::Dotenv)) {
        Some(path) => DotenvFile::read(path).unwrap_or_else(|e| {
            dotenv_error = Some(e);
            None
        }),
        None => None,
    };
    let unreadable = dotenv_error.is_some();
    let mut table: Vec<Vec<Lookup>> = fields
        .iter()
        .map(|f| {
            src.order
                .iter()
                .map(|layer| src.lookup(*layer, f, dotenv.as_ref(), unreadable))
                .collect()
        })
        .collect();
    let mut slots = Slots(Vec::new());
    let figment = src.figment(fields, &mut table, &mut slots);
    let mut warnings = Vec::new();
    let mut decided = Vec::with_capacity(fields.len());
    for (field, lookups) in fields.iter().zip(table) {
        let winner = figment.find_value(&field.id).ok().and_then(|value| {
            let slot = value.deserialize::<usize>().ok()?;
            let md = figment.get_metadata(value.tag());
            let (layer_index, raw) = slots.0.get_mut(slot)?;
            let layer = src.order[*layer_index];
            let keys: Vec<&str> = field.id.split('.').collect();
            let winner = Winner {
                layer,
                source: md.map_or_else(|| layer.to_string(), |m| m.name.to_string()),
                location: md.map_or_else(String::new, |m| m.interpolate(&figment::Profile::Default, &keys)),
                version: (layer == Layer::Backend).then(|| src.backend_version(field)).flatten(),
            };
            Some((*layer_index, raw.take(), winner))
        });
        if lookups
            .iter()
            .enumerate()
            .any(|(i, l)| matches!(l, Lookup::Unreadable) && winner.as_ref().is_none_or(|(w, ..)| i < *w))
        {
            return Err(Error::Dotenv(
                dotenv_error.take().expect("an unreadable .env has its error"),
            ));
        }
        decided.push(src.decide(field, lookups, winner, &mut warnings));
    }
    Ok((decided, warnings))
}

impl Sources<'_> {
    /// The display name of the backend that serves `field`'s path.
    fn backend_name(&self, field: &ResolvedField) -> String {
        let default = || self.backend.clone().unwrap_or_else(|| "backend".into());
        match field.route() {
            None => default(),
            Some(route) => match self.routed.get(route) {
                Some(Binding::Bound(name)) => name.clone(),
                _ => format!("{route} backend"),
            },
        }
    }

    /// The results of the backend that serves `field`'s path, if it was fetched.
    fn group(&self, field: &ResolvedField) -> Option<&Group> {
        self.fetched.get(&field.route())
    }

    fn source_name(&self, layer: Layer, field: &ResolvedField) -> String {
        match layer {
            Layer::Backend => {
                let name = self.backend_name(field);
                match (&field.path, field.key) {
                    (Some(p), Some(k)) => format!("{name} secret `{p}` key `{k}`"),
                    (Some(p), None) => format!("{name} secret `{p}`"),
                    _ => name,
                }
            }
            Layer::Files => match (self.files, field.env) {
                (Some(dir), Some(name)) => format!("file {}", dir.join(name).display()),
                _ => "secret files".into(),
            },
            Layer::Env => format!("env var {}", field.env.unwrap_or("(none)")),
            Layer::Dotenv => match self.dotenv {
                Some(p) => format!(".env file {}", p.display()),
                None => ".env file".into(),
            },
            Layer::Default => "declared default".into(),
        }
    }

    fn lookup(&self, layer: Layer, field: &ResolvedField, dotenv: Option<&DotenvFile>, unreadable: bool) -> Lookup {
        match layer {
            Layer::Backend => self.backend_lookup(field, field.spec.version.clone()),
            Layer::Files => match (field.env, self.files) {
                (None, _) => Lookup::Skipped("no `env` declared".into()),
                (_, None) => Lookup::Skipped("no secrets directory (SKM_SECRETS_DIR)".into()),
                (Some(name), Some(dir)) => read_file(&dir.join(name), "no such file"),
            },
            Layer::Env => match field.env {
                None => Lookup::Skipped("no `env` declared".into()),
                Some(name) => match self.env.get(name) {
                    Some(v) => Lookup::Found(Found::Text(v), name.to_string()),
                    // Docker's convention: `NAME_FILE` names a file holding the value.
                    None => match self.env.get(&format!("{name}_FILE")) {
                        Some(path) if !path.is_empty() => match read_file(Path::new(&path), "") {
                            Lookup::Found(v, location) => Lookup::Found(v, format!("{name}_FILE {location}")),
                            Lookup::Missing(_) => Lookup::Failed(
                                FailureKind::Invalid,
                                format!("{name}_FILE names {path}, which does not exist"),
                            ),
                            other => other,
                        },
                        _ => Lookup::Missing("not set".into()),
                    },
                },
            },
            Layer::Dotenv => match (field.env, self.dotenv, dotenv) {
                (None, _, _) => Lookup::Skipped("no `env` declared".into()),
                (_, None, _) => Lookup::Skipped("disabled".into()),
                (_, Some(_), None) if unreadable => Lookup::Unreadable,
                (_, Some(_), None) => Lookup::Missing("no such file".into()),
                (Some(name), Some(_), Some(file)) => match file.get(name) {
                    Some(entry) => Lookup::Found(
                        Found::Text(entry.value().expose_secret().to_string()),
                        format!("{} line {}", file.path().display(), entry.line()),
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

    fn backend_version(&self, field: &ResolvedField) -> Option<String> {
        let request = FetchRequest {
            path: field.path.clone()?,
            version: field.spec.version.clone(),
        };
        self.group(field)?.get(&request)?.as_ref().ok()?.version.clone()
    }

    /// What the backend holds for `field` at `version` (the declared pin, or the previous of a rotating field).
    fn backend_lookup(&self, field: &ResolvedField, version: VersionPin) -> Lookup {
        let Some(path) = &field.path else {
            return Lookup::Skipped("no `path` declared".into());
        };
        match field.route().map(|r| self.routed.get(r)) {
            None if self.backend.is_none() => return Lookup::Skipped(self.backend_reason.to_string()),
            None | Some(Some(Binding::Bound(_))) => {}
            Some(Some(Binding::Unconfigured { why, fail: false })) => return Lookup::Skipped(why.clone()),
            // A route the loader was never asked to bind: the backend layer is off for this load.
            Some(None) => return Lookup::Skipped("the backend layer is not consulted".into()),
            // Not an outage: a configuration mistake that no lower layer may hide.
            Some(Some(Binding::Unconfigured { why, fail: true })) => {
                return Lookup::Failed(FailureKind::Invalid, why.clone());
            }
        }
        let request = FetchRequest {
            path: path.clone(),
            version,
        };
        // A backend may name the place itself (Key Vault: the mapped name, the version, an expiry).
        let base = (self.group(field).and_then(|g| g.get(&request)))
            .and_then(|r| r.as_ref().ok()?.location.clone())
            .unwrap_or_else(|| format!("secret {path}"));
        let location = match field.key {
            Some(k) => format!("{base} key {k}"),
            None => base,
        };
        match self.group(field).and_then(|g| g.get(&request)) {
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

    /// One figment provider per layer, merged lowest first so that higher layers win. Found values move
    /// from `table` into `slots`; the providers hold slot numbers.
    fn figment(&self, fields: &[ResolvedField], table: &mut [Vec<Lookup>], slots: &mut Slots) -> Figment {
        let mut figment = Figment::new();
        for (index, layer) in self.order.iter().enumerate().rev() {
            let source = match layer {
                Layer::Dotenv => self.dotenv.map(|p| figment::Source::File(p.to_path_buf())),
                _ => None,
            };
            let name = match layer {
                Layer::Backend => String::new(),
                Layer::Files => "file".into(),
                Layer::Env => "env var".into(),
                Layer::Dotenv => ".env file".into(),
                Layer::Default => "default".into(),
            };
            // The backend layer is one snapshot per backend, so that each value's metadata names the backend
            // that served it; a field is routed to one backend, so they never overlap.
            let mut snapshots: Vec<(String, Snapshot)> = Vec::new();
            for (field, lookups) in fields.iter().zip(table.iter_mut()) {
                if let Lookup::Found(value, location) = &mut lookups[index] {
                    let name = match layer {
                        Layer::Backend => self.backend_name(field),
                        _ => name.clone(),
                    };
                    let at = match snapshots.iter().position(|(n, _)| *n == name) {
                        Some(at) => at,
                        None => {
                            snapshots.push((name.clone(), Snapshot::new(name, source.clone())));
                            snapshots.len() - 1
                        }
                    };
                    snapshots[at].1.insert(&field.id, slots.0.len(), location.clone());
                    slots.0.push((index, value.take()));
                }
            }
            for (_, snapshot) in snapshots {
                figment = figment.merge(snapshot);
            }
        }
        figment
    }

    /// Explains figment's `winner` for one field from its `lookups` (one per layer, in precedence order)
    /// and decides what the layers that failed above it mean.
    fn decide(
        &self,
        field: &ResolvedField,
        lookups: Vec<Lookup>,
        winner: Option<(usize, Found, Winner)>,
        warnings: &mut Vec<String>,
    ) -> Decided {
        let won_at = winner.as_ref().map(|(i, ..)| *i);
        let mut attempts = Vec::new();
        let mut outage: Option<(FailureKind, String)> = None;
        let mut invalid: Option<String> = None;
        for (index, (layer, lookup)) in self.order.iter().zip(lookups).enumerate() {
            let above_winner = won_at.is_none_or(|w| index < w);
            let outcome = match lookup {
                Lookup::Found(..) if Some(index) == won_at => AttemptOutcome::Found,
                Lookup::Found(..) => AttemptOutcome::Shadowed,
                Lookup::Missing(why) => AttemptOutcome::Missing(why),
                Lookup::Skipped(why) => AttemptOutcome::Skipped(why),
                Lookup::Unreadable => AttemptOutcome::Skipped("not needed: a higher source won".into()),
                Lookup::Failed(kind, detail) => {
                    if above_winner {
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
            Decided::Failed(FieldError {
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
            // Forbidden and decryption failures are configuration errors: falling back would hide them.
            let misconfigured =
                matches!(kind, FailureKind::Forbidden | FailureKind::Decryption) && !self.allow_fallback.contains(kind);
            if self.strict || misconfigured {
                return fail(FieldProblem::Backend(*kind), attempts);
            }
            if winner.is_some() || field.spec.optional {
                let fallback = winner
                    .as_ref()
                    .map_or_else(|| "None".to_string(), |(_, _, w)| w.layer.to_string());
                tracing::warn!(target: "skm", field = %field.id, path = field.path.as_deref().unwrap_or(""),
                    reason = %kind, detail = %detail, fallback = %fallback,
                    "backend failed; using a lower layer");
                warnings.push(format!(
                    "field `{}`: backend {kind} ({detail}); used {fallback} instead",
                    field.id
                ));
            }
        }
        let Some((_, raw, winner)) = winner else {
            if field.spec.optional {
                return Decided::Absent;
            }
            let reason = outage.map_or(FieldProblem::Missing, |(k, _)| FieldProblem::Backend(k));
            return fail(reason, attempts);
        };
        let shown = format!("{}: {}", winner.source, winner.location);
        // The winner is the source of truth: a bad value there is an error, not a reason to try lower layers.
        if let Err(why) = validate(field, &raw, &shown) {
            return fail(FieldProblem::Validation(why), attempts);
        }
        // A previous version is only meaningful next to the backend's current one, not next to an env value.
        let previous = if field.spec.rotating && winner.layer == Layer::Backend {
            match self.previous(field, &mut attempts, warnings) {
                Ok(previous) => previous,
                Err(problem) => return fail(problem, attempts),
            }
        } else {
            None
        };
        Decided::Found {
            raw,
            winner,
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
            Lookup::Unreadable => (AttemptOutcome::Skipped("not a backend".into()), None),
            Lookup::Failed(kind, detail) => {
                if self.strict {
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

/// Reads one secret file (see [`crate::files::read`]). Text when it is UTF-8, else bytes; the location is
/// the path. An unreadable file is an error naming the file and the OS reason, never a byte of it.
fn read_file(path: &Path, missing: &str) -> Lookup {
    match crate::files::read(path) {
        Ok(Some(bytes)) => {
            let location = path.display().to_string();
            match String::from_utf8(bytes) {
                Ok(text) => Lookup::Found(Found::Text(text), location),
                Err(e) => Lookup::Found(Found::Binary(e.into_bytes()), location),
            }
        }
        Ok(None) => Lookup::Missing(missing.to_string()),
        Err(e) => Lookup::Failed(
            FailureKind::Invalid,
            format!("cannot read file {}: {}", path.display(), e.kind()),
        ),
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
        Lookup::Unreadable => Err("unreadable".into()),
    }
}
