//! Manifest files (`skm --manifest FILE`, written by `skm manifest`): TOML and JSON. Parsing never panics,
//! and whatever parses writes back to text that parses to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skm_cli::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(manifest) = toml::from_str::<Manifest>(text) {
        let written = toml::to_string(&manifest).expect("a parsed manifest writes back as TOML");
        let again: Manifest = toml::from_str(&written).expect("the written TOML parses");
        assert_eq!(again, manifest);
    }
    if let Ok(manifest) = serde_json::from_str::<Manifest>(text) {
        let written = serde_json::to_string(&manifest).expect("a parsed manifest writes back as JSON");
        let again: Manifest = serde_json::from_str(&written).expect("the written JSON parses");
        assert_eq!(again, manifest);
    }
});
