//! The store's file operations: reading a path's file and checking it against the index, and writing under
//! the store's exclusive lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use zeroize::Zeroizing;

use super::format::{self, Blob, Entry, Stamp};
use super::index::{self, Index, Record, Verdict};
use super::key::{self, LocalKey};
use super::mark;
use super::names::{
    create_private_dir, file_name, open_lock, path_of, sync_dir, write_atomic, INDEX_FILE, LOCK_FILE, SECRETS_DIR,
    TEMP_PREFIX,
};
use super::versions::{select, to_blob, to_value};
use super::Fail;
use crate::backend::{
    DeleteMode, FetchError, FetchRequest, FetchResult, ListEntry, PutRequest, SecretPayload, VersionInfo, VersionPin,
};

pub(super) struct Inner {
    pub root: PathBuf,
    pub key_source: KeySource,
    pub key: Mutex<Option<LocalKey>>,
    /// Stale temporary files are removed once per store value, by its first write.
    pub swept: AtomicBool,
}

pub(super) enum KeySource {
    Given(LocalKey),
    File(PathBuf),
    /// The OS keyring's entry `local.key` of service `skm` (`SKM_LOCAL_KEY_SOURCE=keyring`).
    #[cfg(feature = "keyring")]
    Keyring,
    /// No key and no place for a key file; the reason is shown when a key is needed.
    Missing(String),
}

/// Where the keyring keeps the local store's key, as messages name it.
#[cfg(feature = "keyring")]
pub(super) fn keyring_entry() -> String {
    use crate::backend::keyring::{LOCAL_KEY_ENTRY, LOCAL_KEY_SERVICE};
    format!("the OS keyring's entry `{LOCAL_KEY_ENTRY}` of service `{LOCAL_KEY_SERVICE}`")
}

/// A keyring failure as the store reports it: a locked keyring is access denied, one that does not answer
/// (or is not there) unavailable.
#[cfg(feature = "keyring")]
fn keyring_fail(e: crate::backend::FetchError) -> Fail {
    let detail = format!("the local store's key (SKM_LOCAL_KEY_SOURCE=keyring): {}", e.detail);
    match e.kind {
        crate::backend::FailureKind::Forbidden => Fail::Forbidden(detail),
        crate::backend::FailureKind::Invalid => Fail::Invalid(detail),
        _ => Fail::Io(detail),
    }
}

/// What one operation knows of the store: the key and the index, read once, when first needed.
struct View {
    key: Option<LocalKey>,
    index: Option<Option<Index>>,
    /// Under the exclusive lock: what is read is final, and a mismatch is not retried.
    locked: bool,
    /// A reader that must not wait: a mismatch is not retried under the shared lock (which may wait for a
    /// writer) but marks the view `contended`.
    no_wait: bool,
    contended: bool,
    /// The index was checked against the key file's high-water mark ([`mark`]).
    marked: bool,
}

impl View {
    fn reader() -> Self {
        View {
            key: None,
            index: None,
            locked: false,
            no_wait: false,
            contended: false,
            marked: false,
        }
    }

    fn locked(key: LocalKey, index: Index) -> Self {
        View {
            key: Some(key),
            index: Some(Some(index)),
            locked: true,
            no_wait: false,
            contended: false,
            // `Inner::locked` checked the index against the mark.
            marked: true,
        }
    }

    /// Forgets the index (and its check against the mark), to read both again.
    fn forget_index(&mut self) {
        self.index = None;
        self.marked = false;
    }
}

/// A path's file: its stamp and entry, `None` when the path does not exist.
type Found = Option<(Option<Stamp>, Entry)>;

impl Inner {
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join(SECRETS_DIR)
    }

    fn warn_git(&self) {
        crate::gitcheck::warn_if_not_ignored_in_background(&self.root, "the local secret store");
    }

    fn cached_key(&self) -> Option<LocalKey> {
        self.key.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn remember(&self, key: LocalKey) -> LocalKey {
        *self.key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key.clone());
        key
    }

    /// The key to read with; never creates one.
    pub(super) fn read_key(&self) -> Result<LocalKey, Fail> {
        if let Some(k) = self.cached_key() {
            return Ok(k);
        }
        match &self.key_source {
            KeySource::Given(k) => Ok(self.remember(k.clone())),
            KeySource::File(p) => match key::read_key_file(p).map_err(Fail::Decryption)? {
                Some(k) => Ok(self.remember(k)),
                None => Err(Fail::Decryption(format!(
                    "no key to decrypt the local store: the key file {} does not exist; set SKM_LOCAL_KEY \
                     or restore the key file",
                    p.display()
                ))),
            },
            #[cfg(feature = "keyring")]
            KeySource::Keyring => match crate::backend::keyring::read_local_key().map_err(keyring_fail)? {
                Some(text) => LocalKey::parse(&text).map(|k| self.remember(k)).map_err(|_| {
                    Fail::Decryption(format!(
                        "{} does not hold a local store key (32 bytes as base64 or hex)",
                        keyring_entry()
                    ))
                }),
                None => Err(Fail::Decryption(format!(
                    "no key to decrypt the local store: {} does not exist (SKM_LOCAL_KEY_SOURCE=keyring); \
                     restore it, or set SKM_LOCAL_KEY",
                    keyring_entry()
                ))),
            },
            KeySource::Missing(why) => Err(Fail::Decryption(why.clone())),
        }
    }

    /// Whether finding the key may wait (the OS keyring's D-Bus call, or its unlock prompt): a read then goes
    /// to a blocking thread instead of reading in place.
    pub(super) fn key_may_wait(&self) -> bool {
        #[cfg(feature = "keyring")]
        if matches!(self.key_source, KeySource::Keyring) {
            return self.cached_key().is_none();
        }
        false
    }

    /// The key to write with; creates the key file if the store holds no secrets yet. Called under the lock.
    pub(super) fn write_key(&self) -> Result<LocalKey, Fail> {
        match (&self.key_source, self.read_key()) {
            (_, Ok(k)) => Ok(k),
            (KeySource::File(p), Err(e)) if !p.exists() => {
                if self.has_files()? {
                    return Err(e);
                }
                Ok(self.remember(key::create_key_file(p).map_err(Fail::Io)?))
            }
            // No entry yet (not a keyring that failed to answer): create it, as the key file.
            #[cfg(feature = "keyring")]
            (KeySource::Keyring, Err(e @ Fail::Decryption(_))) => {
                if self.has_files()? {
                    return Err(e);
                }
                use secrecy::ExposeSecret as _;
                let key = LocalKey::generate().map_err(|e| Fail::Io(e.to_string()))?;
                let text = Zeroizing::new(key.to_base64().expose_secret().to_string());
                let stored = crate::backend::keyring::create_local_key(text).map_err(keyring_fail)?;
                let key = LocalKey::parse(&stored).map_err(|_| {
                    Fail::Decryption(format!(
                        "{} does not hold a local store key (32 bytes as base64 or hex)",
                        keyring_entry()
                    ))
                })?;
                Ok(self.remember(key))
            }
            (_, Err(e)) => Err(e),
        }
    }

    fn has_files(&self) -> Result<bool, Fail> {
        Ok(!self.names()?.is_empty() || self.root.join(INDEX_FILE).exists())
    }

    /// The store file names and their paths; empty if the store does not exist.
    pub fn names(&self) -> Result<Vec<(String, String)>, Fail> {
        let dir = self.secrets_dir();
        let read = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Fail::io("list", &dir, e)),
        };
        let mut out = Vec::new();
        for item in read {
            let item = item.map_err(|e| Fail::io("list", &dir, e))?;
            let name = item.file_name();
            if let Some(path) = name.to_str().and_then(path_of) {
                out.push((name.to_string_lossy().into_owned(), path));
            }
        }
        Ok(out)
    }

    fn view_key(&self, view: &mut View) -> Result<LocalKey, Fail> {
        match &view.key {
            Some(k) => Ok(k.clone()),
            None => {
                let k = self.read_key()?;
                view.key = Some(k.clone());
                Ok(k)
            }
        }
    }

    fn view_index<'v>(&self, view: &'v mut View) -> Result<Option<&'v Index>, Fail> {
        if view.index.is_none() {
            let read = if self.root.join(INDEX_FILE).exists() {
                let key = self.view_key(view)?;
                index::read(&self.root, &key)?
            } else {
                None
            };
            view.index = Some(read);
        }
        Ok(view.index.as_ref().and_then(Option::as_ref))
    }

    /// The decrypted file of `path` and its stamp, `None` if it has no file; not checked against the index.
    fn open_file(&self, path: &str, view: &mut View) -> Result<Option<format::Opened>, Fail> {
        let file = self.secrets_dir().join(file_name(path)?);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Fail::io("read", &file, e)),
        };
        let key = self.view_key(view)?;
        format::open(path, &bytes, &key)
            .map(Some)
            .map_err(|why| Fail::Decryption(format!("cannot decrypt `{path}` in {}: {why}", file.display())))
    }

    /// Refuses a store whose index is behind the high-water mark beside the key file (a whole-directory
    /// rollback), once per view. With the key given directly there is no mark: the documented limitation.
    fn check_mark(&self, view: &mut View) -> Result<(), Fail> {
        if view.marked {
            return Ok(());
        }
        if let KeySource::File(key_file) = &self.key_source {
            self.view_index(view)?;
            if let (Some(Some(index)), Some(key)) = (&view.index, &view.key) {
                mark::check(key_file, &self.root, index, key)?;
            }
        }
        view.marked = true;
        Ok(())
    }

    /// Replaces the index and raises the high-water mark to it. Called under the exclusive lock.
    fn write_index(&self, index: &Index, key: &LocalKey) -> Result<(), Fail> {
        index::write(&self.root, index, key)?;
        if let KeySource::File(key_file) = &self.key_source {
            // The write itself is done: a mark that could not be raised only lags, which refuses nothing, so
            // it is a warning rather than a failed write.
            if let Err(e) = mark::advance(key_file, index, key) {
                tracing::warn!(target: "skm", store = %self.root.display(), error = %e.text(),
                    "cannot update the local store's high-water mark: a rollback of the whole store directory \
                     would go unnoticed");
            }
        }
        Ok(())
    }

    /// The file of `path`, checked against the store's index; `None` if the path does not exist.
    fn load_once(&self, path: &str, view: &mut View) -> Result<Found, Fail> {
        let opened = self.open_file(path, view)?;
        // The index, then the mark: a writer replaces them in the other order, so a reader never sees a
        // mark ahead of the index it read unless a write happened in between (then it reads again).
        self.check_mark(view)?;
        let index = self.view_index(view)?;
        let verdict = index::verify(index, path, opened.as_ref().map(|o| o.stamp)).map_err(|why| {
            Fail::Integrity(format!(
                "`{path}` in the local store {} fails its integrity check: {why}",
                self.root.display()
            ))
        })?;
        Ok(match (verdict, opened) {
            (Verdict::Serve, Some(o)) => Some((o.stamp, o.entry)),
            _ => None,
        })
    }

    /// As [`Inner::load_once`]; a reader, which takes no lock, may see a writer between its renames of the
    /// path's file and of the index, so a mismatch is read again under a shared lock before it counts.
    fn load(&self, path: &str, view: &mut View) -> Result<Found, Fail> {
        match self.load_once(path, view) {
            Err(Fail::Integrity(why)) if !view.locked && view.no_wait => {
                view.contended = true;
                Err(Fail::Integrity(why))
            }
            Err(Fail::Integrity(_)) if !view.locked => {
                let lock_path = self.root.join(LOCK_FILE);
                let Ok(file) = open_lock(&lock_path, false) else {
                    return self.load_once(path, view);
                };
                let lock = fd_lock::RwLock::new(file);
                let _guard = lock.read().map_err(|e| Fail::io("lock", &lock_path, e))?;
                view.forget_index();
                self.load_once(path, view)
            }
            other => other,
        }
    }

    fn fetch_one(&self, path: &str, view: &mut View) -> Result<Entry, Fail> {
        match self.load(path, view)? {
            Some((_, e)) if !e.deleted => Ok(e),
            _ => Err(Fail::NotFound(format!("no secret at `{path}` in the local store"))),
        }
    }

    pub fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        self.fetch_in(requests, &mut View::reader())
    }

    /// [`Inner::fetch`] that never waits on the store's lock: `None` when a read caught a writer between its
    /// renames, which only a read under the shared lock (which waits for the writer) can settle.
    pub fn fetch_without_waiting(&self, requests: &[FetchRequest]) -> Option<Vec<FetchResult>> {
        let mut view = View::reader();
        view.no_wait = true;
        let results = self.fetch_in(requests, &mut view);
        (!view.contended).then_some(results)
    }

    fn fetch_in(&self, requests: &[FetchRequest], view: &mut View) -> Vec<FetchResult> {
        // No git check here: a load never starts a process (writes and `skm check` / `doctor` warn instead).
        // Each path is decrypted once however many versions of it are asked for.
        let mut entries: HashMap<&str, Result<Entry, FetchError>> = HashMap::new();
        requests
            .iter()
            .map(|r| {
                let entry = entries
                    .entry(r.path.as_str())
                    .or_insert_with(|| self.fetch_one(&r.path, view).map_err(Fail::fetch));
                let entry = entry.as_ref().map_err(Clone::clone)?;
                let version = select(entry, &r.path, &r.version).map_err(Fail::fetch)?;
                Ok(SecretPayload::new(to_value(version).map_err(Fail::fetch)?).with_version(version.n.to_string()))
            })
            .collect()
    }

    /// Takes the store's exclusive lock (creating the store's directories), with the key to write with and
    /// the store's index, upgrading a store of the legacy format first.
    fn locked<T>(&self, work: impl FnOnce(LocalKey, Index) -> Result<T, Fail>) -> Result<T, Fail> {
        let dir = self.secrets_dir();
        let created = !self.root.exists();
        create_private_dir(&dir).map_err(|e| Fail::io("create", &dir, e))?;
        if created {
            sync_dir(self.root.parent().unwrap_or(Path::new("/"))).ok();
        }
        self.warn_git();
        let lock_path = self.root.join(LOCK_FILE);
        let lock_file = open_lock(&lock_path, true).map_err(|e| Fail::io("open", &lock_path, e))?;
        let mut lock = fd_lock::RwLock::new(lock_file);
        let _guard = lock.write().map_err(|e| Fail::io("lock", &lock_path, e))?;
        self.sweep(&dir);
        let key = self.write_key()?;
        let index = self.upgrade(&key)?;
        // A write onto a rolled-back store would raise its generation towards the mark and bless it.
        if let KeySource::File(key_file) = &self.key_source {
            mark::check(key_file, &self.root, &index, &key)?;
        }
        work(key, index)
    }

    /// The store's index, under the exclusive lock. A store without one (new, or of the legacy format) gets
    /// one; legacy files are recorded as generation 0, then rewritten in the current format as generation 1.
    /// Every step is atomic, and a process killed between them leaves a store this resumes from.
    fn upgrade(&self, key: &LocalKey) -> Result<Index, Fail> {
        let mut index = match index::read(&self.root, key)? {
            Some(ix) => ix,
            None => {
                let mut ix = Index::new()?;
                let mut view = View {
                    key: Some(key.clone()),
                    index: Some(None),
                    locked: true,
                    no_wait: false,
                    contended: false,
                    marked: true,
                };
                for (_, path) in self.names()? {
                    // Every file must open under the key and be of the legacy format: a current-format file
                    // with no index is refused by `load`, and an upgrade must not bless it.
                    if self.load(&path, &mut view)?.is_some() {
                        ix.paths.insert(
                            path,
                            Record {
                                generation: 0,
                                removed: false,
                            },
                        );
                    }
                }
                self.write_index(&ix, key)?;
                ix
            }
        };
        let legacy: Vec<String> = index
            .paths
            .iter()
            .filter(|(_, r)| r.generation == 0 && !r.removed)
            .map(|(p, _)| p.clone())
            .collect();
        if legacy.is_empty() {
            return Ok(index);
        }
        let mut view = View::locked(key.clone(), index.clone());
        for path in &legacy {
            let Some((_, entry)) = self.load(path, &mut view)? else {
                continue;
            };
            let stamp = Stamp {
                store: index.store,
                generation: 1,
            };
            let bytes = format::seal(path, &stamp, &entry, key).map_err(Fail::Io)?;
            write_atomic(&self.secrets_dir(), &file_name(path)?, &bytes)?;
            index.paths.insert(
                path.clone(),
                Record {
                    generation: 1,
                    removed: false,
                },
            );
        }
        self.write_index(&index, key)?;
        tracing::info!(
            store = %self.root.display(),
            paths = legacy.len(),
            "upgraded the local store to format 2 (store identity and per-path write counts)"
        );
        Ok(index)
    }

    /// Runs `change` on the entry of `path` under the store's exclusive lock and writes the result atomically:
    /// the path's file first, then the index that records its new generation.
    fn update<T>(&self, path: &str, change: impl FnOnce(Option<Entry>) -> Result<(Entry, T), Fail>) -> Result<T, Fail> {
        let name = file_name(path)?;
        self.locked(|key, mut index| {
            let mut view = View::locked(key.clone(), index.clone());
            let current = self.load(path, &mut view)?;
            let stamp = index.next_stamp(path, current.as_ref().and_then(|(s, _)| *s));
            let (entry, out) = change(current.map(|(_, e)| e))?;
            let bytes = format::seal(path, &stamp, &entry, &key).map_err(Fail::Io)?;
            write_atomic(&self.secrets_dir(), &name, &bytes)?;
            index.paths.insert(
                path.to_string(),
                Record {
                    generation: stamp.generation,
                    removed: false,
                },
            );
            self.write_index(&index, &key)?;
            Ok(out)
        })
    }

    /// Removes temporary files left by killed writers. Called under the lock, when no write is in flight.
    fn sweep(&self, dir: &Path) {
        if self.swept.swap(true, Ordering::SeqCst) {
            return;
        }
        for dir in [dir, &self.root] {
            let Ok(read) = std::fs::read_dir(dir) else { continue };
            for item in read.flatten() {
                if item.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    let _ = std::fs::remove_file(item.path());
                }
            }
        }
    }

    pub fn put(&self, request: &PutRequest) -> Result<u64, Fail> {
        self.update(&request.path, |current| {
            let mut entry = match current {
                Some(e) if request.create_only && !e.deleted => {
                    return Err(Fail::Exists(format!(
                        "`{}` already exists (version {}); not overwriting a create-only put",
                        request.path,
                        e.next - 1
                    )))
                }
                Some(e) => e,
                None => Entry::new(),
            };
            // Under the store's lock (`update`), so that no writer slips in between check and write.
            if let Some(expected) = &request.expected_version {
                let current = entry
                    .versions
                    .last()
                    .filter(|_| !entry.deleted)
                    .map(|v| v.n.to_string());
                if current.as_ref() != Some(expected) {
                    return Err(Fail::Conflict(format!(
                        "`{}`: check-and-set expected version {expected}, found {}",
                        request.path,
                        current.as_deref().unwrap_or("none")
                    )));
                }
            }
            if request.description.is_some() {
                entry.description.clone_from(&request.description);
            }
            if !request.tags.is_empty() {
                entry.tags.clone_from(&request.tags);
            }
            let (binary, blob) = to_blob(&request.value);
            let n = entry.push(binary, blob);
            Ok((entry, n))
        })
    }

    pub fn put_key(&self, path: &str, key: &str, value: &str) -> Result<u64, Fail> {
        self.update(path, |current| {
            let mut entry = current.unwrap_or_else(Entry::new);
            let mut map = serde_json::Map::new();
            if let Some(v) = entry.versions.last().filter(|_| !entry.deleted) {
                let parsed = (!v.binary)
                    .then(|| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&v.value.0).ok())
                    .flatten();
                map = parsed.ok_or_else(|| {
                    Fail::Invalid(format!(
                        "`{path}` is not a JSON object, so key `{key}` cannot be set in it"
                    ))
                })?;
            }
            map.insert(key.to_string(), serde_json::Value::String(value.to_string()));
            let text = Zeroizing::new(serde_json::Value::Object(map).to_string());
            let n = entry.push(false, Blob(Zeroizing::new(text.as_bytes().to_vec())));
            Ok((entry, n))
        })
    }

    pub fn rollback(&self, path: &str, version: u64) -> Result<u64, Fail> {
        self.update(path, |current| {
            let mut entry = current.ok_or_else(|| Fail::NotFound(format!("no secret at `{path}`")))?;
            let old = select(&entry, path, &VersionPin::Number(version))?;
            let (binary, blob) = (old.binary, old.value.clone());
            let n = entry.push(binary, blob);
            Ok((entry, n))
        })
    }

    pub fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), Fail> {
        let missing = || Fail::NotFound(format!("no secret at `{path}`"));
        if mode == DeleteMode::Force {
            let name = file_name(path)?;
            let dir = self.secrets_dir();
            if !dir.join(&name).exists() && !self.root.join(INDEX_FILE).exists() {
                return Err(missing());
            }
            return self.locked(|key, mut index| {
                let file = dir.join(&name);
                let live = index.paths.get(path).is_some_and(|r| !r.removed);
                if !file.exists() && !live {
                    return Err(missing());
                }
                // The index first: a process killed before the unlink leaves a file the index calls removed.
                // The file is not decrypted, so that a damaged one can still be deleted.
                let generation = index.next_stamp(path, None).generation;
                index.paths.insert(
                    path.to_string(),
                    Record {
                        generation,
                        removed: true,
                    },
                );
                self.write_index(&index, &key)?;
                match std::fs::remove_file(&file) {
                    Ok(()) => sync_dir(&dir).map_err(|e| Fail::io("sync", &dir, e)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Fail::io("remove", &file, e)),
                }
            });
        }
        self.update(path, |current| match current {
            Some(mut e) if !e.deleted => {
                e.deleted = true;
                Ok((e, ()))
            }
            _ => Err(missing()),
        })
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, Fail> {
        let mut view = View::reader();
        let mut paths: Vec<String> = self.names()?.into_iter().map(|(_, p)| p).collect();
        // Paths the index records but whose file is gone are listed as errors, not silently left out.
        if let Some(index) = self.view_index(&mut view)? {
            paths.extend(index.paths.iter().filter(|(_, r)| !r.removed).map(|(p, _)| p.clone()));
        }
        paths.sort();
        paths.dedup();
        let mut out = Vec::new();
        for path in paths {
            if !path.starts_with(prefix) {
                continue;
            }
            // Decrypt to skip soft-deleted paths; a file that fails to decrypt is an error, not a silent gap.
            if let Some((_, entry)) = self.load(&path, &mut view)?.filter(|(_, e)| !e.deleted) {
                out.push(ListEntry {
                    updated: entry.versions.last().map(format::Version::created),
                    path,
                });
            }
        }
        Ok(out)
    }

    pub fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, Fail> {
        let entry = self.fetch_one(path, &mut View::reader())?;
        let count = entry.versions.len();
        Ok(entry
            .versions
            .iter()
            .rev()
            .enumerate()
            .map(|(age, v)| VersionInfo {
                id: v.n.to_string(),
                stages: match age {
                    0 => vec!["current".into()],
                    1 if count > 1 => vec!["previous".into()],
                    _ => Vec::new(),
                },
                created: Some(v.created()),
            })
            .collect())
    }
}
