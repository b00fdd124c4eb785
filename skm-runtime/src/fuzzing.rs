//! The parsers skm runs on input it does not control, as pure functions for the fuzz targets in `fuzz/`.
//!
//! Not a public API: hidden from the documentation and free to change. Each function is the real code path
//! (the loader's, the local store's), only without the I/O around it.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::de::{self, Raw};

/// The loader's reading of property `key` from a secret's text (`#[secret(path = ..., key = ...)]`): the
/// value, `None` when the object has no such key, or why the text cannot hold keys (not a JSON object).
///
/// # Errors
/// The text is not a JSON object; the message never contains the text.
pub fn extract_key(text: &str, key: &str) -> Result<Option<String>, String> {
    crate::resolve::extract_key_text(text, key)
}

/// Converts a source's text into a field of type `T`, as a load does.
///
/// # Errors
/// The text is not a valid `T`; the message never contains the text.
pub fn extract_text<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    de::extract(Raw::Text(text))
}

/// Converts a binary secret (AWS `SecretBinary`, local store bytes) into a field of type `T`.
///
/// # Errors
/// The bytes are not a valid `T`.
pub fn extract_binary<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    de::extract(Raw::Binary(bytes))
}

/// Checks a profile name (`SKM_PROFILE`, `Loader::profile`) as a load does.
///
/// # Errors
/// The profile is not a single safe path segment.
pub fn check_profile(profile: &str) -> Result<(), String> {
    crate::plan::check_profile(profile).map_err(|e| e.to_string())
}

/// Substitutes `{profile}` in a `#[secrets(prefix = "...")]` template.
///
/// # Errors
/// The template needs a profile and `profile` is `None`.
pub fn substitute_profile(prefix: &str, profile: Option<&str>) -> Result<String, String> {
    crate::plan::substitute_profile(prefix, profile, "Fuzz").map_err(|e| e.to_string())
}

/// Parses the text of a `.env` file; returns the `(name, value, line)` entries, sorted by name.
///
/// # Errors
/// The text is malformed; the message gives a line and column, never the line's text.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String, usize)>, String> {
    use secrecy::ExposeSecret;
    let file = crate::dotenv::DotenvFile::parse(Path::new("fuzz.env"), text).map_err(|e| e.to_string())?;
    Ok(file
        .entries()
        .map(|e| (e.name().to_string(), e.value().expose_secret().to_string(), e.line()))
        .collect())
}

/// The local store's file format (feature `local`).
#[cfg(feature = "local")]
pub mod store {
    use crate::backend::local::pure;
    pub use crate::backend::local::LocalKey;

    /// Decrypts and parses the bytes of the store file of `path`, reading every kept version as a fetch
    /// does; returns how many versions the file keeps.
    ///
    /// # Errors
    /// The bytes are not a valid store file of `path` under `key`.
    pub fn open(path: &str, bytes: &[u8], key: &LocalKey) -> Result<usize, String> {
        pure::open(path, bytes, key)
    }

    /// Encrypts `plain` as the entry of `path`'s store file, whatever it holds, so that a fuzzer can reach
    /// the entry parser behind the authentication tag.
    ///
    /// # Errors
    /// Encryption failed (no randomness for the nonce).
    pub fn seal(path: &str, plain: &[u8], key: &LocalKey) -> Result<Vec<u8>, String> {
        pure::seal(path, plain, key)
    }

    /// The file name that holds `path`.
    ///
    /// # Errors
    /// The path is empty or its file name would be too long.
    pub fn file_name(path: &str) -> Result<String, String> {
        pure::file_name(path)
    }

    /// The path a store file name stands for, `None` for a file that is not a store file.
    pub fn path_of(name: &str) -> Option<String> {
        pure::path_of(name)
    }
}
