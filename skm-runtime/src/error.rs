//! The one error type of skm, and the per-field report it carries.
//!
//! Nothing here ever holds a secret value: only names, paths, sources and reasons.

use std::borrow::Cow;
use std::fmt;

use crate::failure::FailureKind;

/// Everything that can go wrong in skm.
///
/// `Debug` prints the same human report as `Display`, followed by the chain of causes (as `anyhow` does), so
/// that `fn main() -> Result<(), skm::Error>` shows the per-field report rather than nested structs; `{:#?}`
/// gives the structured view.
///
/// # Example
/// ```
/// use skm_runtime::Error;
/// let e = Error::config("SKM_BACKEND=`nope`: use one of aws, vault".into());
/// assert_eq!(format!("{e:?}"), "skm configuration: SKM_BACKEND=`nope`: use one of aws, vault");
/// assert!(format!("{e:#?}").starts_with("Config("));
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// One or more declared secrets could not be loaded; every failing field is listed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// skm is configured wrongly (an unknown `SKM_BACKEND`, a missing profile, a backend not compiled in...).
    #[error(transparent)]
    Config(ConfigError),
    /// A `.env` file could not be read or parsed (and a field needed it).
    #[error(transparent)]
    Dotenv(#[from] crate::dotenv::DotenvError),
    /// A backend operation outside a load (tooling) failed.
    #[error(transparent)]
    Admin(#[from] crate::failure::AdminError),
    /// A backend could not be set up (client construction, authentication), or a hot-reload refresh failed.
    #[error("{backend}: {detail}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// What went wrong.
        detail: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return match self {
                Error::Load(e) => f.debug_tuple("Load").field(e).finish(),
                Error::Config(e) => f.debug_tuple("Config").field(e).finish(),
                Error::Dotenv(e) => f.debug_tuple("Dotenv").field(e).finish(),
                Error::Admin(e) => f.debug_tuple("Admin").field(e).finish(),
                Error::Backend {
                    backend,
                    detail,
                    source,
                } => f
                    .debug_struct("Backend")
                    .field("backend", backend)
                    .field("detail", detail)
                    .field("source", source)
                    .finish(),
            };
        }
        write!(f, "{self}")?;
        // The causes, each once: a cause whose text the report already holds adds nothing.
        let mut shown = self.to_string();
        let mut cause = std::error::Error::source(self);
        let mut first = true;
        while let Some(c) = cause {
            let text = c.to_string();
            if !text.is_empty() && !shown.contains(&text) {
                if first {
                    f.write_str("\n\nCaused by:")?;
                    first = false;
                }
                write!(f, "\n    {text}")?;
                shown.push_str(&text);
            }
            cause = c.source();
        }
        Ok(())
    }
}

/// A boxed error that can cross threads: the cause carried by [`ConfigError`] and [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A configuration mistake: what to fix, and the error that revealed it, if any ([`std::error::Error::source`]).
///
/// # Example
/// ```
/// use skm_runtime::{ConfigError, Error};
/// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
/// let e = Error::Config(ConfigError::new("cannot read the key file /k").with_source(io));
/// assert_eq!(e.to_string(), "skm configuration: cannot read the key file /k");
/// assert_eq!(std::error::Error::source(&e).unwrap().to_string(), "no such file");
/// ```
#[derive(Debug)]
pub struct ConfigError {
    message: String,
    source: Option<BoxError>,
}

impl ConfigError {
    /// A mistake described by `message` (never a secret value).
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            source: None,
        }
    }

    /// Records the error that revealed the mistake.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The message, without the `skm configuration:` prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skm configuration: {}", self.message)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(e) => Some(&**e),
            None => None,
        }
    }
}

impl From<String> for ConfigError {
    fn from(message: String) -> Self {
        ConfigError::new(message)
    }
}

impl From<&str> for ConfigError {
    fn from(message: &str) -> Self {
        ConfigError::new(message)
    }
}

impl Error {
    /// A configuration error with `message` and no underlying cause.
    pub fn config(message: String) -> Self {
        Error::Config(ConfigError::new(message))
    }

    /// The per-field report, if this is a load failure.
    pub fn as_load(&self) -> Option<&LoadError> {
        match self {
            Error::Load(e) => Some(e),
            _ => None,
        }
    }
}

/// A failed load: every field that could not be resolved, with what was tried.
#[derive(Debug, Clone)]
pub struct LoadError {
    /// The struct being loaded.
    pub struct_name: Cow<'static, str>,
    /// How many fields were declared.
    pub declared: usize,
    /// The failing fields, in declaration order.
    pub fields: Vec<FieldError>,
}

impl std::error::Error for LoadError {}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not load {} of {} secrets of `{}`:",
            self.fields.len(),
            self.declared,
            self.struct_name
        )?;
        for field in &self.fields {
            write!(f, "\n  - {field}")?;
        }
        Ok(())
    }
}

/// One field that could not be resolved.
#[derive(Debug, Clone)]
pub struct FieldError {
    /// Dotted field path (`db.url` for a flattened field).
    pub field: String,
    /// The backend path, if declared.
    pub path: Option<String>,
    /// The key inside the secret, if declared.
    pub key: Option<String>,
    /// The environment variable, if declared.
    pub env: Option<String>,
    /// The field's declared type.
    pub type_name: Cow<'static, str>,
    /// Why the field failed, in one phrase.
    pub reason: FieldProblem,
    /// Every source consulted, in precedence order.
    pub attempts: Vec<Attempt>,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`", self.field)?;
        let mut decl = Vec::new();
        if let Some(p) = &self.path {
            decl.push(format!("path `{p}`"));
        }
        if let Some(k) = &self.key {
            decl.push(format!("key `{k}`"));
        }
        if let Some(e) = &self.env {
            decl.push(format!("env `{e}`"));
        }
        if !decl.is_empty() {
            write!(f, " ({})", decl.join(", "))?;
        }
        write!(f, ": {}", self.reason)?;
        for a in &self.attempts {
            write!(f, "\n      {a}")?;
        }
        Ok(())
    }
}

/// Why a field failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldProblem {
    /// No source had a value.
    Missing,
    /// A source had a value that does not convert to the field's type.
    WrongType {
        /// The declared type.
        expected: Cow<'static, str>,
        /// Where the value came from.
        source: String,
        /// What was wrong (never the value).
        detail: String,
    },
    /// The backend failed and strict mode forbids falling back, or no fallback existed.
    Backend(FailureKind),
    /// The secret exists but cannot be used as declared (e.g. `key` on a value that is not a JSON object).
    Invalid(String),
    /// The value failed a declared validator (`min_len`, `not`, `pattern`); the text names the source and
    /// the failed checks, never the value. Lower layers are not tried: the winning source holds a bad value.
    Validation(String),
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldProblem::Missing => f.write_str("missing: no source has a value"),
            FieldProblem::WrongType {
                expected,
                source,
                detail,
            } => write!(
                f,
                "wrong type: the value from {source} is not a valid `{expected}` ({detail})"
            ),
            FieldProblem::Backend(kind) => write!(f, "{kind}"),
            FieldProblem::Invalid(why) => write!(f, "invalid secret: {why}"),
            FieldProblem::Validation(why) => write!(f, "failed validation: {why}"),
        }
    }
}

/// What one source said about one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The source, e.g. `env var JWT_SECRET_KEY` or `memory: secret auth/jwt key secret`.
    pub source: String,
    /// What happened.
    pub outcome: AttemptOutcome,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.outcome)
    }
}

/// What a source said.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// The source had a value (shown as `found`, never the value).
    Found,
    /// The source had a value but a higher source won.
    Shadowed,
    /// The source had no value; the text says why (e.g. `not set`, `no such secret`).
    Missing(String),
    /// The source failed.
    Failed {
        /// The category.
        kind: FailureKind,
        /// Detail (never a value).
        detail: String,
    },
    /// The source was not consulted; the text says why.
    Skipped(String),
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptOutcome::Found => f.write_str("found"),
            AttemptOutcome::Shadowed => f.write_str("found, but a higher source won"),
            AttemptOutcome::Missing(why) => write!(f, "missing ({why})"),
            AttemptOutcome::Failed { kind, detail } => write!(f, "{kind} ({detail})"),
            AttemptOutcome::Skipped(why) => write!(f, "skipped ({why})"),
        }
    }
}
