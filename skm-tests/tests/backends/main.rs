//! The backends against their real peers (moto, OpenBao, drongo, skm-testing's Key Vault server, PostgreSQL):
//! one test binary, one module per backend or per behaviour across backends. Every binary links every SDK,
//! so they are few; run one module with `cargo test -p skm-tests --all-features --test backends -- vault::`.
//!
//! The modules share one process, so what a test does to the process is shared too:
//! - the environment: only [`support::no_instance_metadata`] changes it (once, for every module); a test that
//!   needs other variables runs this binary again as a child process with exactly those variables, naming its
//!   child test by its full path (`aws::child_process_entry`);
//! - `tracing`: [`support::logs`] is the binary's one global subscriber (tests that assert on the logs of other
//!   threads use it; the others use a thread-local capture).

mod aws;
mod azure;
mod gcp;
mod keyring;
mod leases;
mod mixed;
mod refs;
mod rotation;
mod sops;
mod ssm;
mod throttle;
mod traversal;
mod vault;

mod support {
    use std::sync::{Once, OnceLock};

    /// Keeps the SDKs' credential chains off the instance-metadata addresses, which no test may contact:
    /// `AWS_EC2_METADATA_DISABLED=true`, and App Service's managed-identity variables pointing Azure's chain at
    /// a closed loopback port. Set once, before the first test that needs it starts a peer.
    #[allow(dead_code)] // with the `aws` or `azure` feature only
    pub fn no_instance_metadata() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let port = skm_testing::free_port();
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            std::env::set_var("IDENTITY_ENDPOINT", format!("http://127.0.0.1:{port}/msi/token"));
            std::env::set_var("IDENTITY_HEADER", "skm-test");
        });
    }

    /// Every event of this test binary, from a global subscriber installed before any test logs: a
    /// thread-local one misses events whose call sites another test's thread reached first (tracing caches
    /// their interest). Shared by every module: a test looks for its own values in it.
    #[allow(dead_code)] // with the `vault` or `postgres` feature only
    pub fn logs() -> &'static skm_testing::logs::Captured {
        static LOGS: OnceLock<skm_testing::logs::Captured> = OnceLock::new();
        LOGS.get_or_init(|| {
            let captured = skm_testing::logs::Captured::default();
            let writer = captured.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .try_init()
                .expect("the only global subscriber of this test binary");
            captured
        })
    }
}
