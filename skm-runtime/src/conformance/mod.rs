//! The conformance suite: behaviour every backend must have (feature `conformance`).
//!
//! [`Suite`] runs every check in [`CHECKS`] against a live instance (the memory backend, the local store, moto,
//! OpenBao, drongo, the Key Vault test server) and returns a [`Report`]: which checks passed, which the backend
//! answered with [`FailureKind::Unsupported`] (with its reason) and which failure kinds were not exercised
//! because the caller gave no backend in that state. A check that fails panics, naming the check. Nothing is
//! skipped silently: a caller asserts the report it expects (e.g. `report.assert_complete()`).
//!
//! Checks take a `prefix` so that runs against a shared server do not collide.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use skm_runtime::backend::MemoryBackend;
//! use skm_runtime::conformance::Suite;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let report = Suite::new(Arc::new(MemoryBackend::new()), "conformance").run().await;
//! assert_eq!(report.passed.len(), skm_runtime::conformance::CHECKS.len() - 3);
//! assert_eq!(report.not_exercised, ["forbidden", "unavailable", "throttled"]);
//! # });
//! ```

use std::sync::Arc;

use crate::backend::{AdminBackend, Backend, FailureKind};

mod store;
mod through_loader;

pub use store::*;
pub use through_loader::*;

/// Every check [`Suite::run`] performs, in order.
pub const CHECKS: &[&str] = &[
    "missing_is_not_found",
    "put_then_fetch",
    "binary_all_256_bytes",
    "hundred_paths_one_call",
    "new_version_becomes_current",
    "version_pins",
    "current_versions",
    "create_only_never_overwrites",
    "check_and_set",
    "list_filters_by_prefix",
    "delete_makes_it_not_found",
    "loads_keys_and_types",
    "key_on_text_is_invalid",
    "forbidden",
    "unavailable",
    "throttled",
];

/// What a [`Suite`] run found. Every name of [`CHECKS`] is in exactly one of the three lists.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Checks that ran and passed.
    pub passed: Vec<&'static str>,
    /// Checks the backend answered with [`FailureKind::Unsupported`] or declined (e.g. no check-and-set),
    /// with the reason.
    pub unsupported: Vec<(&'static str, String)>,
    /// Failure kinds the caller gave no backend for (see [`Suite::forbidden`] and the like).
    pub not_exercised: Vec<&'static str>,
}

impl Report {
    /// How many checks were accounted for; always [`CHECKS`]`.len()` after a run.
    pub fn accounted(&self) -> usize {
        self.passed.len() + self.unsupported.len() + self.not_exercised.len()
    }

    /// Panics unless every check passed.
    pub fn assert_complete(&self) {
        assert!(
            self.unsupported.is_empty() && self.not_exercised.is_empty(),
            "conformance checks not passed: {self:?}"
        );
        assert_eq!(self.passed, CHECKS, "every check, in order");
    }

    /// The names of the unsupported checks.
    pub fn unsupported_names(&self) -> Vec<&'static str> {
        self.unsupported.iter().map(|(n, _)| *n).collect()
    }
}

/// The conformance suite for one backend. Backends in a failure state (a forbidden token, an unreachable
/// address, a throttling proxy) are optional; a failure kind without one is reported as not exercised.
pub struct Suite<B> {
    backend: Arc<B>,
    prefix: String,
    forbidden: Option<Arc<dyn Backend>>,
    unavailable: Option<Arc<dyn Backend>>,
    throttled: Option<Arc<dyn Backend>>,
    skipped: Vec<(&'static str, String)>,
}

impl<B: AdminBackend + 'static> Suite<B> {
    /// The suite for `backend`, writing under `prefix`.
    pub fn new(backend: Arc<B>, prefix: impl Into<String>) -> Self {
        Suite {
            backend,
            prefix: prefix.into(),
            forbidden: None,
            unavailable: None,
            throttled: None,
            skipped: Vec::new(),
        }
    }

    /// Does not run the check `name` (one of [`CHECKS`]), for a documented difference of the backend; the
    /// report lists it as unsupported with `why`, so a skip is never silent.
    ///
    /// # Panics
    /// If `name` is not a check.
    pub fn skip(mut self, name: &'static str, why: impl Into<String>) -> Self {
        assert!(CHECKS.contains(&name), "no conformance check named `{name}`");
        self.skipped.push((name, why.into()));
        self
    }

    /// The same store read with credentials that lack permission: reads must fail as `Forbidden`.
    pub fn forbidden(mut self, backend: Arc<dyn Backend>) -> Self {
        self.forbidden = Some(backend);
        self
    }

    /// The backend at an address that does not answer: reads must fail as `Unavailable`.
    pub fn unavailable(mut self, backend: Arc<dyn Backend>) -> Self {
        self.unavailable = Some(backend);
        self
    }

    /// The store behind a quota it exceeds: reads must fail as `Throttled` once retries run out.
    pub fn throttled(mut self, backend: Arc<dyn Backend>) -> Self {
        self.throttled = Some(backend);
        self
    }

    /// Runs every check of [`CHECKS`], in order.
    pub async fn run(self) -> Report {
        let b = &*self.backend;
        let p = self.prefix.as_str();
        let mut report = Report::default();
        let skipped = self.skipped.clone();
        let skip = |name: &str| skipped.iter().find(|(n, _)| *n == name).map(|(_, why)| why.clone());
        let mut record = |name: &'static str, outcome: Outcome| match outcome {
            Outcome::Passed => report.passed.push(name),
            Outcome::Unsupported(why) => report.unsupported.push((name, why)),
            Outcome::NotExercised => report.not_exercised.push(name),
        };
        // Runs a check unless the caller skipped it (then recorded as unsupported, with the caller's reason).
        macro_rules! check {
            ($name:literal, $call:expr) => {
                let outcome = match skip($name) {
                    Some(why) => Outcome::Unsupported(why),
                    None => $call.await,
                };
                record($name, outcome);
            };
        }
        check!("missing_is_not_found", missing_is_not_found(b, p));
        check!("put_then_fetch", put_then_fetch(b, p));
        check!("binary_all_256_bytes", binary_all_256_bytes(b, p));
        check!("hundred_paths_one_call", hundred_paths_one_call(b, p));
        check!("new_version_becomes_current", new_version_becomes_current(b, p));
        check!("version_pins", version_pins(b, p));
        check!("current_versions", current_versions(b, p));
        check!("create_only_never_overwrites", create_only_never_overwrites(b, p));
        check!("check_and_set", check_and_set(b, p));
        check!("list_filters_by_prefix", list_filters_by_prefix(b, p));
        check!("delete_makes_it_not_found", delete_makes_it_not_found(b, p));
        check!("loads_keys_and_types", loads_keys_and_types(self.backend.clone(), p));
        check!(
            "key_on_text_is_invalid",
            key_on_text_is_invalid(self.backend.clone(), p)
        );
        for (name, kind, faulty) in [
            ("forbidden", FailureKind::Forbidden, &self.forbidden),
            ("unavailable", FailureKind::Unavailable, &self.unavailable),
            ("throttled", FailureKind::Throttled, &self.throttled),
        ] {
            let outcome = match faulty {
                Some(faulty) => fails_as(&**faulty, p, kind).await,
                None => Outcome::NotExercised,
            };
            record(name, outcome);
        }
        assert_eq!(
            report.accounted(),
            CHECKS.len(),
            "every check accounted for: {report:?}"
        );
        report
    }
}

/// Runs the suite without failure-state backends and returns its report.
pub async fn run_all<B: AdminBackend + 'static>(backend: Arc<B>, prefix: &str) -> Report {
    Suite::new(backend, prefix).run().await
}

/// How one check ended (a failed check panics instead).
#[derive(Debug)]
pub enum Outcome {
    /// The check ran and passed.
    Passed,
    /// The backend does not support what the check needs; the reason.
    Unsupported(String),
    /// No backend in the needed state was given.
    NotExercised,
}
