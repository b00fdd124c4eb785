//! The load pipeline and what surrounds it, with the memory backend, the local store and files (no peer but
//! git and cargo): one test binary, one module per behaviour. Run one module with
//! `cargo test -p skm-tests --all-features --test pipeline -- load::`.
//!
//! The modules share one process, so what a test does to the process is shared too:
//! - the environment: a test that sets a variable uses a name no other test reads (`load`'s card example is
//!   the only one that reads the process environment through `load()`); tests that need an environment of
//!   their own run this binary again as a child process (`first_run::child_entry`);
//! - `tracing`: [`support::logs`] is the binary's one global subscriber (`gitcheck`'s warnings come from the
//!   store's worker threads); the other tests use a thread-local capture.

mod docs;
mod figment_app;
mod files;
mod first_run;
mod gitcheck;
mod load;
mod refs;
mod rotating;
mod validators;
mod watch;

mod support {
    use std::sync::OnceLock;

    /// Every event of this test binary at every level, from a global subscriber installed before the first
    /// test that reads it logs; each test looks for its own paths or values in it.
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
