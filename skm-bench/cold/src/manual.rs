//! The hand-written loading shared by `cold_manual` and `cold_manual_tokio`: `dotenvy`, then `std::env::var`
//! for each of the 20 variables.

use std::process::ExitCode;

pub const NAMES: [&str; 20] = [
    "COLD_SECRET_00",
    "COLD_SECRET_01",
    "COLD_SECRET_02",
    "COLD_SECRET_03",
    "COLD_SECRET_04",
    "COLD_SECRET_05",
    "COLD_SECRET_06",
    "COLD_SECRET_07",
    "COLD_SECRET_08",
    "COLD_SECRET_09",
    "COLD_SECRET_10",
    "COLD_SECRET_11",
    "COLD_SECRET_12",
    "COLD_SECRET_13",
    "COLD_SECRET_14",
    "COLD_SECRET_15",
    "COLD_SECRET_16",
    "COLD_SECRET_17",
    "COLD_SECRET_18",
    "COLD_SECRET_19",
];

/// Loads the 20 variables and prints a count and a total length (never a value), as `cold_skm` does.
pub fn load_and_print() -> ExitCode {
    // A missing `.env` is not an error for such a service: the variables may come from the environment.
    let _ = dotenvy::dotenv();
    let mut values = Vec::with_capacity(NAMES.len());
    for name in NAMES {
        match std::env::var(name) {
            Ok(value) => values.push(value),
            Err(e) => {
                eprintln!("{name}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let bytes: usize = values.iter().map(String::len).sum();
    println!("{} secrets, {bytes} bytes", values.len());
    ExitCode::SUCCESS
}
