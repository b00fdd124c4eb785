//! The sentinel planted in every source, and a checker for every way it could show up in a text: as is,
//! base64 (standard and URL-safe, at each of the three byte alignments, so that it is found inside a longer
//! encoded blob) and hex. Shared by the reliability tests and the leak sweep.

use std::collections::BTreeMap;

/// The one value planted in every source (and used as credentials where a peer takes any).
pub const SENTINEL: &str = "SENTINEL-rel-8d41c7e2-do-not-leak";

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 without padding; written here so that the test does not share the implementation's encoder.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// What to look for: the sentinel and its encodings.
pub fn needles(sentinel: &str) -> Vec<(String, String)> {
    let mut out = vec![("plain".to_string(), sentinel.to_string())];
    for (name, alphabet) in [("base64", STANDARD), ("base64url", URL_SAFE)] {
        for offset in 0..3 {
            // `offset` bytes before the sentinel shift it within the 3-byte groups; the characters that
            // depend only on the sentinel start at the first whole group and end before the last one.
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(sentinel.as_bytes());
            let encoded = base64(&bytes, alphabet);
            let start = if offset == 0 { 0 } else { 4 };
            let end = (encoded.len() / 4) * 4 - 4;
            out.push((format!("{name} at offset {offset}"), encoded[start..end].to_string()));
        }
    }
    let hex: String = sentinel.bytes().map(|b| format!("{b:02x}")).collect();
    out.push(("hex".into(), hex.clone()));
    out.push(("HEX".into(), hex.to_uppercase()));
    // JSON and Debug escapes of a sentinel made of plain ASCII are the sentinel itself; a Debug of bytes
    // would show it as a list of numbers.
    let numbers: Vec<String> = sentinel.bytes().take(12).map(|b| b.to_string()).collect();
    out.push(("byte list".into(), numbers.join(", ")));
    out
}

/// Checks texts for the sentinel and counts what was checked.
pub struct Leaks {
    needles: Vec<(String, String)>,
    /// Texts checked per kind (`Display of an error`, `TRACE logs`, ...).
    pub kinds: BTreeMap<String, usize>,
    /// How many texts were checked.
    pub texts: usize,
    /// How many bytes were checked.
    pub bytes: usize,
}

impl Leaks {
    pub fn new() -> Leaks {
        Leaks {
            needles: needles(SENTINEL),
            kinds: BTreeMap::new(),
            texts: 0,
            bytes: 0,
        }
    }

    /// The form in which `text` holds the sentinel, and where, if it does.
    pub fn find(&self, text: &str) -> Option<(&str, &str, usize)> {
        self.needles.iter().find_map(|(form, needle)| {
            text.find(needle.as_str())
                .map(|at| (form.as_str(), needle.as_str(), at))
        })
    }

    /// Panics if `text` (what `kind` produced on `path`) holds the sentinel in any form.
    pub fn check(&mut self, path: &str, kind: &str, text: &str) {
        if let Some((form, needle, at)) = self.find(text) {
            let from = text[..at].char_indices().rev().nth(200).map_or(0, |(i, _)| i);
            let context: String = text[from..].chars().take(400 + needle.len()).collect();
            panic!("LEAK on path `{path}`: {kind} contains the sentinel ({form}):\n…{context}…");
        }
        *self.kinds.entry(kind.to_string()).or_default() += 1;
        self.texts += 1;
        self.bytes += text.len();
    }
}

#[test]
fn needles_find_every_encoding() {
    let leaks = Leaks::new();
    assert_eq!(leaks.find("nothing to see"), None);
    // Each encoding at each offset, inside a longer text.
    for prefix in ["", "a", "ab", "abc"] {
        let blob = format!("{prefix}{{\"secret\":\"{SENTINEL}\"}}");
        for alphabet in [STANDARD, URL_SAFE] {
            let encoded = base64(blob.as_bytes(), alphabet);
            assert!(leaks.find(&encoded).is_some(), "base64 of {blob:?} not found");
        }
        let hex: String = blob.bytes().map(|b| format!("{b:02X}")).collect();
        assert!(leaks.find(&hex).is_some(), "{hex}");
    }
    let bytes = format!("{:?}", format!("x{SENTINEL}").as_bytes());
    assert!(leaks.find(&bytes).is_some(), "{bytes}");
    assert_eq!(base64(b"Man", STANDARD), "TWFu");
    assert_eq!(base64(b"Ma", STANDARD), "TWE");
}
