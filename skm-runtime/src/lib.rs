//! The runtime of [skm](https://docs.rs/skm): the load pipeline, layering and backends.
//!
//! Use it through the `skm` crate, which re-exports what users need together with `#[derive(Secrets)]`.
//!
//! # Contents
//! - The pipeline, one stage per module; data flows one way and each stage imports only earlier ones (the
//!   order of every module, stages, backends and shared leaves, is one table in `dependency_rule.rs`, whose
//!   test fails on an import cycle or an import of a later module):
//!
//!   | # | stage | file | job |
//!   |---|---|---|---|
//!   | 1 | declarations | `spec.rs` (+ `validate.rs`) | static data the derive emits: [`StructSpec`], [`SecretSpec`], [`VersionPin`], [`Validators`] |
//!   | 2 | plan | `plan.rs` | fields with prefixes and profile resolved ([`ResolvedField`]), duplicate check, one request ([`FetchRequest`](backend::FetchRequest)) per (path, version) |
//!   | 3 | fetch | `fetch.rs` | one [`Backend::fetch`](backend::Backend::fetch) call per backend, all in one concurrent wave, under [`Loader::deadline`], one result per request, `skm::audit` events; hot-reload refreshes; the lease step for `dynamic` fields |
//!   | 4 | resolve | `resolve/` (`mod.rs` the winner, `lookup.rs` the per-layer lookups, `reads.rs` the files one load reads, `layer.rs` the layers, `files.rs` secret files; + [`dotenv`]) | one lookup per field and layer, figment merges the layers and picks the one winner; fallback rules |
//!   | 5 | report | `report.rs`, `error.rs` | provenance ([`Origin`], [`Provenance`]), check results ([`Check`]), per-field errors ([`LoadError`]) |
//!   | 6 | values | `values.rs` (+ `de.rs`) | the [`Secrets`] trait and typed extraction, with value-free errors |
//!
//!   [`Loader`] (`loader/mod.rs` the builder, `loader/run.rs` the single pipeline entry, which [`Loader::load`],
//!   [`Loader::load_report`], [`Loader::check_fields`] and every [`Loader::watch`] refresh run.
//! - Shared by every stage and backend, importing none of them: `failure.rs` (the one failure kind,
//!   [`FetchError`](backend::FetchError), [`AdminError`](backend::AdminError), re-exported by [`backend`]),
//!   `error.rs` ([`Error`]), `names.rs` (the backends' names and aliases), `capped.rs` (the bounded read of
//!   secret and `.env` files) and `validate.rs` (the `pattern` matcher).
//! - [`backend`]: the [`Backend`](backend::Backend) trait, [`MemoryBackend`](backend::MemoryBackend) and
//!   one module per backend; [`detect`] chooses one from the environment.
//! - [`dotenv`]: the `.env` reader the loader and the `skm` tool share.
//! - [`Error`]: one error type whose variants keep their causes ([`std::error::Error::source`]); never a
//!   secret value.
//! - [`Rotating`]: a field holding the current and the previous version, for rotation grace.
//! - [`rotation`]: rotating a password in its target system ([`rotation::Rotator`]), the AWS rotation
//!   protocol (feature `aws`) and a PostgreSQL rotator (feature `postgres`).
//! - [`watch`]: hot reload ([`Loader::watch`]) with stale-on-error and version-checked refreshes.
//! - `conformance` (feature `conformance`): the test suite every backend passes, with a report of what ran.
//! - [`gitcheck`]: a warning when `.env` or the local store sits in a git work tree without being ignored;
//!   the `skm` tool runs it (`skm check`, `skm doctor`), a load never does.
//! - [`lease`]: dynamic secrets, `Leased<T>` renewed, re-issued and revoked in the background by its keeper
//!   (`lease/keeper.rs`), and the [`Leases`](lease::Leases) capability a backend offers through
//!   [`Backend::leases`](backend::Backend::leases) (the Vault backend does); backends build on it, it imports
//!   no stage and names no backend.
//!
//! # Cargo features
//! | feature | default | what it adds |
//! |---|---|---|
//! | `local` | yes | the local encrypted store |
//! | `aws` | no | AWS Secrets Manager |
//! | `azure` | no | Azure Key Vault |
//! | `vault` | no | HashiCorp Vault / OpenBao KV, and dynamic secrets through [`lease`] |
//! | `postgres` | no | the PostgreSQL rotator (`tokio-postgres`) |
//! | `conformance` | no | the backend conformance suite (`conformance`), for tests of a backend |
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
mod capped;
#[cfg(feature = "conformance")]
pub mod conformance;
mod de;
#[cfg(test)]
mod dependency_rule;
pub mod detect;
pub mod dotenv;
pub mod error;
mod failure;
mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub mod gitcheck;
pub mod lease;
mod loader;
mod names;
mod notice;
pub mod plan;
mod report;
mod resolve;
pub mod rotating;
pub mod rotation;
pub mod spec;
mod validate;
mod values;
pub mod watch;

pub use capped::MAX_FILE_BYTES;
pub use error::{Attempt, AttemptOutcome, BoxError, ConfigError, Error, FieldError, FieldProblem, LoadError};
pub use loader::{Loader, RawTracker, Reference};
pub use plan::ResolvedField;
pub use report::{Check, Loaded, Origin, Provenance};
pub use resolve::layer::Layer;
pub use rotating::Rotating;
pub use spec::{FieldKind, FieldSpec, Pattern, SecretSpec, SpecRef, StructSpec, Validators, VersionPin};
#[doc(hidden)]
pub use values::Values;
pub use values::{RawField, RawValues, Secrets};
pub use watch::{RefreshFailed, RefreshReport, Stale, Watch, WatchOptions, WatchStats};

use secrecy::SecretBox;
use zeroize::Zeroize;

/// A type that keeps a secret: `SecretString` (which is `SecretBox<str>`), `SecretBox<T>`, or an `Option` of those.
///
/// `#[derive(Secrets)]` requires it of every field not marked `plain`, so that a secret never sits in a plain
/// `String` by accident.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a secret type, so this field could leak its value",
    label = "not a secret type",
    note = "use `SecretString` or `SecretBox<{Self}>`; if the value is not secret, write `#[secret(..., plain)]`"
)]
pub trait SecretType {}

impl<T: Zeroize + ?Sized> SecretType for SecretBox<T> where SecretBox<T>: Sized {}
impl<T: SecretType> SecretType for Option<T> {}
impl<T: SecretType> SecretType for Rotating<T> {}
/// Leased credentials are held by the keeper and handed out as `Arc<T>`; `T` holds its password in a secret
/// type (`SecretString`), which its own `Deserialize` decides.
impl<T> SecretType for lease::Leased<T> {}
