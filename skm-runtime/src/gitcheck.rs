//! A warning for files that hold secrets inside a git work tree without being ignored.
//!
//! The local store's directory and a `.env` file are easy to commit by accident. Before using one, skm asks
//! git (`git check-ignore -q <path>`) whether the path is ignored and logs a `tracing` warning once per path
//! and process when it is not. Without git, or outside a work tree, nothing happens: the check is a
//! courtesy, never a requirement. The loader and the local store run the check on a background thread
//! ([`warn_if_not_ignored_in_background`]) so that startup never waits for `git`, and skip it outside any
//! work tree.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Whether `path` is inside a git work tree and not ignored by it.
///
/// `false` when git is not installed, when `path` is outside any work tree, when it is ignored, or when
/// git fails for any other reason. `path` need not exist.
///
/// # Example
/// ```
/// // A fresh temporary directory is not inside a work tree.
/// let dir = std::env::temp_dir().join("skm-gitcheck-doc");
/// assert!(!skm_runtime::gitcheck::not_ignored(&dir.join(".env")));
/// ```
pub fn not_ignored(path: &Path) -> bool {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Run git from the nearest existing ancestor: `-C` needs a directory that exists.
    let Some(dir) = absolute.ancestors().skip(1).find(|d| d.is_dir()) else {
        return false;
    };
    // Outside any work tree (a deployed service) there is nothing to ask: skip starting a process, which
    // would cost about a millisecond of startup.
    if !dir.ancestors().any(|d| d.join(".git").exists()) {
        return false;
    }
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["check-ignore", "-q", "--"])
        .arg(&absolute)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    // Exit 0: ignored; 1: not ignored; 128: not a work tree or another fatal error.
    matches!(status, Ok(s) if s.code() == Some(1))
}

/// Logs a warning (target `skm`) if `path` is inside a git work tree and not ignored; once per path and process.
///
/// `what` names the file for people, e.g. `"the .env file"` or `"the local secret store"`. Returns whether
/// it warned now. Runs `git` at most once per path, so it is cheap to call on every load.
pub fn warn_if_not_ignored(path: &Path, what: &str) -> bool {
    first_time(path) && warn_now(path, what)
}

/// Records `path` as checked; whether this is the first time in this process.
fn first_time(path: &Path) -> bool {
    static CHECKED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    CHECKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key)
}

fn warn_now(path: &Path, what: &str) -> bool {
    if !not_ignored(path) {
        return false;
    }
    tracing::warn!(target: "skm", path = %path.display(),
        "{what} {} is inside a git work tree and not ignored: add it to .gitignore so that it is never committed",
        path.display());
    true
}

static PENDING: Mutex<Vec<std::thread::JoinHandle<bool>>> = Mutex::new(Vec::new());

/// [`warn_if_not_ignored`] on a background thread, so that a service's startup never waits for `git`
/// (a process start costs about a millisecond). The warning goes to the `tracing` subscriber that was
/// current here. [`flush`] waits for pending checks.
pub fn warn_if_not_ignored_in_background(path: &Path, what: &'static str) {
    // Deduplicated here, so that a backend calling this on every fetch starts at most one thread per path.
    if !first_time(path) {
        return;
    }
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let path = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("skm-gitcheck".into())
        .spawn(move || tracing::dispatcher::with_default(&dispatch, || warn_now(&path, what)));
    if let Ok(handle) = spawned {
        PENDING.lock().unwrap_or_else(|e| e.into_inner()).push(handle);
    }
}

/// Waits for the checks started by [`warn_if_not_ignored_in_background`]; returns how many warned.
pub fn flush() -> usize {
    let pending: Vec<_> = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    pending
        .into_iter()
        .filter_map(|h| h.join().ok())
        .filter(|warned| *warned)
        .count()
}
