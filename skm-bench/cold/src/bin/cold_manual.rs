//! Cold start, by hand: what a service without skm does for the same 20 secrets, `dotenvy` then
//! `std::env::var` for each, every one from `./.env`.
//!
//! skm-bench spawns it in a prepared directory and times the whole process. It prints the same line as
//! `cold_skm` (a count and a total length, never a value).

use std::process::ExitCode;

#[path = "../manual.rs"]
mod manual;

fn main() -> ExitCode {
    manual::load_and_print()
}
