//! The store's index: its random identity and, for every path, the number of the last write of the path's
//! file (its *generation*). Both are bound into each file's authenticated header ([`Stamp`]); the index itself
//! is encrypted and authenticated with the store's key, and replaced atomically under the store's lock after
//! each write. A reader compares the stamp of a path's file with the index, so a file restored from an older
//! write, copied from another store that shares the key, or removed, is refused before its value is used.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::format::{self, Stamp, StoreId};
use super::key::LocalKey;
use super::names::{write_atomic, INDEX_FILE};
use super::Fail;

const MAGIC: &[u8; 8] = b"SKMINDEX";
const FORMAT: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1 + 16;

/// The decrypted index.
#[derive(Clone)]
pub(super) struct Index {
    pub store: StoreId,
    pub paths: BTreeMap<String, Record>,
}

/// What the index knows of one path.
#[derive(Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Debug)]
pub(super) struct Record {
    /// The generation of the path's last write; 0 for a file of the legacy format, not rewritten yet.
    #[serde(rename = "g")]
    pub generation: u64,
    /// Removed by a forced delete: files of this generation or older are old copies, never served.
    #[serde(rename = "r", default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

#[derive(Serialize, Deserialize)]
struct Body {
    paths: BTreeMap<String, Record>,
}

impl Index {
    /// A new, empty index with a random identity.
    pub fn new() -> Result<Self, Fail> {
        let mut store = [0u8; 16];
        getrandom::fill(&mut store).map_err(|e| Fail::Io(format!("cannot generate a store identity: {e}")))?;
        Ok(Index {
            store,
            paths: BTreeMap::new(),
        })
    }

    /// The store's generation: the sum of its paths' generations. Every write of the index raises one path's
    /// generation (a put, a delete, an upgrade from the legacy format) and none is ever lowered or dropped
    /// (a forced delete keeps its record), so the sum counts the store's writes without a field of its own,
    /// and stores written before the high-water mark ([`super::mark`]) have one too.
    pub fn generation(&self) -> u64 {
        self.paths
            .values()
            .fold(0u64, |sum, r| sum.saturating_add(r.generation))
    }

    /// The stamp of the next write of `path`, above every generation the path has had.
    pub fn next_stamp(&self, path: &str, found: Option<Stamp>) -> Stamp {
        let recorded = self.paths.get(path).map_or(0, |r| r.generation);
        let found = found.map_or(0, |s| s.generation);
        Stamp {
            store: self.store,
            generation: recorded.max(found) + 1,
        }
    }
}

/// Reads the index of the store at `root`; `None` if it has none (a new store, or one of the legacy format).
pub(super) fn read(root: &Path, key: &LocalKey) -> Result<Option<Index>, Fail> {
    let file = root.join(INDEX_FILE);
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Fail::io("read", &file, e)),
    };
    let bad = |why: &str| Fail::Decryption(format!("cannot open the store's index {}: {why}", file.display()));
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("not a skm store index"));
    }
    if bytes[MAGIC.len()] != FORMAT {
        return Err(bad("its format is not supported; is it from a newer skm?"));
    }
    let plain = format::open_with(&bytes, HEADER_LEN, key).map_err(|why| bad(&why))?;
    let body: Body = serde_json::from_slice(&plain).map_err(|_| bad("the decrypted index is malformed"))?;
    let mut store = [0u8; 16];
    store.copy_from_slice(&bytes[MAGIC.len() + 1..HEADER_LEN]);
    Ok(Some(Index {
        store,
        paths: body.paths,
    }))
}

/// Replaces the index of the store at `root` atomically. Called under the store's exclusive lock.
pub(super) fn write(root: &Path, index: &Index, key: &LocalKey) -> Result<(), Fail> {
    let body = Body {
        paths: index.paths.clone(),
    };
    let plain =
        Zeroizing::new(serde_json::to_vec(&body).map_err(|e| Fail::Io(format!("cannot encode the index: {e}")))?);
    let mut aad = Vec::with_capacity(HEADER_LEN);
    aad.extend_from_slice(MAGIC);
    aad.push(FORMAT);
    aad.extend_from_slice(&index.store);
    let bytes = format::seal_with(aad, &plain, key).map_err(Fail::Io)?;
    write_atomic(root, INDEX_FILE, &bytes)
}

/// What to make of a path's file, given the index.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Serve the file.
    Serve,
    /// The path does not exist (no file, or an old copy of a path removed by a forced delete).
    Absent,
}

/// Checks the authenticated stamp of `path`'s file (`found`: `None` if there is no file, `Some(None)` for a
/// legacy-format file) against `index` (`None`: the store has no index). `Err` says why the file cannot be
/// trusted, naming neither the path (the caller does) nor anything of the value.
pub(super) fn verify(index: Option<&Index>, path: &str, found: Option<Option<Stamp>>) -> Result<Verdict, String> {
    let Some(index) = index else {
        return match found {
            None => Ok(Verdict::Absent),
            // A store of the legacy format, not written since: its files are taken as they are.
            Some(None) => Ok(Verdict::Serve),
            Some(Some(_)) => Err(
                "its file was written by a store with an index, and this store has none: the \
                                  index was removed, or the file was copied from another store"
                    .into(),
            ),
        };
    };
    let record = index.paths.get(path).copied();
    let Some(found) = found else {
        return match record {
            Some(r) if !r.removed => Err(format!(
                "its file is missing, but the store's index records write {} of it: the file was removed outside skm",
                r.generation
            )),
            _ => Ok(Verdict::Absent),
        };
    };
    let Some(stamp) = found else {
        return match record {
            Some(r) if r.generation == 0 && !r.removed => Ok(Verdict::Serve),
            _ => Err("its file is of the format before the store's upgrade: an old copy put back".into()),
        };
    };
    if stamp.store != index.store {
        return Err("its file belongs to another store (encrypted with the same key): it was copied in".into());
    }
    let (generation, removed) = record.map_or((0, true), |r| (r.generation, r.removed));
    match stamp.generation {
        // A writer renames the path's file before the index: a file one write ahead is a write whose index
        // update was interrupted. Only the key's holder can make such a file.
        g if g == generation + 1 => Ok(Verdict::Serve),
        g if g == generation && !removed => Ok(Verdict::Serve),
        g if g <= generation && removed => Ok(Verdict::Absent),
        g if g < generation => Err(format!(
            "its file is an older copy (write {g} of the path; the store's index records write {generation}): \
             the file was rolled back"
        )),
        g => Err(format!(
            "its file is write {g} of the path, but the store's index records {}: the index was rolled back",
            if record.is_some() {
                format!("write {generation}")
            } else {
                "no such path".into()
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        let mut ix = Index::new().ok().unwrap();
        ix.paths.insert(
            "live".into(),
            Record {
                generation: 3,
                removed: false,
            },
        );
        ix.paths.insert(
            "gone".into(),
            Record {
                generation: 3,
                removed: true,
            },
        );
        ix.paths.insert(
            "legacy".into(),
            Record {
                generation: 0,
                removed: false,
            },
        );
        ix
    }

    fn stamp(ix: &Index, generation: u64) -> Option<Option<Stamp>> {
        Some(Some(Stamp {
            store: ix.store,
            generation,
        }))
    }

    #[test]
    fn verdicts() {
        let ix = index();
        let v = |path: &str, found| verify(Some(&ix), path, found);
        assert_eq!(v("live", stamp(&ix, 3)), Ok(Verdict::Serve));
        assert_eq!(v("live", stamp(&ix, 4)), Ok(Verdict::Serve));
        assert!(v("live", stamp(&ix, 2)).is_err());
        assert!(v("live", stamp(&ix, 5)).is_err());
        assert!(v("live", None).is_err());
        assert!(v("live", Some(None)).is_err());
        let other = Some(Some(Stamp {
            store: [9; 16],
            generation: 3,
        }));
        assert!(v("live", other).is_err());
        assert_eq!(v("gone", stamp(&ix, 3)), Ok(Verdict::Absent));
        assert_eq!(v("gone", stamp(&ix, 1)), Ok(Verdict::Absent));
        assert_eq!(v("gone", stamp(&ix, 4)), Ok(Verdict::Serve));
        assert_eq!(v("gone", None), Ok(Verdict::Absent));
        assert_eq!(v("legacy", Some(None)), Ok(Verdict::Serve));
        assert_eq!(v("legacy", stamp(&ix, 1)), Ok(Verdict::Serve));
        assert_eq!(v("new", None), Ok(Verdict::Absent));
        assert_eq!(v("new", stamp(&ix, 1)), Ok(Verdict::Serve));
        assert!(v("new", stamp(&ix, 2)).is_err());
        assert!(v("new", Some(None)).is_err());
        assert_eq!(verify(None, "x", Some(None)), Ok(Verdict::Serve));
        assert!(verify(None, "x", stamp(&ix, 1)).is_err());
        assert_eq!(ix.next_stamp("live", None).generation, 4);
        assert_eq!(
            ix.next_stamp(
                "live",
                Some(Stamp {
                    store: ix.store,
                    generation: 4
                })
            )
            .generation,
            5
        );
        assert_eq!(ix.next_stamp("new", None).generation, 1);
    }
}
