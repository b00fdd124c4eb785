//! Stage 5, report: turns the resolve stage's decisions into provenance ([`Origin`], [`Provenance`]),
//! per-field outcomes for typed extraction, and check results ([`Check`]); writes one `skm::audit` event
//! per field. Nothing here holds a value except the [`Resolution`]s handed to the values stage.

use std::collections::HashMap;
use std::fmt;

use crate::error::{Attempt, FieldError};
use crate::plan::ResolvedField;
use crate::resolve::layer::Layer;
use crate::resolve::{Decided, Found, Previous};

/// The outcome for one field, consumed by the generated `from_values`.
pub(crate) enum Resolution {
    Found {
        raw: Found,
        origin: Origin,
        field: ResolvedField,
        attempts: Vec<Attempt>,
        /// A [`Rotating`](crate::Rotating) field's previous version, when the current came from the backend.
        previous: Option<Previous>,
    },
    Absent,
    Failed(FieldError),
}

/// Every field's outcome and the load's provenance.
pub(crate) struct Resolved {
    pub(crate) resolutions: HashMap<String, Resolution>,
    pub(crate) strict: bool,
    pub(crate) provenance: Provenance,
}

/// Assembles the report of one pass from its decisions (one per field, in order); audits each field.
pub(crate) fn assemble(
    fields: &[ResolvedField],
    decided: Vec<Decided>,
    warnings: Vec<String>,
    backend: Option<String>,
    backend_reason: String,
    strict: bool,
) -> Resolved {
    let mut resolutions = HashMap::with_capacity(fields.len());
    let mut origins = Vec::with_capacity(fields.len());
    for (field, decision) in fields.iter().zip(decided) {
        let res = match decision {
            Decided::Found {
                raw,
                winner,
                attempts,
                previous,
            } => Resolution::Found {
                raw,
                origin: Origin {
                    field: field.id.clone(),
                    layer: Some(winner.layer),
                    source: winner.source,
                    location: winner.location,
                    version: winner.version,
                },
                field: field.clone(),
                attempts,
                previous,
            },
            Decided::Absent => Resolution::Absent,
            Decided::Failed(e) => Resolution::Failed(e),
        };
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
    Resolved {
        resolutions,
        strict,
        provenance: Provenance {
            backend,
            backend_reason,
            fields: origins,
            warnings,
        },
    }
}

impl Resolved {
    /// The check result: per field, its origin or its failure, never a value.
    pub(crate) fn check(self, fields: &[ResolvedField]) -> Check {
        let entries = fields.iter().map(|field| {
            let entry = match self.resolutions.get(&field.id) {
                Some(Resolution::Found { origin, .. }) => Ok(Some(origin.clone())),
                Some(Resolution::Failed(e)) => Err(e.clone()),
                _ => Ok(None),
            };
            (field.id.clone(), entry)
        });
        Check {
            fields: entries.collect(),
            provenance: self.provenance,
        }
    }
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
        key = %field.key.as_deref().unwrap_or(""), outcome = %outcome, source = %source, version = %version, "resolve");
}

/// The result of [`Loader::check_fields`](crate::Loader::check_fields): per field, its origin or its failure. Never a value.
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

impl<T> Loaded<T> {
    /// What the load did that the caller did not ask for, one sentence each, never a value: a field served
    /// by a lower layer because its backend failed, a previous version that rotation grace cannot use. Each
    /// was also said once (a `tracing` warning, or a line on stderr when no subscriber is installed).
    pub fn warnings(&self) -> &[String] {
        &self.provenance.warnings
    }
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
