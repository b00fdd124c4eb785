//! JSON key extraction (`#[secret(path, key)]`) and the conversion of a source's text into a field's type.
//! Besides not panicking, a value never appears in an error: inputs are wrapped in a marker character that
//! no message contains, and every error is checked for it.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use secrecy::{SecretBox, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use skm_runtime::fuzzing::{extract_binary, extract_key, extract_text};

#[derive(Deserialize, Clone, zeroize::Zeroize)]
#[allow(dead_code)] // Only deserialized.
struct Db {
    user: String,
    port: u16,
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum Level {
    Debug,
    Info,
}

const MARK: char = '\u{1}';

fn value_free(error: Option<String>) {
    if let Some(e) = error {
        assert!(
            !e.contains(MARK) && !e.contains("\\u{1}") && !e.contains("\\u0001"),
            "an error shows the value: {e:?}"
        );
    }
}

/// Every conversion a field can ask for; returns the errors.
fn convert_all(text: &str) -> Vec<Option<String>> {
    vec![
        extract_text::<u16>(text).err(),
        extract_text::<i64>(text).err(),
        extract_text::<f64>(text).err(),
        extract_text::<bool>(text).err(),
        extract_text::<char>(text).err(),
        extract_text::<String>(text).err(),
        extract_text::<SecretString>(text).err(),
        extract_text::<SecretBox<u16>>(text).err(),
        extract_text::<SecretBox<Db>>(text).err(),
        extract_text::<Option<SecretString>>(text).err(),
        extract_text::<Vec<u8>>(text).err(),
        extract_text::<Vec<String>>(text).err(),
        extract_text::<HashMap<String, String>>(text).err(),
        extract_text::<(u8, u8)>(text).err(),
        extract_text::<Level>(text).err(),
    ]
}

fuzz_target!(|data: &[u8]| {
    let _ = extract_binary::<SecretBox<Vec<u8>>>(data);
    let _ = extract_binary::<String>(data);
    let _ = extract_binary::<SecretBox<Db>>(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (key, body) = text.split_once('\0').unwrap_or(("secret", text));

    // Key extraction agrees with a plain JSON parse.
    let object = serde_json::from_str::<serde_json::Map<String, Value>>(body).ok();
    match (extract_key(body, key), &object) {
        (Ok(Some(v)), Some(map)) => match map.get(key) {
            Some(Value::String(s)) => assert_eq!(&v, s),
            Some(other) => assert_eq!(v, other.to_string()),
            None => panic!("found a key the object lacks"),
        },
        (Ok(None), Some(map)) => assert!(map.get(key).is_none_or(Value::is_null)),
        (Err(_), None) => {}
        (r, o) => panic!("extract_key {r:?} but parse {o:?}"),
    }
    let _ = convert_all(body);

    // Values never show in errors, whatever they hold and wherever they sit.
    let marked = format!("{MARK}{body}{MARK}");
    for e in convert_all(&marked) {
        value_free(e);
    }
    for doc in [
        json!({ "user": marked, "port": marked }),
        json!({ "user": 5, "port": marked }),
        json!({ "user": "app", "port": 5, "extra": marked }),
        json!([marked, marked]),
        json!(marked),
    ] {
        let doc = doc.to_string();
        for e in convert_all(&doc) {
            value_free(e);
        }
        value_free(extract_key(&doc, "k").err());
    }
    // The key is a declared name and may show in errors; only values must not.
    value_free(extract_key(&marked, "k").err());
});
