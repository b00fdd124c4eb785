//! Checks that need more than one option or more than one field; single options are checked in `attr/`.

use std::collections::HashMap;

use crate::ast::{Field, Input};
use crate::attr::Opt;
use crate::ctxt::Ctxt;

/// Records every problem in `input` that parsing alone cannot see.
pub fn check(input: &Input, cx: &Ctxt) {
    if let Some(prefix) = &input.attrs.prefix {
        check_path(cx, prefix, true);
    }
    for field in &input.fields {
        check_field(cx, field);
    }
    check_unique(cx, input);
}

fn check_field(cx: &Ctxt, field: &Field) {
    let attrs = &field.attrs;
    let name = field.ident;
    if attrs.attr.is_none() {
        cx.error_at(
            name.span(),
            format!(
                "field `{name}` does not say where it comes from: add `#[secret(path = \"...\")]`, \
                 `#[secret(env = \"...\")]`, or `#[secret(flatten)]` for a nested struct"
            ),
        );
        return;
    }

    if let Some(dynamic) = &attrs.dynamic {
        check_dynamic(cx, field, dynamic);
        return;
    }
    if field.leased().is_some() && !attrs.invalid {
        cx.error_spanned_by(
            field.ty,
            format!(
                "field `{name}` is `Leased`, which needs `dynamic`: its credentials are issued by a secrets engine; \
                 write `#[secret(dynamic = \"database/creds/app\")]`"
            ),
        );
        return;
    }

    if attrs.flatten.is_some() {
        // A nested struct declares its own sources; options here would be silently ignored.
        let validators = attrs.validator_options();
        for option in attrs.non_flatten_options() {
            if validators.contains(&option) {
                cx.error_at(
                    option.span(),
                    format!(
                        "`{option}` checks a value, and a `flatten` field is a nested struct: put `{option}` on the \
                         nested struct's fields"
                    ),
                );
                continue;
            }
            cx.error_at(
                option.span(),
                format!(
                    "`flatten` takes no other options: the nested struct declares its own; remove `{option}` \
                     (a path prefix for it goes on that struct as `#[secrets(prefix = \"...\")]`)"
                ),
            );
        }
        return;
    }

    // A `key` without `path` gets its own, more precise error below.
    if attrs.path.is_none() && attrs.env.is_none() && attrs.key.is_none() && !attrs.invalid {
        let attr = attrs.attr.expect("checked above");
        cx.error_spanned_by(
            attr,
            format!(
                "field `{name}` needs a source: write `#[secret(path = \"...\")]` or `#[secret(env = \"...\")]` \
                 (or both)"
            ),
        );
    }
    if let Some(path) = &attrs.path {
        check_path(cx, path, false);
    }
    if let Some(key) = &attrs.key {
        if attrs.path.is_none() && !attrs.invalid {
            cx.error_at(
                key.name.span(),
                "`key` needs `path`: write `#[secret(path = \"auth/jwt\", key = \"secret\")]`",
            );
        }
        if key.value.is_empty() {
            cx.error_at(
                key.span,
                "`key` is empty: name a property of the secret, e.g. `key = \"secret\"`, or remove `key` to read \
                 the whole secret",
            );
        }
    }
    if let Some(backend) = &attrs.backend {
        if attrs.path.is_none() && !attrs.invalid {
            cx.error_at(
                backend.name.span(),
                "`backend` needs `path`: it names the backend the field's `path` is read from, and an env-only \
                 field reads no backend; write `#[secret(path = \"db/password\", backend = \"vault\")]`",
            );
        }
    }
    if let Some(env) = &attrs.env {
        check_env(cx, env);
    }
    if let Some(default) = &attrs.default {
        if field.is_option() {
            cx.error_at(
                default.name.span(),
                "`default` cannot be used on an `Option` field, which is already `None` when absent: remove \
                 `default`, or change the type to the inner type to always get a value",
            );
        }
    }
    check_version(cx, field);
    check_rotating(cx, field);
}

/// A `#[secret(dynamic = "...")]` field: a `Leased<T>`, issued by a secrets engine, with no other option.
fn check_dynamic(cx: &Ctxt, field: &Field, dynamic: &Opt<String>) {
    // Every other option describes a stored value; a leased field's credentials are issued at `dynamic`.
    for option in field.attrs.non_dynamic_options() {
        if option == "backend" {
            cx.error_at(
                option.span(),
                "`backend` cannot be used with `dynamic`: leases are issued by the loader's default backend, \
                 which must be Vault or OpenBao (`SKM_BACKEND=vault`); remove `backend`",
            );
            continue;
        }
        cx.error_at(
            option.span(),
            format!(
                "`{option}` cannot be used with `dynamic`: a leased field's credentials are issued by the secrets \
                 engine at `dynamic`, not read from a stored secret; remove `{option}`"
            ),
        );
    }
    let value = &dynamic.value;
    let problem = if value.is_empty() {
        Some("`dynamic` is empty")
    } else if value.chars().any(char::is_whitespace) {
        Some("`dynamic` must not contain whitespace")
    } else if value.starts_with('/') || value.ends_with('/') || value.contains("//") {
        Some("`dynamic` must not start or end with `/` or contain `//`")
    } else {
        None
    };
    if let Some(problem) = problem {
        cx.error_at(
            dynamic.span,
            format!("{problem}: write a credentials endpoint such as `dynamic = \"database/creds/app\"`"),
        );
    }
    match field.leased() {
        Some(Some(_)) => {}
        Some(None) => cx.error_spanned_by(
            field.ty,
            "`Leased` needs the type of its credentials: write `Leased<DbCredentials>`, where `DbCredentials` \
             derives `Deserialize` from the engine's data (`username`, `password`)",
        ),
        None => cx.error_spanned_by(
            field.ty,
            format!(
                "field `{}` has `dynamic`, so it holds leased credentials: declare it `Leased<T>`, e.g. \
                 `{}: Leased<DbCredentials>` with `DbCredentials` deriving `Deserialize`",
                field.ident, field.ident
            ),
        ),
    }
}

/// A `Rotating<T>` field reads the current and the previous version of a backend secret.
fn check_rotating(cx: &Ctxt, field: &Field) {
    let attrs = &field.attrs;
    if field.is_option_of_rotating() {
        cx.error_spanned_by(
            field.ty,
            "a `Rotating` field cannot be an `Option`: declare it `Rotating<T>` (its previous version is already \
             optional), or read the current version into an `Option<T>` field",
        );
        return;
    }
    let Some(inner) = field.rotating() else {
        return;
    };
    if inner.is_none() {
        cx.error_spanned_by(
            field.ty,
            "`Rotating` needs the type of its value: write `Rotating<SecretString>`",
        );
    }
    if attrs.path.is_none() && !attrs.invalid {
        cx.error_spanned_by(
            field.ty,
            format!(
                "field `{}` is `Rotating`, which needs `path`: the previous version is read from a backend, and \
                 environment variables have no versions; add `path = \"...\"`",
                field.ident
            ),
        );
    }
    let pins = [&attrs.version_stage, &attrs.version_id]
        .into_iter()
        .flatten()
        .map(|o| &o.name);
    for pin in pins.chain(attrs.version.as_ref().map(|o| &o.name)) {
        cx.error_at(
            pin.span(),
            format!(
                "`{pin}` pins one version, but a `Rotating` field reads the current and the previous one: remove \
                 `{pin}`, or make the field a plain secret type to read only the pinned version"
            ),
        );
    }
}

fn check_version(cx: &Ctxt, field: &Field) {
    let attrs = &field.attrs;
    if let (Some(_), Some(id)) = (&attrs.version_stage, &attrs.version_id) {
        cx.error_at(
            id.name.span(),
            "`version_stage` and `version_id` both pin a version: keep one of them",
        );
    }
    if attrs.version.is_some() {
        for other in [&attrs.version_stage, &attrs.version_id].into_iter().flatten() {
            cx.error_at(
                other.name.span(),
                format!(
                    "`{}` and `version` both pin a version: use `version = N` for numbered versions (Vault, local) \
                     or `{}` for AWS, not both",
                    other.name, other.name
                ),
            );
        }
    }
    // Versions live in backends; an environment variable has only one value.
    let pin = [&attrs.version_stage, &attrs.version_id]
        .into_iter()
        .flatten()
        .map(|o| &o.name)
        .chain(attrs.version.as_ref().map(|o| &o.name))
        .next();
    if let (Some(pin), None) = (pin, &attrs.path) {
        if attrs.env.is_some() && !attrs.invalid {
            cx.error_at(
                pin.span(),
                format!("`{pin}` needs `path`: environment variables have no versions; add `path = \"...\"`"),
            );
        }
    }
}

/// Checks a backend path, or with `prefix` the struct's prefix (which may contain `{profile}`).
fn check_path(cx: &Ctxt, opt: &Opt<String>, prefix: bool) {
    let what = if prefix { "prefix" } else { "path" };
    let value = &opt.value;
    let example = if prefix { "myapp/{profile}" } else { "auth/jwt" };
    let problem = if value.is_empty() {
        Some(format!(
            "`{what}` is empty: write a path such as `{what} = \"{example}\"`"
        ))
    } else if value.chars().any(char::is_whitespace) {
        Some(format!(
            "`{what}` must not contain whitespace: write a path such as `{what} = \"{example}\"`"
        ))
    } else if value.starts_with('/') || value.ends_with('/') || value.contains("//") {
        // Paths are joined with `/` after the prefix, so stray slashes would make empty segments.
        let fixed = value.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/");
        let rule = if value.starts_with('/') {
            "must not start with `/`"
        } else if value.ends_with('/') {
            "must not end with `/`"
        } else {
            "must not contain an empty segment (`//`)"
        };
        Some(format!("`{what}` {rule}: write `{what} = \"{fixed}\"`"))
    } else if value.split('/').any(|s| s == ".." || s == ".") {
        Some(format!(
            "`{what}` must not contain a `.` or `..` segment: write the full path from the root, e.g. `{what} = \
             \"{example}\"`"
        ))
    } else if prefix {
        check_placeholders(value)
    } else if value.contains(['{', '}']) {
        Some(
            "`path` cannot contain `{...}`: placeholders such as `{profile}` go in the struct's \
             `#[secrets(prefix = \"myapp/{profile}\")]`"
                .to_string(),
        )
    } else {
        None
    };
    if let Some(problem) = problem {
        cx.error_at(opt.span, problem);
    }
}

/// The only placeholder a prefix may use is `{profile}`, which the loader substitutes.
fn check_placeholders(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Some("`prefix` has a `}` without a `{`: the only placeholder is `{profile}`".to_string());
        }
        let Some(close) = rest[open..].find('}') else {
            return Some("`prefix` has a `{` without a `}`: write the placeholder as `{profile}`".to_string());
        };
        let placeholder = &rest[open..open + close + 1];
        if placeholder != "{profile}" {
            return Some(format!(
                "unknown placeholder `{placeholder}` in `prefix`: the only placeholder is `{{profile}}`, e.g. \
                 `prefix = \"myapp/{{profile}}\"`"
            ));
        }
        rest = &rest[open + close + 1..];
    }
    None
}

fn check_env(cx: &Ctxt, env: &Opt<String>) {
    let value = &env.value;
    if value.is_empty() {
        cx.error_at(
            env.span,
            "`env` is empty: write a variable name such as `env = \"JWT_SECRET_KEY\"`",
        );
        return;
    }
    if is_env_name(value) {
        return;
    }
    let rule = "environment variable names are upper-case letters, digits and `_`, not starting with a digit";
    // `jwt-secret.key` → `JWT_SECRET_KEY`, when that gives a valid name.
    let fixed: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let msg = if is_env_name(&fixed) {
        format!("invalid `env` name `{value}`: {rule}; write `env = \"{fixed}\"`")
    } else {
        format!("invalid `env` name `{value}`: {rule}, e.g. `env = \"JWT_SECRET_KEY\"`")
    };
    cx.error_at(env.span, msg);
}

/// `[A-Z_][A-Z0-9_]*`
fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Two fields may not read the same variable or the same secret: one of them is surely a copy-paste slip.
fn check_unique(cx: &Ctxt, input: &Input) {
    let mut envs: HashMap<&str, &Field> = HashMap::new();
    // The version is part of the identity: reading the current and the previous version of one secret
    // side by side is how rotation is handled.
    let mut secrets: HashMap<(&str, Option<&str>, Pin), &Field> = HashMap::new();
    for field in &input.fields {
        let attrs = &field.attrs;
        if attrs.flatten.is_some() {
            continue;
        }
        if let Some(env) = &attrs.env {
            if let Some(first) = envs.get(env.value.as_str()) {
                cx.error_at(
                    env.span,
                    format!(
                        "field `{}` already reads env `{}`: give each field its own variable",
                        first.ident, env.value
                    ),
                );
            } else {
                envs.insert(&env.value, field);
            }
        }
        if let Some(path) = &attrs.path {
            let key = attrs.key.as_ref().map(|k| k.value.as_str());
            let pin = Pin::of(field);
            if let Some(first) = secrets.get(&(path.value.as_str(), key, pin.clone())) {
                let what = match key {
                    Some(key) => format!("path `{}`, key `{key}`", path.value),
                    None => format!("path `{}`", path.value),
                };
                cx.error_at(
                    path.span,
                    format!(
                        "field `{}` already reads the secret at {what}: remove one of the fields, or point this \
                         one at another `path` or `key`",
                        first.ident
                    ),
                );
            } else {
                secrets.insert((&path.value, key, pin), field);
            }
        }
    }
}

/// A field's version pin, for comparing declarations.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Pin {
    Current,
    Stage(String),
    Id(String),
    Number(u64),
}

impl Pin {
    fn of(field: &Field) -> Self {
        let attrs = &field.attrs;
        if let Some(n) = &attrs.version {
            Pin::Number(n.value)
        } else if let Some(s) = &attrs.version_stage {
            Pin::Stage(s.value.clone())
        } else if let Some(id) = &attrs.version_id {
            Pin::Id(id.value.clone())
        } else {
            Pin::Current
        }
    }
}
