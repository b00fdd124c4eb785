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
/// The format version after the magic: 2 binds the store and the path's write count (see [`Stamp`]).
pub(super) const FORMAT: u8 = 2;
/// The format before store identities: read, and rewritten as [`FORMAT`] by the store's first write.
pub(super) const LEGACY_FORMAT: u8 = 1;
pub(super) const NONCE_LEN: usize = 24;

/// A store's random identity, in the index and in every file of that store.
pub(super) type StoreId = [u8; 16];

/// Where a file says it belongs: which store, and which write of its path (the path's generation, counted
/// by the store's index). Part of the authenticated header, so it cannot be changed without the key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Stamp {
    pub store: StoreId,
    pub generation: u64,
}

/// A decrypted store file: its stamp (`None` for a [`LEGACY_FORMAT`] file) and its entry.
pub(super) struct Opened {
    pub stamp: Option<Stamp>,
    pub entry: Entry,
}

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

/// The header: magic, format version, the stamp (format 2), the path's length and the path. It is also the
/// associated data, so a file copied to another path's name, another store, or restored from an older write
/// fails authentication or the index check.
fn header(path: &str, stamp: Option<&Stamp>) -> Vec<u8> {
    let mut h = Vec::with_capacity(MAGIC.len() + 27 + path.len());
    h.extend_from_slice(MAGIC);
    match stamp {
        Some(s) => {
            h.push(FORMAT);
            h.extend_from_slice(&s.store);
            h.extend_from_slice(&s.generation.to_be_bytes());
        }
        None => h.push(LEGACY_FORMAT),
    }
    // Paths are bounded by the file name length, far below u16::MAX.
    h.extend_from_slice(&(path.len() as u16).to_be_bytes());
    h.extend_from_slice(path.as_bytes());
    h
}

/// Encrypts `entry` for `path` into the bytes of a store file.
pub(super) fn seal(path: &str, stamp: &Stamp, entry: &Entry, key: &LocalKey) -> Result<Vec<u8>, String> {
    let plain = Zeroizing::new(serde_json::to_vec(entry).map_err(|e| format!("cannot encode the entry: {e}"))?);
    seal_plain(path, Some(stamp), &plain, key)
}

/// Encrypts already-encoded entry bytes (`stamp` `None`: the legacy format); split from [`seal`] so that the
/// fuzz targets can encrypt arbitrary plaintext and reach the entry parser behind the authentication check.
pub(super) fn seal_plain(path: &str, stamp: Option<&Stamp>, plain: &[u8], key: &LocalKey) -> Result<Vec<u8>, String> {
    let aad = header(path, stamp);
    seal_with(aad, plain, key)
}

/// Appends a fresh nonce and the ciphertext of `plain`, authenticated with `aad`, to `aad`.
pub(super) fn seal_with(aad: Vec<u8>, plain: &[u8], key: &LocalKey) -> Result<Vec<u8>, String> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| format!("cannot generate a nonce: {e}"))?;
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let sealed = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad: &aad })
        .map_err(|_| "encryption failed".to_string())?;
    let mut out = aad;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts what follows the `aad_len` header bytes of `bytes` (nonce, ciphertext), authenticating the header.
pub(super) fn open_with(bytes: &[u8], aad_len: usize, key: &LocalKey) -> Result<Zeroizing<Vec<u8>>, String> {
    if bytes.len() < aad_len + NONCE_LEN {
        return Err("truncated file".into());
    }
    let nonce: [u8; NONCE_LEN] = bytes[aad_len..aad_len + NONCE_LEN]
        .try_into()
        .map_err(|_| "truncated file".to_string())?;
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &bytes[aad_len + NONCE_LEN..],
                aad: &bytes[..aad_len],
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| "authentication failed: wrong key, or the file was modified".to_string())
}

/// The stamp in the header of a store file's bytes, without decrypting (`None`: the legacy format); the
/// header is only trusted once [`open`] authenticated it.
pub(super) fn peek(bytes: &[u8]) -> Result<Option<Stamp>, String> {
    if bytes.len() < MAGIC.len() + 1 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a skm local store file".into());
    }
    match bytes[MAGIC.len()] {
        LEGACY_FORMAT => Ok(None),
        FORMAT => {
            let at = MAGIC.len() + 1;
            let raw = bytes.get(at..at + 24).ok_or("truncated file")?;
            let mut store = [0u8; 16];
            store.copy_from_slice(&raw[..16]);
            let mut generation = [0u8; 8];
            generation.copy_from_slice(&raw[16..]);
            Ok(Some(Stamp {
                store,
                generation: u64::from_be_bytes(generation),
            }))
        }
        other => Err(format!(
            "store file format {other} is not supported (this skm reads formats {LEGACY_FORMAT} and {FORMAT}); is it from a newer skm?"
        )),
    }
}

/// Decrypts the bytes of the store file of `path`. Any mismatch (another format, another path, a wrong key,
/// a modified or truncated file) is an error, never a partial value. Whether the stamp is the one the store
/// expects is the index's business ([`super::index`]).
pub(super) fn open(path: &str, bytes: &[u8], key: &LocalKey) -> Result<Opened, String> {
    let stamp = peek(bytes)?;
    let aad = header(path, stamp.as_ref());
    if bytes.len() < aad.len() + NONCE_LEN || bytes[..aad.len()] != aad[..] {
        return Err("the file's header does not name this path: it was moved, copied or modified".into());
    }
    let plain = open_with(bytes, aad.len(), key)?;
    let entry = serde_json::from_slice(&plain).map_err(|_| "the decrypted entry is malformed".to_string())?;
    Ok(Opened { stamp, entry })
}
