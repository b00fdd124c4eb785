//! A warning for files that hold secrets inside a git work tree without being ignored.
//!
//! The local store's directory and a `.env` file are easy to commit by accident. Before using one, skm asks
//! git (`git check-ignore -q <path>`) whether the path is ignored and logs a `tracing` warning once per path
//! and process when it is not. Without git, or outside a work tree, nothing happens: the check is a
//! courtesy, never a requirement.

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
    static CHECKED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let first = CHECKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key);
    if !first || !not_ignored(path) {
        return false;
    }
    tracing::warn!(target: "skm", path = %path.display(),
        "{what} {} is inside a git work tree and not ignored: add it to .gitignore so that it is never committed",
        path.display());
    true
}
