//! Stage 1, declarations: what `#[derive(Secrets)]` emits, readable without loading anything.
//!
//! A [`StructSpec`] is static data: tools (the `skm` CLI, `check`, `template`, `policy`) read it to know
//! which secrets a service declares, where each lives and which environment variable backs it. This module
//! imports nothing from later stages; resolving prefixes and profiles into fields is the plan's job
//! ([`StructSpec::resolve`] lives in [`crate::plan`]).

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The declarations of one struct.
#[derive(Debug)]
pub struct StructSpec {
    /// The Rust name of the struct.
    pub name: &'static str,
    /// `#[secrets(prefix = "...")]`: prepended to every path, may contain `{profile}`.
    pub prefix: Option<&'static str>,
    /// The fields, in declaration order.
    pub fields: &'static [FieldSpec],
}

/// One declared field.
#[derive(Debug)]
pub struct FieldSpec {
    /// The Rust name of the field.
    pub name: &'static str,
    /// A secret, or a nested struct.
    pub kind: FieldKind,
}

/// What a field holds.
// `Secret` is the large variant by far, and the common one; these live in `static`s, where boxing is not an option.
#[allow(clippy::large_enum_variant)]
pub enum FieldKind {
    /// A value loaded from the sources.
    Secret(SecretSpec),
    /// `#[secret(flatten)]`: a nested struct that itself derives `Secrets`.
    Flatten(fn() -> &'static StructSpec),
    /// `#[secret(dynamic = "database/creds/app")]`: credentials leased from a dynamic-secrets engine (Vault /
    /// OpenBao), held in a `Leased<T>` that keeps the lease alive (feature `vault`).
    Leased(LeasedSpec),
}

/// Where a leased field's credentials are issued: `#[secret(dynamic = "database/creds/app")]`.
///
/// The path is a secrets engine's credentials endpoint, read as written: the struct's `prefix` (a KV
/// location) does not apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasedSpec {
    /// The credentials endpoint, e.g. `database/creds/app`.
    pub path: &'static str,
    /// The field's type as written, e.g. `Leased<DbCredentials>`.
    pub type_name: &'static str,
}

impl fmt::Debug for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldKind::Secret(s) => f.debug_tuple("Secret").field(s).finish(),
            FieldKind::Flatten(nested) => f.debug_tuple("Flatten").field(&nested().name).finish(),
            FieldKind::Leased(l) => f.debug_tuple("Leased").field(l).finish(),
        }
    }
}

/// Where one secret lives and how it is typed.
///
/// Its text is [`Cow<'static, str>`](Cow): the derive emits borrowed literals, so that declarations stay
/// `static`, and tools that read declarations at run time (the `skm` tool's manifests) own theirs.
#[derive(Clone)]
pub struct SecretSpec {
    /// The path in a backend (`auth/jwt`), before the struct's prefix.
    pub path: Option<Cow<'static, str>>,
    /// The property inside the secret at `path` (a JSON key for AWS, a data key for Vault).
    pub key: Option<Cow<'static, str>>,
    /// The environment / `.env` variable name.
    pub env: Option<Cow<'static, str>>,
    /// The declared fallback value. Not shown by `Debug`: it may itself be sensitive.
    ///
    /// It is compiled into the binary and wins wherever no higher layer has a value, in every environment:
    /// a compile-time decision, meant for non-secret settings.
    pub default: Option<Cow<'static, str>>,
    /// The field is an `Option`: absent everywhere means `None`.
    pub optional: bool,
    /// `#[secret(plain)]`: a deliberately non-secret type such as `u16`.
    pub plain: bool,
    /// The field's type as written, e.g. `SecretBox<u16>`.
    pub type_name: Cow<'static, str>,
    /// Which version of the secret to read.
    pub version: VersionPin,
    /// Checks on the value's text, applied at load: `#[secret(min_len = 32, not = [...], pattern = "...")]`.
    pub validate: Validators,
    /// The field is a [`Rotating`](crate::Rotating): the loader also reads the backend's previous version.
    pub rotating: bool,
    /// `#[secret(backend = "vault")]`: the registry name of the backend this field's `path` is read from;
    /// `None` reads it from the loader's default backend. The derive maps aliases to the canonical name.
    pub backend: Option<&'static str>,
}

impl fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSpec")
            .field("path", &self.path)
            .field("key", &self.key)
            .field("env", &self.env)
            .field("has_default", &self.default.is_some())
            .field("optional", &self.optional)
            .field("plain", &self.plain)
            .field("type_name", &self.type_name)
            .field("version", &self.version)
            .field("validate", &self.validate)
            .field("rotating", &self.rotating)
            .field("backend", &self.backend)
            .finish()
    }
}

/// A declaration as a [`ResolvedField`](crate::plan::ResolvedField) holds it: the derive's `static` one,
/// borrowed, or one a tool read at run time (the `skm` tool's manifests), shared. Cheap to clone either way;
/// it dereferences to the [`SecretSpec`].
///
/// # Example
/// ```
/// use std::borrow::Cow;
/// use skm_runtime::spec::{SecretSpec, SpecRef, Validators, VersionPin};
///
/// static DECLARED: SecretSpec = SecretSpec {
///     path: Some(Cow::Borrowed("auth/jwt")), key: None, env: None, default: None, optional: false,
///     plain: false, type_name: Cow::Borrowed("SecretString"), version: VersionPin::Current,
///     validate: Validators::NONE, rotating: false, backend: None,
/// };
/// let borrowed = SpecRef::from(&DECLARED);
/// let read = SpecRef::from(SecretSpec { path: Some(String::from("auth/jwt").into()), ..DECLARED.clone() });
/// assert_eq!(borrowed.path, read.path);
/// ```
#[derive(Clone)]
pub enum SpecRef {
    /// A declaration emitted by the derive.
    Static(&'static SecretSpec),
    /// A declaration built at run time.
    Shared(Arc<SecretSpec>),
}

impl Deref for SpecRef {
    type Target = SecretSpec;

    fn deref(&self) -> &SecretSpec {
        match self {
            SpecRef::Static(s) => s,
            SpecRef::Shared(s) => s,
        }
    }
}

impl From<&'static SecretSpec> for SpecRef {
    fn from(spec: &'static SecretSpec) -> Self {
        SpecRef::Static(spec)
    }
}

impl From<SecretSpec> for SpecRef {
    fn from(spec: SecretSpec) -> Self {
        SpecRef::Shared(Arc::new(spec))
    }
}

impl fmt::Debug for SpecRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Checks on a field's value, declared with `#[secret(min_len = 32, not = ["changeme"], pattern = "^sk-")]`.
///
/// The loader applies them to the winning source's raw text, before type conversion; a failure is an error
/// ([`FieldProblem::Validation`](crate::FieldProblem::Validation)) that names the source, never the value,
/// and does not fall back to a lower layer. All options are `const`, so that declarations stay `static`.
///
/// # Example
/// ```
/// use std::borrow::Cow;
/// use skm_runtime::spec::{Pattern, Validators};
///
/// const API_KEY: Validators = Validators {
///     min_len: Some(8),
///     not: Cow::Borrowed(&[Cow::Borrowed("changeme")]),
///     pattern: Some(Pattern::regex("^sk-")),
/// };
/// assert!(API_KEY.check("sk-0123456789").is_ok());
/// assert!(API_KEY.check("changeme").is_err());
/// assert!(Validators::NONE.check("").is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Validators {
    /// `min_len = 32`: the least number of characters (Unicode scalar values) the value may have.
    pub min_len: Option<usize>,
    /// `not = ["changeme", "dummy"]`: placeholder values to reject, compared after trimming surrounding
    /// whitespace and ignoring ASCII case.
    pub not: Cow<'static, [Cow<'static, str>]>,
    /// `pattern = "^sk-"`: a regular expression (syntax of the `regex` crate) that must match somewhere in
    /// the value; anchor it with `^...$` to match the whole value.
    pub pattern: Option<Pattern>,
}

/// A `pattern = "..."` validator: the expression, and the function that matches it.
///
/// The matcher is a function pointer so that only a program that declares a pattern links the regex engine:
/// without one, the engine and its Unicode tables (1.5 MB of a 4 MB binary) are left out, which took a
/// third of a millisecond off a cold start. Equality, hashing and `Debug` look at the expression only.
///
/// # Example
/// ```
/// use skm_runtime::spec::Pattern;
///
/// const KEY: Pattern = Pattern::regex("^sk-[0-9a-f]+$");
/// assert_eq!(KEY.source, "^sk-[0-9a-f]+$");
/// assert_eq!((KEY.matches)(&KEY.source, "sk-00ff"), Ok(true));
/// assert_eq!((KEY.matches)(&KEY.source, "pk-00ff"), Ok(false));
/// // Read at run time (the `skm` tool's manifests): owned, nothing leaked.
/// let read = Pattern::regex_owned(String::from("^sk-"));
/// assert_eq!((read.matches)(&read.source, "sk-1"), Ok(true));
/// ```
#[derive(Clone)]
pub struct Pattern {
    /// The expression, as declared.
    pub source: Cow<'static, str>,
    /// Whether a value matches `source`; an error when the expression cannot be compiled (the derive parses
    /// it at compile time, so only a limit such as the compiled size is left).
    pub matches: fn(&str, &str) -> Result<bool, String>,
}

impl Pattern {
    /// A regular expression of the `regex` crate's syntax, compiled once per process on first use.
    pub const fn regex(source: &'static str) -> Pattern {
        Pattern {
            source: Cow::Borrowed(source),
            matches: crate::validate::regex_matches,
        }
    }

    /// [`Pattern::regex`] for an expression read at run time.
    pub fn regex_owned(source: String) -> Pattern {
        Pattern {
            source: Cow::Owned(source),
            matches: crate::validate::regex_matches,
        }
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

impl Validators {
    /// No checks.
    pub const NONE: Validators = Validators {
        min_len: None,
        not: Cow::Borrowed(&[]),
        pattern: None,
    };

    /// Whether no check is declared.
    pub fn is_empty(&self) -> bool {
        self.min_len.is_none() && self.not.is_empty() && self.pattern.is_none()
    }

    /// Checks `value` against every declared validator.
    ///
    /// # Errors
    /// One message listing each failed check, e.g. `is shorter than the minimum of 32 characters`; it never
    /// contains the value, and reads as the predicate of a sentence about the value.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Some(min) = self.min_len {
            if value.chars().count() < min {
                let unit = if min == 1 { "character" } else { "characters" };
                problems.push(format!("is shorter than the minimum of {min} {unit}"));
            }
        }
        let trimmed = value.trim();
        if self.not.iter().any(|p| p.trim().eq_ignore_ascii_case(trimmed)) {
            problems.push("is a placeholder listed in `not`".to_string());
        }
        if let Some(pattern) = &self.pattern {
            let source = &*pattern.source;
            match (pattern.matches)(source, value) {
                Ok(true) => {}
                Ok(false) => problems.push(format!("does not match `pattern` {source}")),
                // The derive parses the pattern at compile time; only a limit (e.g. its compiled size) is left.
                Err(e) => problems.push(format!("cannot be checked: `pattern` {source} does not compile ({e})")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Default for Validators {
    fn default() -> Self {
        Validators::NONE
    }
}

/// Which version of a secret a field reads.
///
/// Labels and ids are a [`Cow<'static, str>`](Cow): the derive emits borrowed literals (so declarations stay
/// `static`), and tools build pins from run-time strings without leaking them.
///
/// # Example
/// ```
/// use skm_runtime::spec::VersionPin;
/// let from_cli = VersionPin::stage(String::from("AWSPREVIOUS"));
/// assert_eq!(from_cli, VersionPin::stage("AWSPREVIOUS"));
/// assert_eq!(from_cli.to_string(), "stage AWSPREVIOUS");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum VersionPin {
    /// The current version (AWS `AWSCURRENT`, Vault's latest).
    #[default]
    Current,
    /// An AWS staging label such as `AWSPREVIOUS`.
    Stage(Cow<'static, str>),
    /// An AWS version id.
    Id(Cow<'static, str>),
    /// A numbered version (Vault KV v2, the local store).
    Number(u64),
    /// The version before the current one (AWS `AWSPREVIOUS`, Vault latest − 1, the local store's previous),
    /// used for rotation grace.
    Previous,
}

impl VersionPin {
    /// Whether this is the current version.
    pub fn is_current(&self) -> bool {
        matches!(self, VersionPin::Current)
    }

    /// A staging-label pin from a literal or a run-time string.
    pub fn stage(label: impl Into<Cow<'static, str>>) -> Self {
        VersionPin::Stage(label.into())
    }

    /// A version-id pin from a literal or a run-time string.
    pub fn id(id: impl Into<Cow<'static, str>>) -> Self {
        VersionPin::Id(id.into())
    }

    /// The staging label, if this is a [`VersionPin::Stage`].
    pub fn as_stage(&self) -> Option<&str> {
        match self {
            VersionPin::Stage(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for VersionPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionPin::Current => f.write_str("current"),
            VersionPin::Stage(s) => write!(f, "stage {s}"),
            VersionPin::Id(s) => write!(f, "version id {s}"),
            VersionPin::Number(n) => write!(f, "version {n}"),
            VersionPin::Previous => f.write_str("previous version"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Validators = Validators {
        min_len: Some(6),
        not: Cow::Borrowed(&[Cow::Borrowed("changeme"), Cow::Borrowed(" Dummy ")]),
        pattern: Some(Pattern::regex("^sk-")),
    };

    #[test]
    fn each_check_passes_and_fails_without_quoting_the_value() {
        assert_eq!(ALL.check("sk-long-enough"), Ok(()));
        assert_eq!(
            ALL.check("sk-ab").unwrap_err(),
            "is shorter than the minimum of 6 characters"
        );
        assert_eq!(ALL.check("no-prefix").unwrap_err(), "does not match `pattern` ^sk-");
        let both = ALL.check("DUMMY").unwrap_err();
        assert_eq!(
            both,
            "is shorter than the minimum of 6 characters; is a placeholder listed in `not`; does not match \
             `pattern` ^sk-"
        );
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let v = Validators {
            min_len: Some(3),
            ..Validators::NONE
        };
        assert!(v.check("éé").is_err());
        assert!(v.check("ééé").is_ok());
    }
}
