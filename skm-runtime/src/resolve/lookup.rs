//! One lookup per field and layer: the backend's answer (a key of a JSON object, a version), secret files, the
//! environment, `.env` and the default, each named as provenance shows it.

use std::path::Path;

use secrecy::ExposeSecret;

use super::*;

impl Sources<'_> {
    /// The display name of the backend that serves `field`'s path.
    pub(super) fn backend_name(&self, field: &ResolvedField) -> String {
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
    pub(super) fn group(&self, field: &ResolvedField) -> Option<&Group> {
        self.fetched.get(&field.route())
    }

    pub(super) fn source_name(&self, layer: Layer, field: &ResolvedField) -> String {
        match layer {
            Layer::Backend => {
                let name = self.backend_name(field);
                match (&field.path, field.key.as_deref()) {
                    (Some(p), Some(k)) => format!("{name} secret `{p}` key `{k}`"),
                    (Some(p), None) => format!("{name} secret `{p}`"),
                    _ => name,
                }
            }
            Layer::Files => match (self.files, field.env.as_deref()) {
                (Some(dir), Some(name)) => format!("file {}", dir.join(name).display()),
                _ => "secret files".into(),
            },
            Layer::Env => format!("env var {}", field.env.as_deref().unwrap_or("(none)")),
            Layer::Dotenv => match self.dotenv {
                Some(p) => format!(".env file {}", p.display()),
                None => ".env file".into(),
            },
            Layer::Default => "declared default".into(),
        }
    }

    pub(super) fn lookup(
        &self,
        layer: Layer,
        field: &ResolvedField,
        dotenv: Option<&DotenvFile>,
        unreadable: bool,
    ) -> Lookup {
        match layer {
            Layer::Backend => self.backend_lookup(field, field.spec.version.clone()),
            Layer::Files => match (field.env.as_deref(), self.files) {
                (None, _) => Lookup::Skipped("no `env` declared".into()),
                (_, None) => Lookup::Skipped("no secrets directory (SKM_SECRETS_DIR)".into()),
                (Some(name), Some(dir)) => read_file(self.reads, &dir.join(name), "no such file"),
            },
            Layer::Env => match field.env.as_deref() {
                None => Lookup::Skipped("no `env` declared".into()),
                Some(name) => {
                    let value = self.env.get(name);
                    let empty = value.as_ref().is_some_and(|v| self.counts_as_empty(field, v));
                    match value {
                        Some(v) if !empty => Lookup::Found(Found::Text(v), name.to_string()),
                        // Docker's convention: `NAME_FILE` names a file holding the value.
                        _ => match self.env.get(&format!("{name}_FILE")) {
                            Some(path) if !path.is_empty() => match read_file(self.reads, Path::new(&path), "") {
                                Lookup::Found(v, location) => Lookup::Found(v, format!("{name}_FILE {location}")),
                                Lookup::Missing(_) => Lookup::Failed(
                                    FailureKind::Invalid,
                                    format!("{name}_FILE names {path}, which does not exist"),
                                ),
                                other => other,
                            },
                            _ if empty => Lookup::Missing(format!("empty in env var {name}")),
                            _ => Lookup::Missing("not set".into()),
                        },
                    }
                }
            },
            Layer::Dotenv => match (field.env.as_deref(), self.dotenv, dotenv) {
                (None, _, _) => Lookup::Skipped("no `env` declared".into()),
                (_, None, _) => Lookup::Skipped("disabled".into()),
                (_, Some(_), None) if unreadable => Lookup::Unreadable,
                (_, Some(_), None) => Lookup::Missing("no such file".into()),
                (Some(name), Some(_), Some(file)) => match file.get(name) {
                    Some(entry) if self.counts_as_empty(field, entry.value().expose_secret()) => Lookup::Missing(
                        format!("empty in .env file {} line {}", file.path().display(), entry.line()),
                    ),
                    Some(entry) => Lookup::Found(
                        Found::Text(entry.value().expose_secret().to_string()),
                        format!("{} line {}", file.path().display(), entry.line()),
                    ),
                    None => Lookup::Missing(format!("{name} not in file")),
                },
            },
            Layer::Default => match field.spec.default.as_deref() {
                Some(d) => Lookup::Found(Found::Text(d.to_string()), "#[secret(default = ...)]".into()),
                None => Lookup::Skipped("none declared".into()),
            },
        }
    }

    /// Whether `value` from env or `.env` counts as absent: an empty value of a secret-typed field (`KEY=` left
    /// in a template is not a key), unless the loader keeps empty values. A `plain` field's empty text is a value.
    fn counts_as_empty(&self, field: &ResolvedField, value: &str) -> bool {
        self.empty_is_absent && !field.spec.plain && value.is_empty()
    }

    pub(super) fn backend_version(&self, field: &ResolvedField) -> Option<String> {
        let request = FetchRequest {
            path: field.path.clone()?,
            version: field.spec.version.clone(),
        };
        self.group(field)?.get(&request)?.as_ref().ok()?.version.clone()
    }

    /// What the backend holds for `field` at `version` (the declared pin, or the previous of a rotating field).
    pub(super) fn backend_lookup(&self, field: &ResolvedField, version: VersionPin) -> Lookup {
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
        let fetched = self.group(field).and_then(|g| g.get(&request));
        // A backend may name the place itself (Key Vault: the mapped name, the version, an expiry).
        let base = fetched
            .and_then(|r| r.as_ref().ok()?.location.clone())
            .unwrap_or_else(|| format!("secret {path}"));
        let location = match field.key.as_deref() {
            Some(k) => format!("{base} key {k}"),
            None => base,
        };
        match fetched {
            None => Lookup::Failed(FailureKind::Other, "not fetched".into()),
            Some(Err(e)) if e.kind == FailureKind::NotFound => Lookup::Missing(e.detail.clone()),
            Some(Err(e)) => Lookup::Failed(e.kind, e.detail.clone()),
            Some(Ok(payload)) => match (&payload.value, field.key.as_deref()) {
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
}

/// Reads one secret file (see [`super::files::read`]), from what the load gathered. Text when it is UTF-8,
/// else bytes; the location is the path. A file that cannot be read (not a regular file, over the size cap,
/// refused by the OS, past the deadline) is an error naming the file and why, never a byte of it.
fn read_file(reads: &Reads, path: &Path, missing: &str) -> Lookup {
    match reads.file(path) {
        Ok(Some(bytes)) => {
            let location = path.display().to_string();
            match std::str::from_utf8(&bytes) {
                Ok(text) => Lookup::Found(Found::Text(text.to_string()), location),
                Err(_) => Lookup::Found(Found::Binary(bytes.to_vec()), location),
            }
        }
        Ok(None) => Lookup::Missing(missing.to_string()),
        Err(e @ crate::capped::FileError::TimedOut(_)) => Lookup::Failed(
            FailureKind::Unavailable,
            format!("cannot read file {}: {e}", path.display()),
        ),
        Err(e) => Lookup::Failed(
            FailureKind::Invalid,
            format!("cannot read file {}: {e}", path.display()),
        ),
    }
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
            Some(value) => match json_text(value) {
                Some(text) => Lookup::Found(Found::Text(text), location),
                None => Lookup::Missing(format!("key `{key}` is null")),
            },
        },
    }
}

/// A JSON value as a field reads it: a string's text; numbers, booleans and nested objects keep their JSON
/// text (the field's type parses it); `null` is no value.
pub(crate) fn json_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Property `key` of the JSON object secret at `path`, as a load reads it (for references): `None` when missing,
/// or why the text cannot hold keys (never the value).
pub(crate) fn key_of(text: &str, path: &str, key: &str) -> Result<Option<String>, String> {
    match extract_key(text, path, key, String::new()) {
        Lookup::Found(Found::Text(ref s), _) => Ok(Some(s.clone())),
        Lookup::Missing(_) => Ok(None),
        Lookup::Failed(_, why) | Lookup::Skipped(why) => Err(why),
        Lookup::Found(Found::Binary(_), _) | Lookup::Unreadable => Err(format!("`{path}` cannot hold keys")),
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
