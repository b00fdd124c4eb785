//! Stage 4, resolve: asks every layer once per field, lets figment's merge pick the one winner, and
//! decides what a failing layer means (fall back, warn, or fail the field).
//!
//! Found values go into [`Slots`], skm's own zeroizing storage; figment only sees slot numbers (see
//! [`layer`]). The winner's slot and its [`figment::Metadata`] come back from the merge, so the
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

use crate::backend::{FailureKind, FetchRequest, SecretValue};
use crate::dotenv::{DotenvError, DotenvFile};
use crate::error::{Attempt, AttemptOutcome, Error, FieldError, FieldProblem};
use crate::fetch::{Fetched, Group};
use crate::plan::ResolvedField;
use crate::spec::VersionPin;

pub(crate) mod files;
pub(crate) mod layer;
mod lookup;
mod reads;

use layer::{EnvSource, Layer, Snapshot};

pub(crate) use lookup::{extract_key_text, json_text, key_of};
pub(crate) use reads::Reads;

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
    /// The secret files and the `.env` file, read under the load's deadline.
    pub(crate) reads: &'a Reads,
    /// An empty env or `.env` value of a secret-typed field counts as absent ([`Loader::empty_is_absent`](crate::Loader::empty_is_absent)).
    pub(crate) empty_is_absent: bool,
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
    /// Feeds the value to a keyed hasher (hot reload's change detection; the hash never leaves memory).
    pub(crate) fn fingerprint(&self, h: &mut impl std::hash::Hasher) {
        match self {
            Found::Text(s) => {
                h.write_u8(0);
                h.write(s.as_bytes());
            }
            Found::Binary(b) => {
                h.write_u8(1);
                h.write(b);
            }
        }
    }

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

impl Previous {
    /// As [`Found::fingerprint`].
    pub(crate) fn fingerprint(&self, h: &mut impl std::hash::Hasher) {
        self.raw.fingerprint(h);
    }
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
/// `dotenv` is the read of the `.env` file, when the loader gathered it with the secret files.
///
/// # Errors
/// The `.env` file is unreadable or malformed and a field reached the `.env` layer.
pub(crate) fn resolve(
    src: &Sources<'_>,
    fields: &[ResolvedField],
    dotenv: Option<Result<Option<DotenvFile>, DotenvError>>,
) -> Result<(Vec<Decided>, Vec<String>), Error> {
    let mut dotenv_error: Option<DotenvError> = None;
    let dotenv = match src.dotenv.filter(|_| src.order.contains(&Layer::Dotenv)) {
        // Read with the secret files, under the load's deadline; read here only if that did not happen.
        Some(path) => match dotenv {
            Some(read) => read,
            // No field reads `.env`, so the loader did not gather it: nothing to read.
            None if fields.iter().all(|f| f.env.is_none()) => Ok(None),
            None => DotenvFile::read(path),
        }
        .unwrap_or_else(|e| {
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
    // Merged once: `Figment::find_value` merges every provider again on each call, which made the merge a
    // third of a 20-field load. Every snapshot is of the default profile, so its dictionary is the merge.
    let merged = figment::Provider::data(&figment)
        .ok()
        .and_then(|mut profiles| profiles.remove(&figment::Profile::Default))
        .map(|dict| figment::value::Value::Dict(figment::value::Tag::Default, dict));
    let mut warnings = Vec::new();
    let mut decided = Vec::with_capacity(fields.len());
    for (field, lookups) in fields.iter().zip(table) {
        let winner = merged
            .as_ref()
            .and_then(|root| root.find_ref(&field.id))
            .and_then(|value| {
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
                key: field.key.as_deref().map(str::to_string),
                env: field.env.as_deref().map(str::to_string),
                type_name: field.spec.type_name.clone(),
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
                let warning = format!(
                    "field `{}`: {} failed ({kind}: {detail}); used {fallback} instead",
                    field.id,
                    self.backend_name(field)
                );
                crate::notice::warn(&warning, || {
                    tracing::warn!(target: "skm", field = %field.id, path = field.path.as_deref().unwrap_or(""),
                        reason = %kind, detail = %detail, fallback = %fallback,
                        "backend failed; using a lower layer");
                });
                warnings.push(warning);
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
            let warning = format!("field `{}`: {what}; only the current version is used", field.id);
            crate::notice::warn(&warning, || {
                tracing::warn!(target: "skm", field = %field.id, path = field.path.as_deref().unwrap_or(""),
                    problem = %what, "previous version unusable; rotation grace has only the current version");
            });
            warnings.push(warning);
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
