//! Stage 6, values: the [`Secrets`] trait and typed extraction. The generated `from_values` pulls each
//! field out of [`Values`], which converts the winning raw value to the field's type ([`crate::de`]) and
//! collects every failure so that one load reports them all.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretBox};

use serde::de::DeserializeOwned;

use crate::de::{self, Raw};
use crate::error::{Error, FieldError, FieldProblem, LoadError};
use crate::lease::{Issued, Leased};
use crate::plan::ResolvedField;
use crate::report::{Loaded, Origin, Provenance, Resolution, Resolved};
use crate::resolve::layer::Layer;
use crate::resolve::Found;
use crate::rotating::Rotating;
use crate::spec::StructSpec;

/// A struct whose fields are secrets declared with `#[secret(...)]`.
///
/// Implemented by `#[derive(Secrets)]`; implementing it by hand is possible but rarely useful.
///
/// # Example
/// With the derive (from the `skm` crate):
/// ```ignore
/// use skm::{Secrets, SecretString};
///
/// #[derive(Secrets)]
/// struct AppSecrets {
///     #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
///     jwt_secret: SecretString,
/// }
///
/// let spec = <AppSecrets as skm::Secrets>::spec();
/// assert_eq!(spec.fields[0].name, "jwt_secret");
/// ```
/// The facade crate's documentation runs this example.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not derive `Secrets`",
    label = "not a `Secrets` struct",
    note = "a `#[secret(flatten)]` field must be a struct with `#[derive(Secrets)]`"
)]
pub trait Secrets: Sized {
    /// The declarations of this struct, as static data.
    fn spec() -> &'static StructSpec;

    /// Builds the struct from resolved values.
    ///
    /// Returns `None` when a field failed; the failure is recorded in `values`, which keeps going so that
    /// one load reports every failing field.
    #[doc(hidden)]
    fn from_values(values: &mut Values<'_>) -> Option<Self>;
}

/// The leases the loader issued for `#[secret(dynamic = "...")]` fields, by field id, or each one's error.
pub(crate) type IssuedLeases = HashMap<String, Result<Issued, FieldError>>;

/// Builds `T` from resolved fields and issued leases, collecting every failure.
///
/// Leases not adopted (because another field failed) are revoked when `leases` is dropped.
pub(crate) fn build<T: Secrets>(
    fields: &[ResolvedField],
    resolved: Resolved,
    leases: IssuedLeases,
) -> Result<Loaded<T>, Error> {
    let leased = T::spec().leased_fields().len();
    let mut values = Values {
        resolutions: &resolved.resolutions,
        scope: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        strict: resolved.strict,
        leases,
        leased_origins: Vec::new(),
    };
    let built = T::from_values(&mut values);
    let Values {
        errors,
        warnings,
        leased_origins,
        ..
    } = values;
    let mut provenance = resolved.provenance;
    provenance.warnings.extend(warnings);
    provenance.fields.extend(leased_origins);
    match built {
        Some(value) if errors.is_empty() => Ok(Loaded { value, provenance }),
        _ => Err(Error::Load(LoadError {
            struct_name: Cow::Borrowed(T::spec().name),
            declared: fields.len() + leased,
            fields: errors,
        })),
    }
}

fn raw(found: &Found) -> Raw<'_> {
    match found {
        Found::Text(s) => Raw::Text(s),
        Found::Binary(b) => Raw::Binary(b),
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
    leases: IssuedLeases,
    /// Provenance of the leased fields taken so far.
    leased_origins: Vec<Origin>,
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
                raw: found,
                origin,
                field,
                attempts,
                ..
            }) => match de::extract::<T>(raw(found)) {
                Ok(v) => Some(v),
                Err(detail) => {
                    self.errors.push(FieldError {
                        field: id,
                        path: field.path.clone(),
                        key: field.key.as_deref().map(str::to_string),
                        env: field.env.as_deref().map(str::to_string),
                        type_name: field.spec.type_name.clone(),
                        reason: FieldProblem::WrongType {
                            expected: field.spec.type_name.clone(),
                            source: origin.to_string(),
                            detail,
                        },
                        attempts: attempts.clone(),
                    });
                    None
                }
            },
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
        match de::extract::<T>(raw(&previous.raw)) {
            Ok(v) => Some(Rotating::new(current, Some(v))),
            Err(detail) if self.strict => {
                self.errors.push(FieldError {
                    field: id,
                    path: resolved.path.clone(),
                    key: resolved.key.as_deref().map(str::to_string),
                    env: resolved.env.as_deref().map(str::to_string),
                    type_name: resolved.spec.type_name.clone(),
                    reason: FieldProblem::WrongType {
                        expected: resolved.spec.type_name.clone(),
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
                let warning = format!("field `{id}`: {what}; only the current version is used");
                crate::notice::warn(&warning, || {
                    tracing::warn!(target: "skm", field = %id, problem = %what,
                        "previous version unusable; rotation grace has only the current version");
                });
                self.warnings.push(warning);
                Some(Rotating::new(current, None))
            }
        }
    }

    /// Takes the lease issued for the `#[secret(dynamic = "...")]` field `field`, decodes its credentials as
    /// `T` and starts keeping it, recording a failure and returning `None` if it cannot.
    pub fn take_leased<T>(&mut self, field: &'static str) -> Option<Leased<T>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let id = self.id(field);
        let issued = match self.leases.remove(&id) {
            Some(Ok(issued)) => issued,
            Some(Err(e)) => {
                self.errors.push(e);
                return None;
            }
            None => {
                // Only `load` issues leases (`watch` refuses a struct with leased fields before any read).
                self.errors.push(FieldError {
                    field: id,
                    path: None,
                    key: None,
                    env: None,
                    type_name: "Leased".into(),
                    reason: FieldProblem::Invalid(
                        "no lease was issued for this field: load a struct with leased fields with `load()`, not \
                         `watch()` (a `Leased` field renews and re-issues itself)"
                            .into(),
                    ),
                    attempts: Vec::new(),
                });
                return None;
            }
        };
        let fingerprint = issued.fingerprint();
        let source = format!("{} dynamic secret", issued.issuer());
        match issued.adopt::<T>() {
            Ok(leased) => {
                self.leased_origins.push(Origin {
                    field: id,
                    layer: Some(Layer::Backend),
                    source,
                    location: format!("{} lease {fingerprint}", leased.path()),
                    version: None,
                });
                Some(leased)
            }
            Err(e) => {
                self.errors.push(FieldError {
                    field: id,
                    path: Some(e.path().to_string()),
                    key: None,
                    env: None,
                    type_name: std::any::type_name::<T>().into(),
                    reason: FieldProblem::WrongType {
                        expected: std::any::type_name::<T>().into(),
                        source: format!("dynamic secret {}", e.path()),
                        detail: e.to_string(),
                    },
                    attempts: Vec::new(),
                });
                None
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

/// One field's winning value, untyped: text or bytes, for adapters that hand values on as they are (a
/// figment provider, `skm run`'s child environment). Debug shows the field and origin, never the value.
pub struct RawField {
    /// Dotted field id.
    pub field: String,
    /// The declared environment variable name, if any.
    pub env: Option<Cow<'static, str>>,
    /// Where the value came from.
    pub origin: Origin,
    value: SecretBox<Vec<u8>>,
}

impl RawField {
    /// A value and where it came from (a reference's, resolved by the loader).
    pub(crate) fn new(field: String, env: Option<Cow<'static, str>>, origin: Origin, bytes: Vec<u8>) -> Self {
        RawField {
            field,
            env,
            origin,
            value: SecretBox::new(Box::new(bytes)),
        }
    }

    /// The value's bytes.
    pub fn expose_bytes(&self) -> &[u8] {
        self.value.expose_secret()
    }

    /// The value as text, or `None` when it is not UTF-8 (a binary secret).
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(self.value.expose_secret()).ok()
    }
}

impl fmt::Debug for RawField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawField")
            .field("field", &self.field)
            .field("env", &self.env)
            .field("origin", &self.origin)
            .field("value", &"[REDACTED]")
            .finish()
    }
}

/// The result of [`Loader::load_raw`](crate::Loader::load_raw): every resolved field's value, untyped.
#[derive(Debug)]
pub struct RawValues {
    /// The fields that have a value, in declaration order (an optional field absent everywhere is left out).
    pub fields: Vec<RawField>,
    /// Where each field came from, and the load's warnings.
    pub provenance: Provenance,
}

/// Collects the winning values of `fields`, or every failure as one [`Error::Load`].
pub(crate) fn raw_values(
    struct_name: Cow<'static, str>,
    fields: &[ResolvedField],
    mut resolved: Resolved,
) -> Result<RawValues, Error> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for field in fields {
        match resolved.resolutions.remove(&field.id) {
            Some(Resolution::Found { mut raw, origin, .. }) => {
                let bytes = match &mut raw {
                    Found::Text(s) => std::mem::take(s).into_bytes(),
                    Found::Binary(b) => std::mem::take(b),
                };
                out.push(RawField {
                    field: field.id.clone(),
                    env: field.env.clone(),
                    origin,
                    value: SecretBox::new(Box::new(bytes)),
                });
            }
            Some(Resolution::Failed(e)) => errors.push(e),
            Some(Resolution::Absent) | None => {}
        }
    }
    if !errors.is_empty() {
        return Err(Error::Load(LoadError {
            struct_name,
            declared: fields.len(),
            fields: errors,
        }));
    }
    Ok(RawValues {
        fields: out,
        provenance: resolved.provenance,
    })
}
