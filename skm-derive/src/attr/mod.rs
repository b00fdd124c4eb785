//! Parsing of `#[secret(...)]` and `#[secrets(...)]`, one attribute at a time.
//!
//! Every problem is recorded in the [`Ctxt`] and parsing goes on with the next option, so that a user
//! sees all bad options at once. Checks that need more than one option live in `valid.rs`.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Ident, LitStr};

use crate::ctxt::Ctxt;

mod read;

use read::*;

/// The options of `#[secret(...)]`, in the order the "did you mean" list shows them.
const FIELD_OPTIONS: &[&str] = &[
    "path",
    "key",
    "env",
    "default",
    "plain",
    "flatten",
    "version",
    "version_stage",
    "version_id",
    "min_len",
    "not",
    "pattern",
    "dynamic",
    "backend",
];

/// The options of `#[secrets(...)]`.
const STRUCT_OPTIONS: &[&str] = &["prefix"];

/// One parsed option: its value and where it was written.
pub struct Opt<T> {
    /// The option's name as written, e.g. `path`; errors about the option as a whole point here.
    pub name: Ident,
    pub value: T,
    /// The value's literal; errors about the value point here.
    pub span: Span,
}

/// Everything `#[secret(...)]` attributes declare on one field.
#[derive(Default)]
pub struct FieldAttrs<'a> {
    /// The first `#[secret]` attribute, for errors about the declaration as a whole.
    pub attr: Option<&'a Attribute>,
    /// An option failed to parse: checks that an option is missing would only repeat that error.
    pub invalid: bool,
    pub path: Option<Opt<String>>,
    pub key: Option<Opt<String>>,
    pub env: Option<Opt<String>>,
    pub default: Option<Opt<String>>,
    pub plain: Option<Opt<()>>,
    pub flatten: Option<Opt<()>>,
    pub version_stage: Option<Opt<String>>,
    pub version_id: Option<Opt<String>>,
    pub version: Option<Opt<u64>>,
    pub min_len: Option<Opt<u64>>,
    pub not: Option<Opt<Vec<String>>>,
    pub pattern: Option<Opt<String>>,
    pub dynamic: Option<Opt<String>>,
    /// The canonical registry name the field is routed to (aliases already mapped).
    pub backend: Option<Opt<String>>,
}

impl FieldAttrs<'_> {
    /// The names of every option set other than `flatten`.
    pub fn non_flatten_options(&self) -> Vec<&Ident> {
        let strings = [
            &self.path,
            &self.key,
            &self.env,
            &self.default,
            &self.version_stage,
            &self.version_id,
        ];
        let mut names: Vec<&Ident> = strings.iter().filter_map(|o| o.as_ref()).map(|o| &o.name).collect();
        names.extend(self.plain.as_ref().map(|o| &o.name));
        names.extend(self.version.as_ref().map(|o| &o.name));
        names.extend(self.validator_options());
        names.extend(self.dynamic.as_ref().map(|o| &o.name));
        names.extend(self.backend.as_ref().map(|o| &o.name));
        names
    }

    /// The names of every option set other than `dynamic`, for the checks of a leased field.
    pub fn non_dynamic_options(&self) -> Vec<&Ident> {
        let mut names: Vec<&Ident> = self
            .non_flatten_options()
            .into_iter()
            .filter(|n| *n != "dynamic")
            .collect();
        names.extend(self.flatten.as_ref().map(|o| &o.name));
        names
    }

    /// The names of the validators set (`min_len`, `not`, `pattern`).
    pub fn validator_options(&self) -> Vec<&Ident> {
        let mut names: Vec<&Ident> = self.min_len.iter().map(|o| &o.name).collect();
        names.extend(self.not.as_ref().map(|o| &o.name));
        names.extend(self.pattern.as_ref().map(|o| &o.name));
        names
    }
}

/// Everything `#[secrets(...)]` declares on the struct.
#[derive(Default)]
pub struct StructAttrs {
    pub prefix: Option<Opt<String>>,
}

/// Parses the struct's attributes; `#[secret]` there is a mistake for `#[secrets]`.
pub fn get_struct_attrs(cx: &Ctxt, attrs: &[Attribute]) -> StructAttrs {
    let mut out = StructAttrs::default();
    for attr in attrs {
        if attr.path().is_ident("secret") {
            cx.error_spanned_by(
                attr,
                "`#[secret(...)]` goes on fields; on the struct write `#[secrets(prefix = \"myapp/{profile}\")]`",
            );
            continue;
        }
        if !attr.path().is_ident("secrets") || !is_list(cx, attr, "#[secrets(prefix = \"myapp/{profile}\")]") {
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let Some(name) = option_name(cx, &meta)? else {
                return Ok(());
            };
            match name.to_string().as_str() {
                // #[secrets(prefix = "myapp/{profile}")]
                "prefix" => {
                    if let Some(lit) = string_value(cx, &meta, &name, "prefix = \"myapp/{profile}\"")? {
                        set(cx, "secrets", &mut out.prefix, &name, lit.value(), lit.span());
                    }
                }
                _ => {
                    unknown_option(cx, "secrets", &name, STRUCT_OPTIONS);
                    skip_value(meta.input)?;
                }
            }
            Ok(())
        });
        if let Err(err) = result {
            cx.syn_error(err);
        }
    }
    out
}

/// Parses one field's attributes; several `#[secret]` attributes merge as if written as one.
pub fn get_field_attrs<'a>(cx: &Ctxt, attrs: &'a [Attribute]) -> FieldAttrs<'a> {
    let mut out = FieldAttrs::default();
    let errors_before = cx.error_count();
    for attr in attrs {
        if attr.path().is_ident("secrets") {
            cx.error_spanned_by(
                attr,
                "`#[secrets(...)]` goes on the struct; on a field write `#[secret(path = \"...\")]`",
            );
            continue;
        }
        if !attr.path().is_ident("secret") {
            continue;
        }
        out.attr.get_or_insert(attr);
        if !is_list(
            cx,
            attr,
            "#[secret(path = \"auth/jwt\")]` or `#[secret(env = \"JWT_SECRET\")]",
        ) {
            continue;
        }
        let result = attr.parse_nested_meta(|meta| parse_field_option(cx, &meta, &mut out));
        if let Err(err) = result {
            cx.syn_error(err);
        }
    }
    out.invalid = cx.error_count() > errors_before;
    out
}

fn parse_field_option(cx: &Ctxt, meta: &ParseNestedMeta, out: &mut FieldAttrs) -> syn::Result<()> {
    let Some(name) = option_name(cx, meta)? else {
        return Ok(());
    };
    match name.to_string().as_str() {
        // #[secret(path = "auth/jwt")]
        "path" => {
            if let Some(lit) = string_value(cx, meta, &name, "path = \"auth/jwt\"")? {
                set(cx, "secret", &mut out.path, &name, lit.value(), lit.span());
            }
        }
        // #[secret(path = "auth/jwt", key = "secret")]
        "key" => {
            if let Some(lit) = string_value(cx, meta, &name, "key = \"secret\"")? {
                set(cx, "secret", &mut out.key, &name, lit.value(), lit.span());
            }
        }
        // #[secret(env = "JWT_SECRET_KEY")]
        "env" => {
            if let Some(lit) = string_value(cx, meta, &name, "env = \"JWT_SECRET_KEY\"")? {
                set(cx, "secret", &mut out.env, &name, lit.value(), lit.span());
            }
        }
        // #[secret(env = "PORT", default = "8080", plain)]
        "default" => {
            if let Some(lit) = string_value(cx, meta, &name, "default = \"8080\"")? {
                set(cx, "secret", &mut out.default, &name, lit.value(), lit.span());
            }
        }
        // #[secret(env = "PORT", plain)]
        "plain" => {
            flag(cx, meta, &name)?;
            set(cx, "secret", &mut out.plain, &name, (), name.span());
        }
        // #[secret(flatten)]
        "flatten" => {
            flag(cx, meta, &name)?;
            set(cx, "secret", &mut out.flatten, &name, (), name.span());
        }
        // #[secret(path = "auth/jwt", version_stage = "AWSPREVIOUS")]
        "version_stage" => {
            if let Some(lit) = string_value(cx, meta, &name, "version_stage = \"AWSPREVIOUS\"")? {
                if lit.value().is_empty() {
                    cx.error_at(
                        lit.span(),
                        "`version_stage` is empty: write a label such as `version_stage = \"AWSPREVIOUS\"`",
                    );
                }
                set(cx, "secret", &mut out.version_stage, &name, lit.value(), lit.span());
            }
        }
        // #[secret(path = "auth/jwt", version_id = "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE")]
        "version_id" => {
            if let Some(lit) = string_value(cx, meta, &name, "version_id = \"EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE\"")? {
                if lit.value().is_empty() {
                    cx.error_at(lit.span(), "`version_id` is empty: write the id of a version, e.g. `version_id = \"EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE\"`");
                }
                set(cx, "secret", &mut out.version_id, &name, lit.value(), lit.span());
            }
        }
        // #[secret(path = "auth/jwt", version = 3)]
        "version" => {
            if let Some((value, span)) = version_value(cx, meta, &name)? {
                set(cx, "secret", &mut out.version, &name, value, span);
            }
        }
        // #[secret(env = "API_KEY", min_len = 32)]
        "min_len" => {
            let positive = "`min_len` must be positive: write the least number of characters, e.g. `min_len = 32`";
            let not_a_number = "`min_len` takes a positive integer literal: write `min_len = 32`";
            if let Some((value, span)) = positive_int(cx, meta, &name, "min_len = 32", positive, not_a_number)? {
                set(cx, "secret", &mut out.min_len, &name, value, span);
            }
        }
        // #[secret(env = "API_KEY", not = ["changeme", "dummy"])]
        "not" => {
            if let Some((values, span)) = not_value(cx, meta, &name)? {
                set(cx, "secret", &mut out.not, &name, values, span);
            }
        }
        // #[secret(env = "API_KEY", pattern = "^sk-")]
        "pattern" => {
            if let Some(lit) = string_value(cx, meta, &name, "pattern = \"^sk-\"")? {
                if check_pattern(cx, &lit) {
                    set(cx, "secret", &mut out.pattern, &name, lit.value(), lit.span());
                }
            }
        }
        // #[secret(dynamic = "database/creds/app")]
        "dynamic" => {
            if let Some(lit) = string_value(cx, meta, &name, "dynamic = \"database/creds/app\"")? {
                set(cx, "secret", &mut out.dynamic, &name, lit.value(), lit.span());
            }
        }
        // #[secret(path = "db/password", backend = "vault")]
        "backend" => {
            if let Some(lit) = string_value(cx, meta, &name, "backend = \"vault\"")? {
                if let Some(canonical) = backend_name(cx, &lit) {
                    set(cx, "secret", &mut out.backend, &name, canonical.to_string(), lit.span());
                }
            }
        }
        _ => {
            unknown_option(cx, "secret", &name, FIELD_OPTIONS);
            skip_value(meta.input)?;
        }
    }
    Ok(())
}

/// The canonical backend name for `backend = "..."` (case-insensitive, aliases accepted), or an error at the
/// literal listing the accepted names.
fn backend_name(cx: &Ctxt, lit: &LitStr) -> Option<&'static str> {
    let value = lit.value();
    let trimmed = value.trim();
    // The one table of names and aliases, shared with the runtime's registry.
    if let Some(canonical) = skm_names::canonical(trimmed) {
        return Some(canonical);
    }
    let canonical: Vec<&str> = skm_names::canonical_names().collect();
    let message = if trimmed.is_empty() {
        format!(
            "`backend` is empty: name a backend, e.g. `backend = \"vault\"` (one of {})",
            canonical.join(", ")
        )
    } else {
        format!(
            "unknown backend `{}`: use one of {} (or an alias such as `openbao`), e.g. `backend = \"vault\"`",
            trimmed.escape_debug(),
            canonical.join(", ")
        )
    };
    cx.error_at(lit.span(), message);
    None
}
