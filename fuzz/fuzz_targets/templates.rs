//! Path templates and path validation: the profile check, `{profile}` substitution in prefixes, and the
//! local store's path-to-file-name encoding (which must keep every path inside the store directory).
#![no_main]

use libfuzzer_sys::fuzz_target;
use skm_runtime::fuzzing::{self, store};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (prefix, profile) = text.split_once('\n').unwrap_or((text, ""));

    match fuzzing::check_profile(profile) {
        Ok(()) => {
            // A valid profile is one safe path segment.
            assert!(!profile.is_empty() && profile != "." && profile != "..", "{profile:?}");
            assert!(
                profile
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "{profile:?}"
            );
            let out = fuzzing::substitute_profile(prefix, Some(profile)).expect("a profile is given");
            assert_eq!(out, prefix.replace("{profile}", profile));
        }
        Err(e) => assert!(e.contains("invalid profile"), "{e}"),
    }
    match fuzzing::substitute_profile(prefix, None) {
        Ok(out) => assert_eq!(out, prefix),
        Err(e) => assert!(prefix.contains("{profile}") && e.contains("SKM_PROFILE"), "{e}"),
    }

    for path in [text, prefix, profile] {
        match store::file_name(path) {
            Ok(name) => {
                let stem = name.strip_suffix(".skm").expect("the suffix");
                assert!(name.len() <= 255, "{name}");
                assert!(!stem.is_empty() && !stem.starts_with('.'), "{name}");
                // Only these bytes: no separator, no dot, no case-folding collisions.
                assert!(
                    stem.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_%ABCDEF".contains(&b)),
                    "{name}"
                );
                assert_eq!(store::path_of(&name).as_deref(), Some(path), "{name}");
            }
            // Only an empty path, or one whose encoded name (up to 3 bytes per byte) is too long.
            Err(_) => assert!(path.is_empty() || path.len() >= 84, "{path:?}"),
        }
        let _ = store::path_of(path);
    }
});
