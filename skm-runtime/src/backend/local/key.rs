//! The store's 32-byte key: parsing, generating, and the key file created on first use.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::Error;

/// A 32-byte XChaCha20-Poly1305 key for the local store. Its `Debug` never shows it; it is zeroed on drop.
///
/// # Example
/// ```
/// use skm_runtime::backend::local::LocalKey;
///
/// // 64 hex digits or base64 of 32 bytes, as in SKM_LOCAL_KEY.
/// let key = LocalKey::parse(&"ab".repeat(32)).unwrap();
/// assert_eq!(format!("{key:?}"), "LocalKey([REDACTED])");
/// assert!(LocalKey::parse("too short").is_err());
/// ```
#[derive(Clone)]
pub struct LocalKey(Zeroizing<[u8; 32]>);

impl LocalKey {
    /// A key from its raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        LocalKey(Zeroizing::new(bytes))
    }

    /// A new random key from the operating system's generator.
    ///
    /// # Errors
    /// The operating system has no randomness to give ([`Error::Backend`]).
    pub fn generate() -> Result<Self, Error> {
        let mut key = LocalKey(Zeroizing::new([0u8; 32]));
        getrandom::fill(&mut key.0[..]).map_err(|e| Error::Backend {
            backend: "local store".into(),
            detail: format!("cannot generate a key: {e}"),
            source: Some(Box::new(e)),
        })?;
        Ok(key)
    }

    /// Parses a key written as 64 hex digits or as base64 (standard or URL-safe, padded or not) of 32 bytes.
    ///
    /// Surrounding whitespace is ignored, so a key file may end with a newline.
    ///
    /// # Errors
    /// The text is neither ([`Error::Config`]). The message never repeats the text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let mut bytes = Zeroizing::new([0u8; 32]);
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (i, pair) in text.as_bytes().chunks(2).enumerate() {
                bytes[i] = (hex_digit(pair[0]) << 4) | hex_digit(pair[1]);
            }
            return Ok(LocalKey(bytes));
        }
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let mut decoded = Zeroizing::new(Vec::new());
            if engine.decode_vec(text, &mut decoded).is_ok() && decoded.len() == 32 {
                bytes.copy_from_slice(&decoded);
                return Ok(LocalKey(bytes));
            }
        }
        Err(Error::config(
            "the local store key must be 32 bytes written as base64 (44 characters) or hex (64 characters); \
             generate one with `openssl rand -base64 32`"
                .into(),
        ))
    }

    /// The key as standard base64, the form skm writes to key files; for backing the key up.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(base64::engine::general_purpose::STANDARD.encode(&self.0[..]))
    }

    pub(super) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

impl fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalKey([REDACTED])")
    }
}

/// Reads the key file at `path`: `Ok(None)` when it does not exist.
pub(super) fn read_key_file(path: &Path) -> Result<Option<LocalKey>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the key file {}: {e}", path.display())),
    };
    warn_if_readable_by_others(path);
    LocalKey::parse(&text).map(Some).map_err(|_| {
        format!(
            "the key file {} does not hold a valid key (32 bytes as base64 or hex)",
            path.display()
        )
    })
}

/// Creates the key file at `path` with a new random key (mode 0600, parent directories 0700), or reads the
/// one another process created first.
pub(super) fn create_key_file(path: &Path) -> Result<LocalKey, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    super::names::create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key = LocalKey::generate().map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| format!("cannot write the key file {}: {e}", path.display());
    // Write the whole key to a private temp file, then link it into place: the link either creates the
    // complete file or fails because another process won the race, so nobody ever reads half a key.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-key-")
        .tempfile_in(dir)
        .map_err(io)?;
    let encoded = Zeroizing::new(format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(&key.0[..])
    ));
    tmp.write_all(encoded.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    match std::fs::hard_link(tmp.path(), path) {
        Ok(()) => {
            super::names::sync_dir(dir).map_err(io)?;
            tracing::info!(target: "skm", key_file = %path.display(), "created a new key for the local store");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key_file(path)?.ok_or_else(|| format!("the key file {} vanished while being created", path.display()))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(target: "skm", key_file = %path.display(), mode = format!("{mode:o}"),
                "the local store's key file is readable by other users: run `chmod 600` on it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}
