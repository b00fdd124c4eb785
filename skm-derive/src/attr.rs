//! Parsing of `#[secret(...)]` and `#[secrets(...)]`, one attribute at a time.
//!
//! Every problem is recorded in the [`Ctxt`] and parsing goes on with the next option, so that a user
//! sees all bad options at once. Checks that need more than one option live in `valid.rs`.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprArray, ExprLit, Ident, Lit, LitInt, LitStr, Meta, Token};

use crate::ctxt::Ctxt;

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

/// The backend names and aliases `#[secret(backend = "...")]` accepts, as `(name or alias, canonical name)`.
///
/// The derive cannot see skm-runtime's registry, so this copy is kept in step with
/// `skm_runtime::backend::registry::all()` by a unit test there (`derive_backend_names_match_the_registry`).
pub const BACKEND_NAMES: &[(&str, &str)] = &[
    ("aws", "aws"),
    ("aws-secrets-manager", "aws"),
    ("secretsmanager", "aws"),
    ("vault", "vault"),
    ("openbao", "vault"),
    ("bao", "vault"),
    ("azure", "azure"),
    ("azure-keyvault", "azure"),
    ("keyvault", "azure"),
    ("akv", "azure"),
    ("gcp", "gcp"),
    ("google", "gcp"),
    ("gcp-secret-manager", "gcp"),
    ("local", "local"),
    ("local-store", "local"),
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
    if let Some((_, canonical)) = BACKEND_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(trimmed)) {
        return Some(canonical);
    }
    let mut canonical: Vec<&str> = BACKEND_NAMES.iter().map(|(_, c)| *c).collect();
    canonical.dedup();
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

/// Whether `attr` is a list `#[name(...)]`; the bare `#[name]` and `#[name = ...]` forms get an error.
fn is_list(cx: &Ctxt, attr: &Attribute, example: &str) -> bool {
    match &attr.meta {
        Meta::List(_) => true,
        _ => {
            let name = if attr.path().is_ident("secret") {
                "secret"
            } else {
                "secrets"
            };
            cx.error_spanned_by(
                attr,
                format!("`#[{name}]` needs options in parentheses: write `{example}`"),
            );
            false
        }
    }
}

/// The option's name, or `None` (after recording an error and skipping it) for a path like `a::b`.
fn option_name(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Ident>> {
    match meta.path.get_ident() {
        Some(ident) => Ok(Some(ident.clone())),
        None => {
            cx.error_spanned_by(
                &meta.path,
                "expected an option name such as `path`, not a path with `::`",
            );
            skip_value(meta.input)?;
            Ok(None)
        }
    }
}

/// Stores an option, or reports it as a duplicate of an earlier one (which stays in effect).
fn set<T>(cx: &Ctxt, attr: &str, slot: &mut Option<Opt<T>>, name: &Ident, value: T, span: Span) {
    if slot.is_some() {
        cx.error_at(
            name.span(),
            format!("duplicate `{attr}` option `{name}`: remove one of them"),
        );
        return;
    }
    *slot = Some(Opt {
        name: name.clone(),
        value,
        span,
    });
}

/// Parses `= "literal"`. A missing or non-string value is recorded, its tokens skipped, and `None` returned.
fn string_value(cx: &Ctxt, meta: &ParseNestedMeta, name: &Ident, example: &str) -> syn::Result<Option<LitStr>> {
    let Some(tokens) = assigned_tokens(cx, meta, name, example)? else {
        return Ok(None);
    };
    let tokens = missing_comma::<LitStr>(cx, tokens);
    match syn::parse2::<LitStr>(tokens.clone()) {
        Ok(lit) => Ok(Some(lit)),
        Err(_) => {
            cx.error_spanned_by(tokens, format!("`{name}` takes a string literal: write `{example}`"));
            Ok(None)
        }
    }
}

/// Parses `= 3` for `version`.
fn version_value(cx: &Ctxt, meta: &ParseNestedMeta, name: &Ident) -> syn::Result<Option<(u64, Span)>> {
    positive_int(
        cx,
        meta,
        name,
        "version = 3",
        "`version` must be positive: versions are numbered from 1, e.g. `version = 3`",
        "`version` takes a positive integer; for an AWS staging label write `version_stage = \"AWSPREVIOUS\"`, for a version id `version_id = \"...\"`",
    )
}

/// Parses `= N` with `N > 0`. `positive` is the message for zero or a negative number, `non_numeric_string`
/// the one for a string that is not a number (a quoted number gets "not a string" with the fix).
fn positive_int(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    name: &Ident,
    example: &str,
    positive: &str,
    non_numeric_string: &str,
) -> syn::Result<Option<(u64, Span)>> {
    let Some(tokens) = assigned_tokens(cx, meta, name, example)? else {
        return Ok(None);
    };
    let tokens = missing_comma::<LitInt>(cx, tokens);
    if let Ok(lit) = syn::parse2::<LitInt>(tokens.clone()) {
        return match lit.base10_parse::<u64>() {
            Ok(0) => {
                cx.error_at(lit.span(), positive);
                Ok(None)
            }
            Ok(n) => Ok(Some((n, lit.span()))),
            Err(_) if lit.base10_digits().starts_with('-') => {
                cx.error_spanned_by(tokens, positive);
                Ok(None)
            }
            Err(_) => {
                cx.error_at(
                    lit.span(),
                    format!("`{name}` must be an integer that fits in a u64: write `{example}`"),
                );
                Ok(None)
            }
        };
    }
    // A quoted number is the likeliest slip; say exactly what to remove.
    let msg = match syn::parse2::<LitStr>(tokens.clone()) {
        Ok(s) if s.value().trim().parse::<u64>().is_ok() => {
            format!(
                "`{name}` takes an integer, not a string: write `{name} = {}`",
                s.value().trim()
            )
        }
        Ok(_) => non_numeric_string.to_string(),
        Err(_) => format!("`{name}` takes a positive integer literal: write `{example}`"),
    };
    cx.error_spanned_by(tokens, msg);
    Ok(None)
}

/// Parses `= ["changeme", "dummy"]` for `not`: a non-empty array of string literals.
fn not_value(cx: &Ctxt, meta: &ParseNestedMeta, name: &Ident) -> syn::Result<Option<(Vec<String>, Span)>> {
    let example = "not = [\"changeme\", \"dummy\"]";
    let Some(tokens) = assigned_tokens(cx, meta, name, example)? else {
        return Ok(None);
    };
    let tokens = missing_comma::<ExprArray>(cx, tokens);
    let array = match syn::parse2::<ExprArray>(tokens.clone()) {
        Ok(array) => array,
        Err(_) => {
            // One string is the likeliest slip; show it in brackets.
            let msg = match syn::parse2::<LitStr>(tokens.clone()) {
                Ok(s) => format!("`not` takes an array of strings: write `not = [{:?}]`", s.value()),
                Err(_) => format!("`not` takes an array of string literals: write `{example}`"),
            };
            cx.error_spanned_by(tokens, msg);
            return Ok(None);
        }
    };
    if array.elems.is_empty() {
        cx.error_spanned_by(
            &array,
            format!("`not` is empty: list the placeholder values to reject, e.g. `{example}`, or remove `not`"),
        );
        return Ok(None);
    }
    let mut values = Vec::new();
    for elem in &array.elems {
        match elem {
            Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => values.push(s.value()),
            Expr::Lit(ExprLit { lit, .. }) if !matches!(lit, Lit::Str(_)) => {
                let written = lit.to_token_stream().to_string();
                cx.error_spanned_by(
                    elem,
                    format!("`not` lists string literals: values are compared as text, so write `\"{written}\"`"),
                );
            }
            _ => cx.error_spanned_by(elem, format!("`not` lists string literals: write `{example}`")),
        }
    }
    if values.len() < array.elems.len() {
        return Ok(None);
    }
    Ok(Some((values, array.span())))
}

/// Parses a `pattern` the way the runtime's `regex` crate will, so that a bad regex is a compile error
/// rather than a failure at startup. Records the parser's message and position; `true` when it is valid.
fn check_pattern(cx: &Ctxt, lit: &LitStr) -> bool {
    let pattern = lit.value();
    if pattern.is_empty() {
        cx.error_at(
            lit.span(),
            "`pattern` is empty and would accept every value: write a regex such as `pattern = \"^sk-\"`, or remove \
             `pattern`",
        );
        return false;
    }
    let (kind, span) = match regex_syntax::Parser::new().parse(&pattern) {
        Ok(_) => return true,
        Err(regex_syntax::Error::Parse(e)) => (e.kind().to_string(), Some(*e.span())),
        Err(regex_syntax::Error::Translate(e)) => (e.kind().to_string(), Some(*e.span())),
        Err(e) => (e.to_string(), None),
    };
    let at = match span {
        Some(span) if span.start.line > 1 => {
            format!(" at line {} column {}", span.start.line, span.start.column)
        }
        Some(span) => format!(" at column {}", span.start.column),
        None => String::new(),
    };
    let excerpt = span
        .map(|s| &pattern[s.start.offset..s.end.offset.max(s.start.offset)])
        .filter(|s| !s.is_empty())
        .map(|s| format!(" (`{s}`)"))
        .unwrap_or_default();
    cx.error_at(
        lit.span(),
        format!(
            "`pattern` is not a valid regex: {kind}{at}{excerpt} of `{pattern}`; write a regex in the syntax of the \
             `regex` crate, e.g. `pattern = \"^sk-\"`"
        ),
    );
    false
}

/// Parses `= <tokens up to the next comma>`; records an error and returns `None` when there is no `=`
/// or nothing after it.
fn assigned_tokens(cx: &Ctxt, meta: &ParseNestedMeta, name: &Ident, example: &str) -> syn::Result<Option<TokenStream>> {
    if !meta.input.peek(Token![=]) {
        cx.error_at(name.span(), format!("`{name}` needs a value: write `{example}`"));
        skip_value(meta.input)?;
        return Ok(None);
    }
    let eq: Token![=] = meta.input.parse()?;
    let tokens = take_until_comma(meta.input)?;
    if tokens.is_empty() {
        cx.error_at(eq.span, format!("`{name}` needs a value after `=`: write `{example}`"));
        return Ok(None);
    }
    Ok(Some(tokens))
}

/// When a literal is followed by more tokens (`path = "a" key = "b"`), the likely slip is a missing comma:
/// reports it at the first extra token and keeps only the literal, so it still counts as the value.
fn missing_comma<L: Parse>(cx: &Ctxt, tokens: TokenStream) -> TokenStream {
    let mut trees = tokens.clone().into_iter();
    let Some(first) = trees.next() else {
        return tokens;
    };
    let Some(second) = trees.next() else {
        return tokens;
    };
    if syn::parse2::<L>(first.clone().into()).is_err() {
        return tokens;
    }
    cx.error_at(
        second.span(),
        "expected `,` here: separate options with commas, e.g. `path = \"auth/jwt\", key = \"secret\"`",
    );
    first.into()
}

/// Checks that a flag such as `plain` has no value; a value is recorded as an error and skipped.
fn flag(cx: &Ctxt, meta: &ParseNestedMeta, name: &Ident) -> syn::Result<()> {
    if meta.input.is_empty() || meta.input.peek(Token![,]) {
        return Ok(());
    }
    let rest = take_until_comma(meta.input)?;
    cx.error_spanned_by(
        rest,
        format!("`{name}` is a flag and takes no value: write `#[secret({name})]`"),
    );
    Ok(())
}

/// Skips whatever follows an option's name (`= value`, `(...)`), so parsing can go on after an error.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    take_until_comma(input).map(drop)
}

fn take_until_comma(input: ParseStream) -> syn::Result<TokenStream> {
    let mut tokens = TokenStream::new();
    // A group such as `(...)` is one token tree, so a comma inside it does not stop us.
    while !input.is_empty() && !input.peek(Token![,]) {
        tokens.extend([input.parse::<TokenTree>()?]);
    }
    Ok(tokens)
}

/// Records "unknown option" with the closest known option, or a pointer to where it belongs.
fn unknown_option(cx: &Ctxt, attr: &str, name: &Ident, known: &[&str]) {
    let written = name.to_string();
    let list = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    let options = if known.len() == 1 {
        format!("the only option is {list}")
    } else {
        format!("the options are {list}")
    };
    let msg = match (attr, written.as_str()) {
        ("secret", "prefix") => {
            "`prefix` goes on the struct: write `#[secrets(prefix = \"myapp/{profile}\")]` above it".to_string()
        }
        ("secret", "optional") => {
            "unknown `secret` option `optional`: to make a secret optional, make the field an `Option<...>`".to_string()
        }
        _ => match did_you_mean(&written, known) {
            Some(best) => format!("unknown `{attr}` option `{written}`; did you mean `{best}`? ({options})"),
            None => format!("unknown `{attr}` option `{written}` ({options})"),
        },
    };
    cx.error_at(name.span(), msg);
}

/// The known option closest to `written`: a common synonym, or one within a small edit distance.
fn did_you_mean<'k>(written: &str, known: &[&'k str]) -> Option<&'k str> {
    let synonym = match written {
        "var" | "env_var" | "envvar" | "variable" | "environment" => Some("env"),
        "name" | "secret" | "secret_name" | "secret_id" => Some("path"),
        "field" | "property" | "json_key" => Some("key"),
        "stage" | "label" | "version_label" => Some("version_stage"),
        "version_number" => Some("version"),
        "default_value" | "fallback" => Some("default"),
        "nested" | "inline" => Some("flatten"),
        "lease" | "leased" | "dynamic_path" | "creds" | "credentials" => Some("dynamic"),
        "min_length" | "minlen" | "min_size" | "min_chars" => Some("min_len"),
        "regex" | "matches" | "format" => Some("pattern"),
        "reject" | "deny" | "not_in" | "forbid" | "forbidden" | "placeholders" => Some("not"),
        _ => None,
    };
    if let Some(s) = synonym.and_then(|s| known.iter().find(|k| **k == s)) {
        return Some(s);
    }
    let lower = written.to_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&lower, k), *k))
        // Allow about one typo per three letters, so `pth` finds `path` but `foo` finds nothing.
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}
