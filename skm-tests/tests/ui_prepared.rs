//! The derive against committed snapshots of the stores (issue 29): `tests/ui_prepared/fail/*.rs` must fail
//! to compile with exactly the errors in their `.stderr`, `tests/ui_prepared/pass/*.rs` must compile and run.
//!
//! trybuild compiles each case in a project of its own under `target/tests/trybuild/`, so the derive's
//! default lookup (`.skm/prepared/` beside the crate's Cargo.toml) would find nothing there: this binary sets
//! `SKM_PREPARED` to `tests/ui_prepared/snapshots/` instead, which trybuild's cargo inherits. Each case
//! declares a struct of its own name, and the derive reads only the snapshots of that name
//! (`<Struct>.<profile>.json`), so the cases share the directory without seeing each other's snapshots. It
//! is a test binary of its own so that the variable never reaches `tests/ui.rs`'s cases.
//!
//! The snapshots are what `skm prepare` writes for the stores `tests/prepare.rs` builds (that test compares
//! them); regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p skm-tests --all-features
//! --test ui_prepared`, then read every changed one.

#[test]
fn ui_prepared() {
    let snapshots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui_prepared/snapshots");
    // Set before any case is built (trybuild builds them when `t` drops), read by the derive in cargo's rustc.
    std::env::set_var("SKM_PREPARED", &snapshots);
    let t = trybuild::TestCases::new();
    t.pass("tests/ui_prepared/pass/*.rs");
    t.compile_fail("tests/ui_prepared/fail/*.rs");
}
