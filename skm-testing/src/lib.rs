//! Test support for skm: the real peers the backends are tested against, and a fault-injecting proxy.
//!
//! - [`Moto`] runs a moto server (AWS Secrets Manager) on a free loopback port.
//! - [`Bao`] runs an OpenBao dev server (the HashiCorp Vault HTTP API) on a free loopback port.
//! - [`Drongo`] runs a drongo server (Google Cloud Secret Manager's REST API) on a free loopback port.
//! - [`KeyVault`] serves the Azure Key Vault secrets API and its token endpoint over HTTPS on a free
//!   loopback port (no emulator exists; Microsoft's own clients are the judge of it).
//! - [`Postgres`] runs a throw-away PostgreSQL cluster (password logins over TCP) on a free loopback port.
//! - [`SecretService`] runs a private D-Bus session with GNOME Keyring's Secret Service on it, for the
//!   `keyring` backend (`secret-tool` is its third-party client).
//! - [`Sops`] runs the real `sops` tool to write the SOPS files the `sops` backend reads; [`AgeKey`] makes
//!   age key pairs for it.
//! - [`Proxy`] sits between a client and a peer: it records and counts requests, and can answer, delay,
//!   reset or stall them, by rule or at random, to test retries, timeouts and request counts; with
//!   [`Quotas`] it enforces a provider's per-operation rate limits and answers as the provider does.
//!
//! The peers are the binaries in the workspace's `.venv` (installed by `./scripts/test`). When one is
//! missing, starting it panics: a backend test must fail, never silently pass, without its peer.
//!
//! Every peer and proxy belongs to the test that started it and stops when dropped, so start one per test
//! (they start in well under a second) rather than sharing one through a `static`, which is never dropped.
//! All of them must be used inside a tokio runtime; the proxy serves on the runtime that started it, so in a
//! `current_thread` test it only makes progress while the test is awaiting.
#![deny(missing_docs)]

mod bao;
mod drongo;
mod http_client;
mod keyring;
mod keyvault;
pub mod logs;
mod moto;
mod paths;
mod postgres;
mod process;
mod proxy;
mod quota;
mod sops;

pub use bao::Bao;
pub use drongo::Drongo;
pub use keyring::SecretService;
pub use keyvault::{KeyVault, KeyVaultRequest};
pub use moto::Moto;
pub use paths::{free_port, venv_bin, workspace_root};
pub use postgres::{describe as describe_pg_error, Postgres};
pub use proxy::{Action, Fault, Proxy, RecordedRequest};
pub use quota::{drain_time, over_quota, quota_operation, OperationCount, Provider, Quotas, Rate};
pub use sops::{AgeKey, Sops};
/// Re-exported so that tests use the same PostgreSQL client as [`Postgres::connect`].
pub use tokio_postgres;

/// Re-exported so that tests can build an [`Action::Respond`] and read a [`RecordedRequest`] without
/// depending on `bytes` and `http` themselves.
pub use bytes::Bytes;
/// See [`Bytes`].
pub use http::HeaderMap;
