//! One store file: header, nonce, and the encrypted entry (every kept version of one path).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::key::LocalKey;

/// The first bytes of every store file.
pub(super) const MAGIC: &[u8; 8] = b"SKMLOCAL";
/// The format version after the magic.
pub(super) const FORMAT: u8 = 1;
const NONCE_LEN: usize = 24;

/// How many versions of a path are kept.
pub(super) const KEEP: usize = 5;

/// Everything stored for one path, encrypted as a whole.
#[derive(Serialize, Deserialize)]
pub(super) struct Entry {
    /// The number the next put gets: versions are numbered from 1 and never reused.
    pub next: u64,
    /// Soft-deleted: hidden from reads and lists, kept so that `rollback` or a new put can continue.
    #[serde(default)]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// Oldest first, at most [`KEEP`].
    pub versions: Vec<Version>,
}

/// One version of a path's value.
#[derive(Serialize, Deserialize)]
pub(super) struct Version {
    pub n: u64,
    pub created_ms: u64,
    /// `true` for bytes, `false` for UTF-8 text.
    #[serde(default)]
    pub binary: bool,
    pub value: Blob,
}

impl Version {
    pub fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.created_ms)
    }
}

impl Entry {
    pub fn new() -> Self {
        Entry {
            next: 1,
            deleted: false,
            description: None,
            tags: Vec::new(),
            versions: Vec::new(),
        }
    }

    /// Adds a version and drops the oldest beyond [`KEEP`]; returns the new number.
    pub fn push(&mut self, binary: bool, value: Blob) -> u64 {
        let n = self.next;
        let created_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.versions.push(Version {
            n,
            created_ms,
            binary,
            value,
        });
        let excess = self.versions.len().saturating_sub(KEEP);
        self.versions.drain(..excess);
        self.next += 1;
        self.deleted = false;
        n
    }
}

/// Secret bytes, zeroed on drop, stored as base64 inside the encrypted JSON.
pub(super) struct Blob(pub Zeroizing<Vec<u8>>);

impl Clone for Blob {
    fn clone(&self) -> Self {
        Blob(Zeroizing::new(self.0.to_vec()))
    }
}

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&self.0[..]));
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("base64 text")
            }
            // Decodes straight from the input buffer so that no intermediate copy of the value is left behind.
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Blob, E> {
                let mut out = Zeroizing::new(Vec::new());
                base64::engine::general_purpose::STANDARD
                    .decode_vec(v, &mut out)
                    .map_err(|_| E::custom("invalid base64"))?;
                Ok(Blob(out))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// The header: magic, format version, the path's length and the path. It is also the associated data, so a
/// file copied to another path's name fails authentication.
fn header(path: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(MAGIC.len() + 3 + path.len());
    h.extend_from_slice(MAGIC);
    h.push(FORMAT);
    // Paths are bounded by the file name length, far below u16::MAX.
    h.extend_from_slice(&(path.len() as u16).to_be_bytes());
    h.extend_from_slice(path.as_bytes());
    h
}

/// Encrypts `entry` for `path` into the bytes of a store file.
pub(super) fn seal(path: &str, entry: &Entry, key: &LocalKey) -> Result<Vec<u8>, String> {
    let plain = Zeroizing::new(serde_json::to_vec(entry).map_err(|e| format!("cannot encode the entry: {e}"))?);
    seal_plain(path, &plain, key)
}

/// Encrypts already-encoded entry bytes; split from [`seal`] so that the fuzz targets can encrypt arbitrary
/// plaintext and reach the entry parser behind the authentication check.
pub(super) fn seal_plain(path: &str, plain: &[u8], key: &LocalKey) -> Result<Vec<u8>, String> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| format!("cannot generate a nonce: {e}"))?;
    let aad = header(path);
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let sealed = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad: &aad })
        .map_err(|_| "encryption failed".to_string())?;
    let mut out = aad;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts the bytes of the store file of `path`. Any mismatch (another format, another path, a wrong key,
/// a modified or truncated file) is an error, never a partial value.
pub(super) fn open(path: &str, bytes: &[u8], key: &LocalKey) -> Result<Entry, String> {
    let aad = header(path);
    if bytes.len() < MAGIC.len() + 1 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a skm local store file".into());
    }
    if bytes[MAGIC.len()] != FORMAT {
        return Err(format!(
            "store file format {} is not supported (this skm reads format {FORMAT}); is it from a newer skm?",
            bytes[MAGIC.len()]
        ));
    }
    if bytes.len() < aad.len() + NONCE_LEN || bytes[..aad.len()] != aad[..] {
        return Err("the file's header does not name this path: it was moved, copied or modified".into());
    }
    let nonce: [u8; NONCE_LEN] = bytes[aad.len()..aad.len() + NONCE_LEN]
        .try_into()
        .map_err(|_| "truncated file".to_string())?;
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &bytes[aad.len() + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| "authentication failed: wrong key, or the file was modified".to_string())?,
    );
    serde_json::from_slice(&plain).map_err(|_| "the decrypted entry is malformed".into())
}
