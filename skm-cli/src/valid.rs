//! Checks on a manifest read from a file: the rules `#[derive(Secrets)]` applies to declarations
//! (`skm-derive/src/valid.rs`), so that a manifest can declare nothing the derive would refuse.
//!
//! A manifest is input: its names go into generated documents (`.env.example`, Vault HCL, ExternalSecret
//! YAML) and onto the terminal. Every problem is collected, so that the user sees them all at once, and no
//! message quotes an offending name that holds a control character.

use std::collections::HashMap;

use crate::decl::{Manifest, ManifestField, ManifestVersion};
use crate::safe::{display, unsafe_char};

/// Every problem in `manifest`, each a sentence that says how to fix it; empty when it is valid.
pub(crate) fn check(manifest: &Manifest) -> Vec<String> {
    let mut errors = Vec::new();
    if !is_ident(&manifest.struct_name) {
        errors.push(format!(
            "`struct` = `{}` is not a Rust type name: letters, digits and `_`, not starting with a digit",
            display(&manifest.struct_name)
        ));
    }
    if let Some(p) = &manifest.profile {
        if let Err(e) = crate::check_profile(p) {
            errors.push(format!("`profile`: {e}"));
        }
    }
    for (i, f) in manifest.secrets.iter().enumerate() {
        check_field(i, f, &mut errors);
    }
    check_unique(&manifest.secrets, &mut errors);
    errors
}

fn check_field(index: usize, f: &ManifestField, errors: &mut Vec<String>) {
    let at = if f.field.split('.').all(is_ident) {
        format!("secret `{}`", f.field)
    } else {
        errors.push(format!(
            "secret #{}: `field` = `{}` is not a field name: dotted Rust identifiers, e.g. `db.url`",
            index + 1,
            display(&f.field)
        ));
        format!("secret #{}", index + 1)
    };
    if f.path.is_none() && f.env.is_none() {
        errors.push(format!("{at} needs a source: give it `path` or `env` (or both)"));
    }
    if let Some(path) = &f.path {
        if let Some(problem) = path_problem(path) {
            errors.push(format!("{at}: {problem}"));
        }
    }
    if let Some(key) = &f.key {
        if f.path.is_none() {
            errors.push(format!("{at}: `key` needs `path`"));
        }
        if key.is_empty() {
            errors.push(format!(
                "{at}: `key` is empty: name a property of the secret, or remove `key`"
            ));
        } else if key.chars().any(unsafe_char) {
            errors.push(format!("{at}: `key` = `{}` contains a control character", display(key)));
        }
    }
    if let Some(backend) = &f.backend {
        if skm_runtime::backend::registry::find(backend).is_none() {
            let names: Vec<&str> = skm_runtime::backend::registry::all().iter().map(|d| d.name).collect();
            errors.push(format!(
                "{at}: unknown `backend` = `{}`: use one of {}",
                display(backend),
                names.join(", ")
            ));
        }
        if f.path.is_none() {
            errors.push(format!(
                "{at}: `backend` needs `path`: an env-only secret reads no backend"
            ));
        }
    }
    if let Some(env) = &f.env {
        if !is_env_name(env) {
            errors.push(format!(
                "{at}: invalid `env` name `{}`: environment variable names are upper-case letters, digits and \
                 `_`, not starting with a digit",
                display(env)
            ));
        }
    }
    if f.default.is_some() && !f.plain {
        errors.push(format!(
            "{at}: `default` is written for `plain` fields only: a secret-typed field's default stays in the \
             application (`has_default = true` flags it); remove `default`"
        ));
    }
    if let Some(pattern) = &f.pattern {
        // The derive compiles a pattern at build time; a manifest's is compiled here, once, so that a bad one
        // is a usage error and not a failure of every load.
        let compiled = skm_runtime::spec::Pattern::regex_owned(pattern.clone());
        if let Err(e) = (compiled.matches)(&compiled.source, "") {
            errors.push(format!("{at}: `pattern` does not compile: {}", display(&e)));
        }
    }
    let type_ok = !f.type_name.trim().is_empty()
        && f.type_name
            .chars()
            .all(|c| c.is_alphanumeric() || " _:<>,&'[];()".contains(c));
    if !type_ok {
        errors.push(format!(
            "{at}: `type` = `{}` is not a Rust type as `skm manifest` writes it",
            display(&f.type_name)
        ));
    }
    match &f.version {
        ManifestVersion::Stage(s) | ManifestVersion::Id(s)
            if s.is_empty() || s.chars().any(|c| c.is_whitespace() || unsafe_char(c)) =>
        {
            errors.push(format!(
                "{at}: the version pin `{}` must be a non-empty label without spaces or control characters",
                display(s)
            ));
        }
        ManifestVersion::Current | ManifestVersion::Previous => {}
        _ if f.path.is_none() => {
            errors.push(format!(
                "{at}: a version pin needs `path`: environment variables have no versions"
            ));
        }
        _ => {}
    }
}

/// The derive's path rules, plus no control characters: a manifest is not checked by a compiler.
fn path_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        Some("`path` is empty: write a path such as `auth/jwt`".into())
    } else if value.chars().any(|c| c.is_whitespace() || unsafe_char(c)) {
        Some(format!(
            "`path` = `{}` must not contain whitespace or control characters",
            display(value)
        ))
    } else if value.starts_with('/') || value.ends_with('/') || value.contains("//") {
        Some(format!(
            "`path` = `{value}` must not start or end with `/` or contain an empty segment (`//`)"
        ))
    } else if value.split('/').any(|s| s == ".." || s == ".") {
        Some(format!("`path` = `{value}` must not contain a `.` or `..` segment"))
    } else if value.contains(['{', '}']) {
        Some(format!(
            "`path` = `{value}` cannot contain `{{...}}`: a manifest holds resolved paths (export one per profile)"
        ))
    } else {
        None
    }
}

/// Two fields may not read the same variable or the same secret (and version), as the derive checks.
fn check_unique(fields: &[ManifestField], errors: &mut Vec<String>) {
    let mut envs: HashMap<&str, &str> = HashMap::new();
    let mut secrets: HashMap<(&str, Option<&str>, &ManifestVersion), &str> = HashMap::new();
    for f in fields {
        if let Some(env) = &f.env {
            if let Some(first) = envs.insert(env, &f.field) {
                errors.push(format!(
                    "secrets `{first}` and `{}` both read env `{}`: give each its own variable",
                    display(&f.field),
                    display(env)
                ));
            }
        }
        if let Some(path) = &f.path {
            if let Some(first) = secrets.insert((path, f.key.as_deref(), &f.version), &f.field) {
                errors.push(format!(
                    "secrets `{first}` and `{}` both read `{}`{}: remove one, or point it at another path or key",
                    display(&f.field),
                    display(path),
                    f.key
                        .as_deref()
                        .map(|k| format!(" key `{}`", display(k)))
                        .unwrap_or_default()
                ));
            }
        }
    }
}

/// A Rust identifier (ASCII, as the derive emits field and struct names), optionally raw (`r#type`).
fn is_ident(s: &str) -> bool {
    let s = s.strip_prefix("r#").unwrap_or(s);
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s != "_"
}

/// `[A-Z_][A-Z0-9_]*`, as the derive requires of `env`.
pub(crate) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> ManifestField {
        ManifestField {
            field: name.into(),
            path: Some("app/jwt".into()),
            key: Some("secret".into()),
            env: Some("JWT_SECRET".into()),
            type_name: "SecretString".into(),
            optional: false,
            has_default: false,
            plain: false,
            default: None,
            min_len: None,
            not: Vec::new(),
            pattern: None,
            version: ManifestVersion::Current,
            backend: None,
        }
    }

    fn manifest(secrets: Vec<ManifestField>) -> Manifest {
        Manifest {
            skm_manifest: crate::decl::MANIFEST_FORMAT,
            struct_name: "AppSecrets".into(),
            profile: None,
            secrets,
        }
    }

    #[test]
    fn a_valid_manifest_passes() {
        let mut db = field("db.url");
        db.env = Some("DATABASE_URL".into());
        db.path = Some("app/db".into());
        db.type_name = "Option<SecretBox<Vec<u8>>>".into();
        assert_eq!(check(&manifest(vec![field("jwt"), db])), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported() {
        let mut bad = field("a\nb");
        bad.path = Some("../etc".into());
        bad.env = Some("lower-case".into());
        bad.key = Some("k\r\n".into());
        let mut m = manifest(vec![bad, field("jwt"), field("jwt2")]);
        m.struct_name = "X\n# injected".into();
        m.profile = Some("*".into());
        let errors = check(&m);
        assert_eq!(errors.len(), 8, "{errors:#?}");
        for e in &errors {
            assert!(!e.contains('\n') && !e.contains('\r'), "{e:?}");
        }
    }

    #[test]
    fn a_secret_default_and_a_broken_pattern_are_refused() {
        let mut secret_default = field("jwt");
        secret_default.has_default = true;
        secret_default.default = Some("SENTINEL-default".into());
        let mut pattern = field("key");
        pattern.env = Some("KEY".into());
        pattern.path = Some("app/key".into());
        pattern.pattern = Some("^(unclosed".into());
        let mut plain = field("port");
        plain.env = Some("PORT".into());
        plain.path = None;
        plain.key = None;
        plain.plain = true;
        plain.has_default = true;
        plain.default = Some("8080".into());
        plain.pattern = Some("^[0-9]+$".into());
        let errors = check(&manifest(vec![secret_default, pattern, plain]));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].contains("`default`") && !errors[0].contains("SENTINEL"),
            "{errors:#?}"
        );
        assert!(errors[1].contains("`pattern` does not compile"), "{errors:#?}");
        for e in &errors {
            assert!(!e.contains('\n') && !e.contains('\r'), "{e:?}");
        }
    }
}
