//! Reading one option's value: strings, versions, counts, lists, patterns, flags; typos and missing commas.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprArray, ExprLit, Ident, Lit, LitInt, LitStr, Meta, Token};

use super::Opt;
use crate::ctxt::Ctxt;

/// Whether `attr` is a list `#[name(...)]`; the bare `#[name]` and `#[name = ...]` forms get an error.
pub(super) fn is_list(cx: &Ctxt, attr: &Attribute, example: &str) -> bool {
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
pub(super) fn option_name(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Ident>> {
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
pub(super) fn set<T>(cx: &Ctxt, attr: &str, slot: &mut Option<Opt<T>>, name: &Ident, value: T, span: Span) {
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
pub(super) fn string_value(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    name: &Ident,
    example: &str,
) -> syn::Result<Option<LitStr>> {
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
pub(super) fn version_value(cx: &Ctxt, meta: &ParseNestedMeta, name: &Ident) -> syn::Result<Option<(u64, Span)>> {
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
pub(super) fn positive_int(
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
pub(super) fn not_value(cx: &Ctxt, meta: &ParseNestedMeta, name: &Ident) -> syn::Result<Option<(Vec<String>, Span)>> {
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
pub(super) fn check_pattern(cx: &Ctxt, lit: &LitStr) -> bool {
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
pub(super) fn assigned_tokens(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    name: &Ident,
    example: &str,
) -> syn::Result<Option<TokenStream>> {
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
pub(super) fn missing_comma<L: Parse>(cx: &Ctxt, tokens: TokenStream) -> TokenStream {
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
pub(super) fn flag(cx: &Ctxt, meta: &ParseNestedMeta, name: &Ident) -> syn::Result<()> {
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
pub(super) fn skip_value(input: ParseStream) -> syn::Result<()> {
    take_until_comma(input).map(drop)
}

pub(super) fn take_until_comma(input: ParseStream) -> syn::Result<TokenStream> {
    let mut tokens = TokenStream::new();
    // A group such as `(...)` is one token tree, so a comma inside it does not stop us.
    while !input.is_empty() && !input.peek(Token![,]) {
        tokens.extend([input.parse::<TokenTree>()?]);
    }
    Ok(tokens)
}

/// Records "unknown option" with the closest known option, or a pointer to where it belongs.
pub(super) fn unknown_option(cx: &Ctxt, attr: &str, name: &Ident, known: &[&str]) {
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
pub(super) fn did_you_mean<'k>(written: &str, known: &[&'k str]) -> Option<&'k str> {
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
