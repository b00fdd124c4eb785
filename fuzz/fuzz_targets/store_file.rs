//! The local store's file format: arbitrary bytes as a store file, arbitrary plaintext behind a valid tag
//! (the entry parser), and single-byte changes and truncations of a valid file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skm_runtime::fuzzing::store::{self, LocalKey};

const PATH: &str = "auth/jwt";
/// A valid entry: two versions, text and binary.
const ENTRY: &[u8] = br#"{"next":3,"versions":[{"n":1,"created_ms":1,"value":"b2xk"},{"n":2,"created_ms":2,"binary":true,"value":"AJ+Slg=="}]}"#;

fuzz_target!(|data: &[u8]| {
    let key = LocalKey::from_bytes([7; 32]);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        // Whatever the bytes, a store file that does not authenticate is an error, never a panic or a value.
        0 => {
            let _ = store::open(PATH, rest, &key);
        }
        // Arbitrary plaintext with a valid tag reaches the entry parser and the version selection.
        1 => {
            let sealed = store::seal(PATH, rest, &key).expect("seal");
            let _ = store::open(PATH, &sealed, &key);
            // The same bytes never open as another path's file or under another key.
            assert!(store::open("auth/jwT", &sealed, &key).is_err());
            assert!(store::open(PATH, &sealed, &LocalKey::from_bytes([8; 32])).is_err());
        }
        // A valid file with a byte changed at a fuzzer-chosen position, or truncated: always detected.
        _ => {
            let sealed = store::seal(PATH, ENTRY, &key).expect("seal");
            assert_eq!(store::open(PATH, &sealed, &key), Ok(2));
            let mut changed = sealed.clone();
            for pair in rest.chunks_exact(3) {
                let at = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % changed.len();
                changed[at] ^= pair[2].max(1);
            }
            if changed != sealed {
                assert!(store::open(PATH, &changed, &key).is_err(), "a modified file opened");
            }
            let cut = rest.first().map_or(0, |&b| usize::from(b)) % sealed.len();
            assert!(
                store::open(PATH, &sealed[..cut], &key).is_err(),
                "a truncated file opened"
            );
        }
    }
});
