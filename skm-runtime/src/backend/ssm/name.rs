//! A field's path and version pin → the name `GetParameters` is asked for: the leading-`/` rule, Parameter
//! Store's `name:selector` syntax, and the characters AWS accepts (checked here so that one bad name cannot
//! fail the nine others of its batch).

use crate::backend::VersionPin;

/// What one request asks Parameter Store for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wanted {
    /// The parameter: `/auth/jwt`, or an ARN as given.
    pub base: String,
    /// The version or label, without the `:`; `None` for the current version.
    pub selector: Option<String>,
}

impl Wanted {
    /// The text of `Names[]`: `base` or `base:selector`.
    pub fn request(&self) -> String {
        match &self.selector {
            Some(s) => format!("{}:{s}", self.base),
            None => self.base.clone(),
        }
    }
}

/// The parameter name of an skm path: a leading `/` is added unless the path has one or is an ARN.
///
/// ```text
/// auth/jwt  -> /auth/jwt
/// /auth/jwt -> /auth/jwt
/// arn:aws:ssm:eu-west-1:1:parameter/auth/jwt -> unchanged
/// ```
pub(super) fn parameter_name(path: &str) -> String {
    if path.starts_with('/') || path.starts_with("arn:") {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// Splits `path` into its parameter and an optional `:selector` (after the `parameter/` of an ARN).
fn split_selector(path: &str) -> (&str, Option<&str>) {
    let start = if path.starts_with("arn:") {
        path.find(":parameter/").map_or(path.len(), |i| i + ":parameter/".len())
    } else {
        0
    };
    match path[start..].rfind(':') {
        Some(i) => (&path[..start + i], Some(&path[start + i + 1..])),
        None => (path, None),
    }
}

/// What to ask for `path` at `version`; `Err` says why it cannot be asked (for an *invalid* failure).
/// [`VersionPin::Previous`] is the caller's (it needs the current version first): here it is current.
pub(super) fn wanted(path: &str, version: &VersionPin) -> Result<Wanted, String> {
    let (name, in_path) = split_selector(path);
    let base = parameter_name(name);
    check_name(&base)?;
    let pinned = match version {
        VersionPin::Current | VersionPin::Previous => None,
        VersionPin::Number(n) => Some(n.to_string()),
        VersionPin::Stage(label) => Some(label.to_string()),
        VersionPin::Id(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => Some(id.to_string()),
        VersionPin::Id(id) => {
            return Err(format!(
                "`{}` is not a Parameter Store version: its versions are numbers (`version = 3`)",
                id.escape_debug()
            ))
        }
    };
    let selector = match (in_path, pinned) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "`{}` selects a version in its path and the field pins another: keep one",
                path.escape_debug()
            ))
        }
        (Some(s), None) => Some(s.to_string()),
        (None, pinned) => pinned,
    };
    if let Some(s) = &selector {
        check_selector(s)?;
    }
    Ok(Wanted { base, selector })
}

/// AWS's rule for names: letters, digits and `_ . - /`, at most 2048 characters (an ARN also has `:`).
fn check_name(name: &str) -> Result<(), String> {
    let body = if name.starts_with("arn:") {
        name.split_once(":parameter/").map(|(_, n)| n).unwrap_or("")
    } else {
        name
    };
    let ok = !body.trim_matches('/').is_empty()
        && name.len() <= 2048
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a Parameter Store name (letters, digits and `_ . - /` only)",
            name.escape_debug()
        ))
    }
}

/// A version number, or a label (letters, digits and `_ . -`, at most 100 characters).
fn check_selector(selector: &str) -> Result<(), String> {
    let ok = !selector.is_empty()
        && selector.len() <= 100
        && selector
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is neither a version number nor a Parameter Store label",
            selector.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(path: &str, version: VersionPin) -> Result<String, String> {
        wanted(path, &version).map(|w| w.request())
    }

    #[test]
    fn the_leading_slash_rule_and_selectors() {
        assert_eq!(ask("auth/jwt", VersionPin::Current).unwrap(), "/auth/jwt");
        assert_eq!(ask("/auth/jwt", VersionPin::Current).unwrap(), "/auth/jwt");
        assert_eq!(ask("auth/jwt:3", VersionPin::Current).unwrap(), "/auth/jwt:3");
        assert_eq!(ask("auth/jwt", VersionPin::Number(3)).unwrap(), "/auth/jwt:3");
        assert_eq!(ask("auth/jwt", VersionPin::stage("blue")).unwrap(), "/auth/jwt:blue");
        assert_eq!(ask("auth/jwt", VersionPin::id("7")).unwrap(), "/auth/jwt:7");
        let arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/auth/jwt";
        assert_eq!(ask(arn, VersionPin::Current).unwrap(), arn);
        assert_eq!(
            ask(&format!("{arn}:2"), VersionPin::Current).unwrap(),
            format!("{arn}:2")
        );
        assert_eq!(wanted(&format!("{arn}:2"), &VersionPin::Current).unwrap().base, arn);
    }

    #[test]
    fn names_aws_would_refuse_fail_here() {
        for bad in ["a b", "a*", "", "/", "auth/jwt:", "auth/jwt:a b"] {
            assert!(ask(bad, VersionPin::Current).is_err(), "{bad:?}");
        }
        assert!(ask("auth/jwt:3", VersionPin::Number(4)).is_err());
        assert!(ask("auth/jwt", VersionPin::id("v-abc")).is_err());
    }
}
