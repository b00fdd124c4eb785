//! Compile-time diagnostics of `#[derive(Secrets)]`: each `tests/ui/<category>/<case>.rs` must fail to
//! compile with exactly the errors in its `.stderr`.
//!
//! Regenerate after an intended change with `TRYBUILD=overwrite cargo test -p skm-tests --all-features --test ui`, then read every
//! changed `.stderr`. They were written with rustc 1.95.0: another rustc may word its own notes (the
//! `help:`/`note:` lines under type errors) differently, so run this test on that toolchain.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
