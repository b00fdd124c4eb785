//! Build-time checks against a snapshot of the stores, written by `skm prepare` (issue 29).
//!
//! The derive never touches the network. When a snapshot of the struct exists, each declaration is checked
//! against what the stores held when it was written: a path that does not exist, a key the secret does not
//! have (with "did you mean" from the snapshot's key names), a value that does not parse as the field's type
//! and a value that fails a validator are compile errors at the field's attribute, each naming the profile
//! and the snapshot's date.
//!
//! # Where the snapshots are
//! - `SKM_PREPARED=off` (or `0`, `false`, `no`): no check at all.
//! - `SKM_PREPARED=DIR`: the snapshots are in `DIR` (a relative `DIR` is relative to the crate being
//!   compiled, `CARGO_MANIFEST_DIR`); a `DIR` that is not a directory is an error.
//! - otherwise `$CARGO_MANIFEST_DIR/.skm/prepared/`, if it exists.
//!
//! In that directory the snapshots of struct `S` are `S.json` (no profile) and `S.<profile>.json`, one per
//! profile. Each file is tracked with `include_bytes!` in the generated code, so editing it rebuilds the
//! crate; `SKM_PREPARED` is tracked with `option_env!`, so setting or changing it rebuilds too.
//!
//! # The format (`skm_prepared: 1`)
//! ```json
//! { "skm_prepared": 1, "struct": "AppSecrets", "profile": "prod", "prepared_at": "2025-06-01T12:00:00Z",
//!   "typed": true,
//!   "fields": [ { "field": "jwt", "path": "myapp/prod/auth/jwt", "key": "secret",
//!                 "type": "SecretString", "validators": { "min_len": 32, "not": [], "pattern": null },
//!                 "version": "current", "backend": "local", "exists": true, "keys": ["issuer", "secret"],
//!                 "versions": [ { "id": "2", "stages": ["current"] } ], "parses": true, "valid": true } ] }
//! ```
//! `keys` is `null` when the value is not a JSON object, `versions` when the backend cannot list them,
//! `parses` when it was not checked (the standalone tool, which has no types, or no value to parse) and
//! `valid` when no value was checked. There is never a value, a hash of one or a length.

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::quote;
use serde_json::Value;
use syn::ext::IdentExt;

use crate::ast::{Field, Input};
use crate::ctxt::Ctxt;

/// The snapshot format this derive reads.
const FORMAT: u64 = 1;

/// The environment variable naming the snapshots' directory, or `off`.
const ENV: &str = "SKM_PREPARED";

/// Checks `input` against its snapshots, recording errors in `cx`; returns the tokens that make the build
/// track the snapshot files and `SKM_PREPARED`.
pub fn check(input: &Input, cx: &Ctxt, type_name: impl Fn(&syn::Type) -> String) -> TokenStream {
    let track_env = quote! {
        const _: ::core::option::Option<&str> = ::core::option_env!("SKM_PREPARED");
    };
    let struct_name = input.original.ident.unraw().to_string();
    let dir = match directory() {
        Ok(Some(dir)) => dir,
        Ok(None) => return track_env,
        Err(why) => {
            cx.error_spanned_by(&input.original.ident, why);
            return track_env;
        }
    };
    let mut tracked = vec![track_env];
    for file in snapshot_files(&dir, &struct_name) {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                cx.error_spanned_by(
                    &input.original.ident,
                    format!("cannot read the snapshot {}: {e}", file.display()),
                );
                continue;
            }
        };
        let display = file.display().to_string();
        tracked.push(quote!(
            const _: &[u8] = ::core::include_bytes!(#display);
        ));
        match Snapshot::parse(&text, &struct_name) {
            Ok(snapshot) => check_fields(input, cx, &snapshot, &file, &type_name),
            Err(why) => cx.error_spanned_by(
                &input.original.ident,
                format!(
                    "the snapshot {} cannot be used: {why}; write it again with `skm prepare` (or set \
                     SKM_PREPARED=off to build without the check)",
                    file.display()
                ),
            ),
        }
    }
    quote!(#(#tracked)*)
}

/// The snapshots' directory: `None` when there is none to read.
fn directory() -> Result<Option<PathBuf>, String> {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    match std::env::var(ENV) {
        Ok(v) if matches!(v.trim().to_ascii_lowercase().as_str(), "off" | "0" | "false" | "no") => Ok(None),
        Ok(v) if !v.trim().is_empty() => {
            let named = PathBuf::from(v.trim());
            let dir = match (&manifest_dir, named.is_relative()) {
                (Some(base), true) => base.join(named),
                _ => named,
            };
            if dir.is_dir() {
                Ok(Some(dir))
            } else {
                Err(format!(
                    "SKM_PREPARED names {}, which is not a directory: point it at the snapshots written by \
                     `skm prepare` (a relative path is relative to the crate), or set SKM_PREPARED=off",
                    dir.display()
                ))
            }
        }
        _ => Ok(manifest_dir
            .map(|d| d.join(".skm").join("prepared"))
            .filter(|d| d.is_dir())),
    }
}

/// `S.json` and `S.<profile>.json` in `dir`, sorted, as absolute paths.
fn snapshot_files(dir: &Path, struct_name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let exact = format!("{struct_name}.json");
    let prefix = format!("{struct_name}.");
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let Some(name) = name.to_str() else { return false };
            name == exact || (name.starts_with(&prefix) && name.ends_with(".json") && name.len() > exact.len())
        })
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| std::path::absolute(&p).unwrap_or(p))
        .collect();
    files.sort();
    files
}

/// A parsed snapshot: what the checks need.
struct Snapshot {
    profile: Option<String>,
    prepared_at: String,
    fields: Vec<Value>,
}

impl Snapshot {
    fn parse(text: &str, struct_name: &str) -> Result<Snapshot, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("it is not valid JSON ({e})"))?;
        match value.get("skm_prepared").and_then(Value::as_u64) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(format!(
                    "it has format {other}, and this skm reads format {FORMAT} (it was written by another skm)"
                ))
            }
            None => return Err("it has no `skm_prepared` format number".into()),
        }
        let name = value.get("struct").and_then(Value::as_str).unwrap_or_default();
        if name != struct_name {
            return Err(format!("it is the snapshot of struct `{name}`, not `{struct_name}`"));
        }
        let fields = value
            .get("fields")
            .and_then(Value::as_array)
            .cloned()
            .ok_or("it has no `fields` list")?;
        Ok(Snapshot {
            profile: value.get("profile").and_then(Value::as_str).map(str::to_string),
            prepared_at: value
                .get("prepared_at")
                .and_then(Value::as_str)
                .unwrap_or("an unknown date")
                .to_string(),
            fields,
        })
    }

    /// `profile `prod` (snapshot of 2025-06-01T12:00:00Z)`.
    fn context(&self) -> String {
        let profile = match &self.profile {
            Some(p) => format!("profile `{p}`"),
            None => "no profile".to_string(),
        };
        format!("{profile} (snapshot of {})", self.prepared_at)
    }
}

fn check_fields(input: &Input, cx: &Ctxt, snapshot: &Snapshot, file: &Path, type_name: &impl Fn(&syn::Type) -> String) {
    let context = snapshot.context();
    let again = "then run `skm prepare` again (build it with SKM_PREPARED=off, which skips this check)";
    for field in &input.fields {
        let attrs = &field.attrs;
        if attrs.invalid || attrs.flatten.is_some() || attrs.dynamic.is_some() {
            continue;
        }
        let Some(path) = &attrs.path else { continue };
        let name = field.ident.unraw().to_string();
        // The path as the loader resolves it for this profile: the struct's prefix, `{profile}` replaced.
        let resolved = match (&input.attrs.prefix, &snapshot.profile) {
            (Some(prefix), profile) if prefix.value.contains("{profile}") => match profile {
                Some(p) => format!("{}/{}", prefix.value.replace("{profile}", p), path.value),
                // A snapshot without a profile of a struct that needs one: no load could use it.
                None => continue,
            },
            (Some(prefix), _) => format!("{}/{}", prefix.value, path.value),
            (None, _) => path.value.clone(),
        };
        let entry = snapshot.fields.iter().find(|f| {
            f.get("field").and_then(Value::as_str) == Some(name.as_str())
                && f.get("path").and_then(Value::as_str) == Some(resolved.as_str())
        });
        let Some(entry) = entry else {
            cx.error_at(
                path.span,
                format!(
                    "field `{name}` at `{resolved}` is not in the snapshot {} for {context}: the declaration \
                     changed since it was written: {again}",
                    file.file_name().unwrap_or_default().to_string_lossy()
                ),
            );
            continue;
        };
        let at = if resolved == path.value {
            format!("`{resolved}`")
        } else {
            format!("`{}` (`{resolved}`)", path.value)
        };
        let exists = entry.get("exists").and_then(Value::as_bool).unwrap_or(false);
        if !exists {
            // A field with another source (env, default) or none needed (Option) may lack the path on purpose.
            if attrs.env.is_none() && attrs.default.is_none() && !field.is_option() {
                cx.error_at(
                    path.span,
                    format!(
                        "secret {at} does not exist in {context}, and field `{name}` has no other source: create \
                         it (`skm put`) or fix the path, {again}"
                    ),
                );
            }
            continue;
        }
        if let Some(key) = &attrs.key {
            match entry.get("keys").and_then(Value::as_array) {
                None => cx.error_at(
                    key.span,
                    format!(
                        "secret {at} is not a JSON object in {context}, so it has no key `{}`: remove `key` or store \
                         a JSON object there, {again}",
                        key.value
                    ),
                ),
                Some(keys) => {
                    let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
                    if !keys.contains(&key.value.as_str()) {
                        let hint = match closest(&key.value, &keys) {
                            Some(k) => format!("did you mean `{k}`? "),
                            None => String::new(),
                        };
                        cx.error_at(
                            key.span,
                            format!(
                                "secret {at} has no key `{}` in {context}: {hint}its keys are {}; fix the key or add \
                                 it to the secret, {again}",
                                key.value,
                                list(&keys)
                            ),
                        );
                        continue;
                    }
                }
            }
        }
        let value_span = attrs.key.as_ref().map_or(path.span, |k| k.span);
        let same_type = entry.get("type").and_then(Value::as_str) == Some(type_name(field.ty).as_str());
        if same_type && entry.get("parses").and_then(Value::as_bool) == Some(false) {
            cx.error_at(
                value_span,
                format!(
                    "the value of {at}{} does not parse as `{}` in {context}: fix the value in the store or the \
                     field's type, {again}",
                    attrs
                        .key
                        .as_ref()
                        .map(|k| format!(" key `{}`", k.value))
                        .unwrap_or_default(),
                    type_name(field.ty)
                ),
            );
        }
        let same_validators = entry.get("validators") == Some(&validators(field));
        if same_validators && entry.get("valid").and_then(Value::as_bool) == Some(false) {
            let span = attrs
                .min_len
                .as_ref()
                .map(|o| o.span)
                .or(attrs.not.as_ref().map(|o| o.span))
                .or(attrs.pattern.as_ref().map(|o| o.span))
                .unwrap_or(value_span);
            cx.error_at(
                span,
                format!(
                    "the value of {at}{} fails this field's validators in {context}: store a value that passes \
                     them, {again}",
                    attrs
                        .key
                        .as_ref()
                        .map(|k| format!(" key `{}`", k.value))
                        .unwrap_or_default(),
                ),
            );
        }
    }
}

/// The field's validators as `skm prepare` writes them, to tell whether the snapshot judged these ones.
fn validators(field: &Field) -> Value {
    let attrs = &field.attrs;
    serde_json::json!({
        "min_len": attrs.min_len.as_ref().map(|o| o.value),
        "not": attrs.not.as_ref().map(|o| o.value.clone()).unwrap_or_default(),
        "pattern": attrs.pattern.as_ref().map(|o| o.value.clone()),
    })
}

/// The key among `known` closest to `written`: about one typo per three letters, or a different case.
fn closest<'k>(written: &str, known: &[&'k str]) -> Option<&'k str> {
    if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(written)) {
        return Some(k);
    }
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(written, k), *k))
        .filter(|(distance, k)| *distance <= (k.len().max(written.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// `` `a`, `b` `` (at most 10 names), or `none` for an empty object.
fn list(keys: &[&str]) -> String {
    if keys.is_empty() {
        return "none (an empty object)".into();
    }
    let mut shown: Vec<String> = keys.iter().take(10).map(|k| format!("`{k}`")).collect();
    if keys.len() > 10 {
        shown.push(format!("and {} more", keys.len() - 10));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_near_keys_only() {
        assert_eq!(closest("secrett", &["secret", "issuer"]), Some("secret"));
        assert_eq!(closest("secret", &["secret_", "issuer"]), Some("secret_"));
        assert_eq!(closest("SECRET", &["secret"]), Some("secret"));
        assert_eq!(closest("password", &["secret", "issuer"]), None);
    }
}
