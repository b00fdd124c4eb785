//! Declare a service's secrets once, in a typed struct, and load them at startup from wherever they live.
//!
//! ```no_run
//! use skm::{SecretString, Secrets};
//!
//! #[derive(Secrets)]
//! struct AppSecrets {
//!     #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
//!     jwt_secret: SecretString,
//!     #[secret(path = "database/connection", key = "url", env = "DATABASE_URL")]
//!     database_url: SecretString,
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), skm::Error> {
//!     // The backend is detected from the environment (`SKM_BACKEND`, `AWS_REGION`, `VAULT_ADDR`, ...); every
//!     // field is loaded, or the error lists each failing field, the sources tried and why.
//!     let secrets = AppSecrets::load().await?;
//!     Ok(())
//! }
//! ```
//!
//! The same load with everything explicit, as in a test:
//!
//! ```
//! use skm::{ExposeSecret, Loader, Secrets, SecretBox, SecretString};
//!
//! #[derive(Secrets)]
//! struct AppSecrets {
//!     #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
//!     jwt_secret: SecretString,
//!     #[secret(path = "database/connection", key = "port", env = "DATABASE_PORT", default = "5432")]
//!     database_port: SecretBox<u16>,
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let loader = Loader::new().no_dotenv().env_vars([("JWT_SECRET_KEY", "from-env")]);
//! let loaded = loader.load_report::<AppSecrets>().await?;
//! assert_eq!(loaded.value.jwt_secret.expose_secret(), "from-env");
//! assert_eq!(*loaded.value.database_port.expose_secret(), 5432);
//! // Provenance names the source, never the value.
//! assert_eq!(loaded.provenance.get("jwt_secret").unwrap().location, "JWT_SECRET_KEY");
//! # Ok::<(), skm::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Contents
//! - [`Secrets`] (derive and trait): declarations checked at compile time. The derive also gives the struct
//!   `load()`, which is [`Loader::from_env`] followed by [`Loader::load`], and `load_with(&loader)`.
//! - [`Loader`]: the layers and their order ([`Layer`]; files, env, `.env` and defaults below the backend),
//!   strict mode, fallbacks, the deadline ([`Loader::deadline`], 30 s by default), empty values
//!   ([`Loader::empty_is_absent`]), profile; [`Loaded`] carries the provenance and [`Loaded::warnings`].
//! - Field types: [`SecretString`], [`SecretBox<T>`](SecretBox), `Option` of those, [`Rotating<T>`](Rotating),
//!   and `Leased<T>` (feature `vault`); `plain` fields take any deserializable type.
//! - [`Error`]: one report listing every failing field, its sources and reasons, never a value; `Debug` prints
//!   the same report as `Display` (so `fn main() -> Result<(), skm::Error>` shows it), `{:#?}` the structure;
//!   every variant keeps its cause ([`std::error::Error::source`]).
//! - [`Watch`]: hot reload; [`Rotating`]: rotation grace; [`rotation`]: the AWS rotation protocol and the
//!   PostgreSQL rotator.
//! - [`backend`]: the backend traits, [`MemoryBackend`](backend::MemoryBackend) for tests, and the AWS, Vault,
//!   Google Cloud, Azure and local backends behind features.
//! - [`dotenv`]: the `.env` reader skm uses; [`figment`]: the declared secrets as a figment provider.
//! - [`testing`]: [`MemoryBackend`](testing::MemoryBackend) and (feature `conformance`) the `conformance`
//!   suite a backend must pass.
//! - Secret files are read only if they are regular files of at most [`MAX_FILE_BYTES`] (1 MiB).
//!
//! The declaration types ([`StructSpec`], [`FieldSpec`], [`SecretSpec`], [`Validators`], ...) are what
//! [`Secrets::spec`] returns, for tools that read a struct's declarations; applications do not need them.
//!
//! # The attribute
//! | option | meaning |
//! |---|---|
//! | `path = "auth/jwt"` | where the secret lives in a backend |
//! | `key = "secret"` | a property inside it (JSON key for AWS, data key for Vault); needs `path` |
//! | `env = "JWT_SECRET_KEY"` | the environment / `.env` variable |
//! | `default = "..."` | a fallback value (not on `Option` fields), compiled into the binary: see below |
//! | `plain` | allow a non-secret type such as `u16` |
//! | `flatten` | a nested struct that derives `Secrets` |
//! | `version_stage = "AWSPREVIOUS"`, `version_id = "..."`, `version = 3` | pin a version |
//! | `min_len = 32` | reject a value shorter than 32 characters |
//! | `not = ["changeme", "dummy"]` | reject placeholder values (trimmed, ignoring ASCII case) |
//! | `pattern = "^sk-"` | reject a value the regex does not match; a bad regex is a compile error |
//! | `backend = "vault"` | read `path` from this backend instead of the default one (see below); needs `path` |
//!
//! A `default` is a compile-time decision: it is part of the binary and wins in every environment where no
//! higher layer has a value, so a secret field's default is a credential shipped to production. Keep
//! defaults for non-secret settings. A backend that denies access or cannot decrypt fails the load rather
//! than letting a lower layer or a default win, unless you allow it ([`Loader::allow_fallback_on`]).
//!
//! Validators check the winning source's text before type conversion; a failure names the source and the
//! check ([`FieldProblem::Validation`]), never the value, and does not fall back to a lower layer.
//!
//! `backend = "..."` routes one field to a backend by its registry name (`aws`, `vault`, `azure`, `gcp`,
//! `local`, or an alias such as `openbao`; an unknown name is a compile error). The [`Loader`] holds the
//! default backend and any number of named ones ([`Loader::with_backend`]; [`Loader::from_env`] configures
//! each backend whose signal is present); one load fetches every backend's requests at once, and each
//! field's provenance names its backend:
//! ```
//! use skm::{ExposeSecret, Loader, SecretString, Secrets};
//! use skm::backend::{MemoryBackend, SecretValue};
//!
//! #[derive(Secrets)]
//! struct Checkout {
//!     #[secret(path = "checkout/stripe", key = "api_key")]
//!     stripe_key: SecretString,
//!     #[secret(path = "checkout/db", key = "password", backend = "vault")]
//!     db_password: SecretString,
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let aws = MemoryBackend::new().named("aws");
//! aws.insert("checkout/stripe", SecretValue::map([("api_key", "sk-1")]));
//! let vault = MemoryBackend::new().named("vault");
//! vault.insert("checkout/db", SecretValue::map([("password", "pw")]));
//! let loaded = Loader::new()
//!     .backend(aws)
//!     .with_backend("vault", vault)
//!     .no_dotenv()
//!     .load_report::<Checkout>()
//!     .await?;
//! assert_eq!(loaded.value.db_password.expose_secret(), "pw");
//! assert_eq!(loaded.provenance.get("db_password").unwrap().source, "vault");
//! assert_eq!(loaded.provenance.get("stripe_key").unwrap().source, "aws");
//! # Ok::<(), skm::Error>(())
//! # }).unwrap();
//! ```
//!
//! A field of type [`Rotating<T>`](Rotating) (with a `path`) holds the backend's current version and the
//! previous one, for rotation grace:
//! ```
//! use skm::{ExposeSecret, Loader, Rotating, SecretString, Secrets};
//! use skm::backend::{MemoryBackend, SecretValue};
//!
//! #[derive(Secrets)]
//! struct Jwt {
//!     #[secret(path = "auth/jwt", key = "secret", min_len = 6)]
//!     keys: Rotating<SecretString>,
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let backend = MemoryBackend::new();
//! backend.insert("auth/jwt", SecretValue::map([("secret", "old-key")]));
//! backend.insert("auth/jwt", SecretValue::map([("secret", "new-key")]));
//! let jwt: Jwt = Loader::new().backend(backend).no_dotenv().load().await?;
//! let accepted: Vec<&str> = jwt.keys.iter().map(|k| k.expose_secret()).collect();
//! assert_eq!(accepted, ["new-key", "old-key"]);
//! # Ok::<(), skm::Error>(())
//! # }).unwrap();
//! ```
//!
//! `#[secrets(prefix = "myapp/{profile}")]` on the struct prefixes every path; `{profile}` comes from
//! `SKM_PROFILE` or [`Loader::profile`].
//!
//! # Cargo features
//! | feature | default | what it adds |
//! |---|---|---|
//! | `local` | yes | the local encrypted store (`backend::local`) |
//! | `aws` | no | AWS Secrets Manager (`aws-sdk-secretsmanager`) and the rotation protocol (`rotation::aws`) |
//! | `vault` | no | HashiCorp Vault / OpenBao KV (`vaultrs`) and dynamic secrets (`lease`, `Leased`) |
//! | `gcp` | no | Google Cloud Secret Manager (`google-cloud-secretmanager-v1`) |
//! | `azure` | no | Azure Key Vault (`azure_security_keyvault_secrets`) |
//! | `ssm` | no | AWS SSM Parameter Store (`aws-sdk-ssm`, `backend::ssm`) |
//! | `sops` | no | SOPS files encrypted to age recipients, read and written (`backend::sops`) |
//! | `keyring` | no | the OS keyring: macOS Keychain, Windows Credential Manager, Linux Secret Service (`backend::keyring`) |
//! | `postgres` | no | the PostgreSQL rotator (`rotation::postgres`) |
//! | `conformance` | no | the backend conformance suite (`testing::conformance`), for a backend of your own |
//! | `cli` | no | the `skm` tool's commands for your struct (`cli::run`) |
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod figment;

pub use skm_derive::Secrets;
pub use skm_runtime::{
    backend, dotenv, watch, Attempt, AttemptOutcome, BoxError, Check, ConfigError, Error, FieldError, FieldKind,
    FieldProblem, FieldSpec, Layer, LoadError, Loaded, Loader, Origin, Pattern, Provenance, RawField, RawTracker,
    RawValues, RefreshFailed, RefreshReport, ResolvedField, Rotating, SecretSpec, SecretType, Secrets, SpecRef, Stale,
    StructSpec, Validators, VersionPin, Watch, WatchOptions, WatchStats, MAX_FILE_BYTES,
};

/// Helpers for testing code that loads secrets, and for testing a backend of your own.
pub mod testing {
    pub use skm_runtime::backend::MemoryBackend;
    /// The backend conformance suite (feature `conformance`).
    #[cfg(feature = "conformance")]
    pub use skm_runtime::conformance;
}

pub use secrecy::{self, ExposeSecret, SecretBox, SecretString};

/// The `skm` tool's commands, to embed for your own struct (feature `cli`).
///
/// A `src/bin/secrets.rs` of one line gives your application `check`, `migrate`, `template`, `policy` and the
/// everyday secret operations for exactly the secrets it declares (the struct comes from your library, e.g.
/// `use my_app::AppSecrets;`):
/// ```no_run
/// # use skm::{SecretString, Secrets};
/// # #[derive(Secrets)]
/// # struct AppSecrets {
/// #     #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
/// #     jwt_secret: SecretString,
/// # }
/// fn main() -> std::process::ExitCode {
///     skm::cli::run::<AppSecrets>()
/// }
/// ```
#[cfg(feature = "cli")]
pub use skm_cli as cli;
/// Dynamic secrets (Vault / OpenBao leases): [`Leased`] credentials renewed, re-issued and
/// revoked in the background (feature `vault`).
#[cfg(feature = "vault")]
pub use skm_runtime::lease;
/// A `#[secret(dynamic = "database/creds/app")]` field: credentials whose lease is kept alive (feature `vault`).
#[cfg(feature = "vault")]
pub use skm_runtime::lease::{LeaseOptions, Leased};
pub use skm_runtime::rotation;
pub use zeroize::{self, Zeroize};

/// Paths used by the code `#[derive(Secrets)]` generates, and nothing else; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use core::option::Option::{self, None, Some};
    pub use skm_runtime::backend::registry::compiled;
    pub use skm_runtime::spec;
    pub use skm_runtime::spec::LeasedSpec;
    pub use skm_runtime::{
        Error, FieldKind, FieldSpec, Loader, Pattern, SecretSpec, Secrets, StructSpec, Validators, Values, VersionPin,
    };
    pub use std::borrow::Cow;

    /// A declaration's text, borrowed: what the derive emits for `path`, `key`, `env`, `default` and the type
    /// name (a plain function is cheaper to type-check than the generic `Cow::Borrowed`, 800 times over in a
    /// 200-field struct).
    pub const fn text(s: &'static str) -> Cow<'static, str> {
        Cow::Borrowed(s)
    }

    /// `Some(text(s))`.
    pub const fn some_text(s: &'static str) -> Option<Cow<'static, str>> {
        Some(Cow::Borrowed(s))
    }

    /// Fails to compile unless `T` keeps its value secret (see [`crate::SecretType`]).
    pub fn assert_secret<T: ?Sized + skm_runtime::SecretType>() {}

    /// Fails to compile unless a `plain` field's type can be deserialized.
    pub fn assert_plain<T: serde::de::DeserializeOwned>() {}
}

/// The README's Rust blocks, compiled (and run unless `no_run`) by `cargo test --doc`. They use every backend,
/// so they are tested with all the features the README needs.
#[doc = include_str!("../README.md")]
#[cfg(all(
    doctest,
    feature = "local",
    feature = "aws",
    feature = "vault",
    feature = "postgres",
    feature = "cli",
    feature = "conformance"
))]
pub struct ReadmeDoctests;

/// CONTRIBUTING.md's Rust blocks, compiled and run by `cargo test --doc`.
#[doc = include_str!("../CONTRIBUTING.md")]
#[cfg(doctest)]
pub struct ContributingDoctests;
