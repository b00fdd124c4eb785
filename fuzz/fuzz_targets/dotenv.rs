//! `.env` files: parsing never panics, line numbers are real lines, and a malformed line's text (which may
//! hold a secret) never appears in the error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skm_runtime::fuzzing::parse_dotenv;

const MARK: char = '\u{1}';

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(entries) = parse_dotenv(text) {
        let lines = text.lines().count();
        for (name, _, line) in entries {
            assert!(line <= lines, "{name} on line {line} of {lines}");
        }
    }
    // Every line carries the marker, so an error quoting any part of a line would show it.
    let marked: String = text.lines().map(|l| format!("{l}{MARK}\n")).collect();
    if let Err(e) = parse_dotenv(&marked) {
        assert!(!e.contains(MARK), "the error quotes the file: {e:?}");
    }
});
