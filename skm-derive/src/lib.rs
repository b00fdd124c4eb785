//! The `#[derive(Secrets)]` macro of [skm](https://docs.rs/skm).
//!
//! Use it through the `skm` crate, which re-exports it next to the `Secrets` trait it implements and the
//! runtime the generated code calls; this crate alone is not useful.
//!
//! The macro checks declarations at compile time (malformed paths and variable names, a `key` without a
//! `path`, two fields reading the same secret, a non-secret type without `plain`, a bad `pattern` regex, ...)
//! and reports every problem at once, each pointing at the offending token and saying how to fix it.

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod ast;
mod attr;
mod ctxt;
mod expand;
mod fallback;
mod prepared;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `skm::Secrets` for a struct whose fields declare where each secret lives.
///
/// Also generates `async fn load()` (configured by the environment) and `async fn load_with(&Loader)`.
///
/// # Attributes
///
/// | On | Option | Meaning |
/// |----|--------|---------|
/// | struct | `#[secrets(prefix = "myapp/{profile}")]` | prepended to every `path`; `{profile}` is replaced by the active profile |
/// | field | `path = "auth/jwt"` | the secret's path in a backend |
/// | field | `key = "secret"` | a property inside the secret at `path` (a JSON key, a Vault data key) |
/// | field | `env = "JWT_SECRET_KEY"` | the environment / `.env` variable |
/// | field | `default = "8080"` | the value when no source has one (not allowed on `Option` fields) |
/// | field | `plain` | the type is deliberately not a secret type, e.g. `u16` |
/// | field | `flatten` | a nested struct that itself derives `Secrets`; takes no other options |
/// | field | `version = 3` | a numbered version (Vault KV v2, the local store) |
/// | field | `version_stage = "AWSPREVIOUS"` | an AWS staging label |
/// | field | `version_id = "..."` | an AWS version id |
/// | field | `min_len = 32` | reject a value shorter than 32 characters |
/// | field | `not = ["changeme", "dummy"]` | reject placeholder values |
/// | field | `pattern = "^sk-"` | reject a value the regex does not match; checked for syntax at compile time |
///
/// Every field needs `#[secret(...)]` with `path`, `env` (or both) or `flatten`. Secret fields must have a
/// secret type (`SecretString`, `SecretBox<T>`, or an `Option` of one), so that values are zeroized and
/// never printed; an `Option` field is `None` when no source has it. A `Rotating<T>` field (with `path`)
/// also reads the backend's previous version.
///
/// # Example
/// ```
/// use skm::{SecretString, Secrets};
///
/// #[derive(Secrets)]
/// #[secrets(prefix = "myapp/{profile}")]
/// struct AppSecrets {
///     #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
///     jwt_secret: SecretString,
///     #[secret(env = "PORT", default = "8080", plain)]
///     port: u16,
/// }
///
/// let spec = <AppSecrets as Secrets>::spec();
/// assert_eq!(spec.prefix, Some("myapp/{profile}"));
/// assert_eq!(spec.fields.len(), 2);
/// ```
#[proc_macro_derive(Secrets, attributes(secret, secrets))]
pub fn derive_secrets(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
