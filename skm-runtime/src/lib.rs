//! The runtime of [skm](https://docs.rs/skm): the load pipeline, layering and backends.
//!
//! Use it through the `skm` crate, which re-exports everything here together with `#[derive(Secrets)]`.
//!
//! # Contents
//! - [`spec`]: the declarations the derive emits ([`Secrets`], [`StructSpec`]).
//! - [`plan`]: which backend paths a load needs, each once.
//! - [`backend`]: the [`Backend`](backend::Backend) trait, [`MemoryBackend`](backend::MemoryBackend) and
//!   one module per backend.
//! - [`Loader`]: fetch, layer (backend → env → `.env` → default) through figment, extract typed values.
//! - [`detect`]: backend auto-detection from `SKM_BACKEND`, `AWS_REGION`, `VAULT_ADDR`.
//! - [`Error`]: one error listing every failing field; never a secret value.
//! - [`Validators`]: `min_len`, `not` and `pattern` checks applied to values at load.
//! - [`Rotating`]: a field holding the current and the previous version, for rotation grace.
//! - [`rotation`]: rotating a password in its target system ([`rotation::Rotator`]), the AWS rotation
//!   protocol (feature `aws`) and a PostgreSQL rotator (feature `postgres`).
//! - [`watch`]: hot reload ([`Loader::watch`]) with stale-on-error and version-checked refreshes.
//! - [`conformance`]: the test suite every backend passes.
//! - `lease` (feature `vault`): dynamic secrets, `Leased<T>` renewed, re-issued and revoked in the background.
//! - [`gitcheck`]: a warning when `.env` or the local store sits in a git work tree without being ignored.
//!
//! # Cargo features
//! | feature | default | what it adds |
//! |---|---|---|
//! | `local` | yes | the local encrypted store |
//! | `aws` | no | AWS Secrets Manager |
//! | `vault` | no | HashiCorp Vault / OpenBao KV, and dynamic secrets (`lease`) |
//! | `postgres` | no | the PostgreSQL rotator (`tokio-postgres`) |
#![deny(missing_docs)]

pub mod backend;
pub mod conformance;
mod de;
pub mod detect;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gitcheck;
mod layer;
#[cfg(feature = "vault")]
pub mod lease;
mod load;
pub mod plan;
pub mod rotating;
pub mod rotation;
pub mod spec;
mod validate;
pub mod watch;

pub use error::{Attempt, AttemptOutcome, Error, FieldError, FieldProblem, LoadError};
pub use layer::Layer;
#[doc(hidden)]
pub use load::Values;
pub use load::{Check, Loaded, Loader, Origin, Provenance};
pub use rotating::Rotating;
pub use spec::{FieldKind, FieldSpec, ResolvedField, SecretSpec, Secrets, StructSpec, Validators, VersionPin};
pub use watch::{Stale, Watch, WatchOptions, WatchStats};

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
