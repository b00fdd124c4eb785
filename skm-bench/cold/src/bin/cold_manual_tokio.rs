//! Cold start, by hand, inside the runtime the quickstart uses: `cold_manual` under `#[tokio::main]`, to show
//! what the runtime alone adds to a process's start.
//!
//! skm-bench spawns it in a prepared directory and times the whole process. It prints the same line as
//! `cold_skm` (a count and a total length, never a value).

use std::process::ExitCode;

#[path = "../manual.rs"]
mod manual;

#[tokio::main]
async fn main() -> ExitCode {
    manual::load_and_print()
}
