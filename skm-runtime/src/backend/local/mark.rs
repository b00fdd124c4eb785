//! The high-water mark beside the key file: how far each store of that key has been written, so that a
//! whole store directory put back from an older copy is noticed.
//!
//! The index and the files of a store vouch for each other, so rolling back all of them at once goes unseen
//! by the store itself. The key file usually lives outside the project (`~/.config/skm/local.key`), where
//! whoever can write the project cannot: `<key file>.hwm` records, for every store identity, the highest
//! store generation ([`Index::generation`]) written with this key. A store whose index is behind its mark is
//! refused. The mark is authenticated with a key derived from the store key, replaced atomically (temp file
//! and rename) and never lowered; its read-modify-write runs under the store's lock and an exclusive lock on
//! the key file, which every store of the key shares, so that concurrent writers of different stores do not
//! lose each other's marks.
//!
//! ```text
//! "SKMHWMK1"  8 bytes   magic (the format version is its last byte)
//! nonce       24 bytes  random, new for every write
//! ciphertext  rest      XChaCha20-Poly1305 (derived key) of {"stores": {"<store id, hex>": generation}}
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use super::format::{self, StoreId};
use super::index::Index;
use super::key::LocalKey;
use super::names::write_atomic;
use super::Fail;

const MAGIC: &[u8; 8] = b"SKMHWMK1";
/// The nonce of the key derivation: fixed, since it derives one key per store key, not a message.
const DERIVE_NONCE: &[u8; 24] = b"skm local hwm key deriv1";

/// `<key file>.hwm`.
pub(super) fn path_for(key_file: &Path) -> PathBuf {
    let mut name = OsString::from(key_file.as_os_str());
    name.push(".hwm");
    PathBuf::from(name)
}

/// The mark's own key, so that the store key never authenticates two kinds of data: the first 32 bytes of
/// the XChaCha20 keystream of the store key under a fixed nonce, a PRF of the key (the cipher's own
/// subkey derivation is built the same way).
fn derived(key: &LocalKey) -> LocalKey {
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let zeros = [0u8; 32];
    let stream = cipher
        .encrypt(
            &XNonce::from(*DERIVE_NONCE),
            Payload {
                msg: &zeros,
                aad: MAGIC,
            },
        )
        .unwrap_or_default();
    let mut bytes = [0u8; 32];
    if stream.len() >= 32 {
        bytes.copy_from_slice(&stream[..32]);
    }
    LocalKey::from_bytes(bytes)
}

#[derive(Serialize, Deserialize, Default)]
struct Body {
    stores: BTreeMap<String, u64>,
}

fn hex(id: &StoreId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the mark file holds.
enum Read {
    Absent,
    /// It does not authenticate under this key: damaged, or written with a key the file no longer holds.
    Foreign,
    Marks(Body),
}

fn read(file: &Path, key: &LocalKey) -> Result<Read, Fail> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Read::Absent),
        Err(e) => return Err(Fail::io("read", file, e)),
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Ok(Read::Foreign);
    }
    let Ok(plain) = format::open_with(&bytes, MAGIC.len(), &derived(key)) else {
        return Ok(Read::Foreign);
    };
    Ok(serde_json::from_slice(&plain).map_or(Read::Foreign, Read::Marks))
}

/// Refuses `index` if the mark beside `key_file` records a later generation of its store.
pub(super) fn check(key_file: &Path, root: &Path, index: &Index, key: &LocalKey) -> Result<(), Fail> {
    let file = path_for(key_file);
    let body = match read(&file, key)? {
        Read::Marks(body) => body,
        Read::Absent => return Ok(()),
        Read::Foreign => {
            tracing::warn!(target: "skm", mark = %file.display(),
                "the local store's high-water mark does not authenticate under the key: it is ignored, and the \
                 next write replaces it");
            return Ok(());
        }
    };
    let Some(&marked) = body.stores.get(&hex(&index.store)) else {
        return Ok(());
    };
    let found = index.generation();
    if found >= marked {
        return Ok(());
    }
    Err(Fail::Integrity(format!(
        "the local store {} was rolled back: its index is at write {found}, but {} records that it reached write \
         {marked}; the whole store directory was replaced by an older copy. If you restored a backup on purpose, \
         delete {} to accept it (that forgets the marks of the other stores of this key too; each next write \
         records them again)",
        root.display(),
        file.display(),
        file.display()
    )))
}

/// Raises the mark of `index`'s store to its generation. Called under the store's exclusive lock, after the
/// index was written.
pub(super) fn advance(key_file: &Path, index: &Index, key: &LocalKey) -> Result<(), Fail> {
    let file = path_for(key_file);
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Every store of this key writes the same mark: serialize on the key file, which is never replaced.
    let lock_file = std::fs::File::open(key_file).map_err(|e| Fail::io("open", key_file, e))?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    let _guard = lock.write().map_err(|e| Fail::io("lock", key_file, e))?;
    let mut body = match read(&file, key)? {
        Read::Marks(body) => body,
        Read::Absent | Read::Foreign => Body::default(),
    };
    let id = hex(&index.store);
    let generation = index.generation();
    let marked = body.stores.get(&id).copied().unwrap_or(0);
    if marked >= generation {
        return Ok(());
    }
    body.stores.insert(id, generation);
    let plain = serde_json::to_vec(&body).map_err(|e| Fail::Io(format!("cannot encode the mark: {e}")))?;
    let bytes = format::seal_with(MAGIC.to_vec(), &plain, &derived(key)).map_err(Fail::Io)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Fail::Io(format!("{} has no file name", file.display())))?;
    write_atomic(dir, &name, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_key_differs_from_the_key_and_is_stable() {
        let key = LocalKey::from_bytes([7; 32]);
        assert_ne!(derived(&key).bytes(), key.bytes());
        assert_eq!(derived(&key).bytes(), derived(&key).bytes());
        assert_ne!(derived(&key).bytes(), derived(&LocalKey::from_bytes([8; 32])).bytes());
        assert_ne!(derived(&key).bytes(), &[0u8; 32]);
    }

    #[test]
    fn the_mark_path_is_beside_the_key_file() {
        assert_eq!(
            path_for(Path::new("/home/u/.config/skm/local.key")),
            Path::new("/home/u/.config/skm/local.key.hwm")
        );
    }
}
