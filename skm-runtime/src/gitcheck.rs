//! Whether files that hold secrets are kept out of git: for `skm check` and `skm doctor`.
//!
//! The local store's directory and a `.env` file are easy to commit by accident. [`status`] asks git
//! whether a path is tracked or ignored. Without git, or outside a work tree, there is nothing to say: the
//! check is a courtesy, never a requirement.
//!
//! # Git runs locked down
//! A work tree's own configuration can run programs (`core.fsmonitor`, hooks), and git inherits the
//! environment, tokens included. So every git process started here ([`git_command`]) gets a cleared
//! environment (only `PATH`, to find git, and variables that switch off the system and global
//! configuration, optional locks and prompts) and `-c core.fsmonitor=false -c core.hooksPath=/dev/null`.
//! The user's global excludes file is therefore not read: a path ignored only there is reported as not
//! ignored, which is right for a file every clone of the repository must keep out of git.
//!
//! A load never runs git; the tool does, when asked.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// A `git` command with a cleared environment and the configuration that runs programs switched off; the
/// caller adds the subcommand and its arguments.
///
/// `-C dir` is set, so `dir` must exist. Only `PATH` is passed on from this process.
///
/// # Example
/// ```no_run
/// let out = skm_runtime::gitcheck::git_command(std::path::Path::new("."))
///     .args(["rev-parse", "--is-inside-work-tree"])
///     .output();
/// ```
pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs([
        // Neither /etc/gitconfig nor ~/.gitconfig: only the repository's own settings, overridden below.
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        // Read-only: never rewrite the index as a side effect.
        ("GIT_OPTIONAL_LOCKS", "0"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("LC_ALL", "C"),
    ]);
    cmd.arg("-C")
        .arg(dir)
        .args(["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null"])
        .stdin(Stdio::null());
    cmd
}

/// What git says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GitStatus {
    /// git is not installed.
    NoGit,
    /// The path is not inside a git work tree.
    Outside,
    /// git tracks the path (a committed secret file).
    Tracked,
    /// git ignores the path.
    Ignored,
    /// Inside a work tree, neither tracked nor ignored: the next `git add .` commits it.
    NotIgnored,
    /// git failed for another reason (an unsafe repository owner, a broken repository).
    Unknown,
}

/// Asks git whether `path` is tracked or ignored. `path` need not exist.
///
/// # Example
/// ```
/// use skm_runtime::gitcheck::{status, GitStatus};
/// // A fresh temporary directory is not inside a work tree (or git is missing).
/// let dir = std::env::temp_dir().join("skm-gitcheck-doc");
/// assert!(matches!(status(&dir.join(".env")), GitStatus::Outside | GitStatus::NoGit));
/// ```
pub fn status(path: &Path) -> GitStatus {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Run git from the nearest existing ancestor: `-C` needs a directory that exists.
    let Some(dir) = absolute.ancestors().skip(1).find(|d| d.is_dir()) else {
        return GitStatus::Outside;
    };
    // Outside any work tree there is nothing to ask: skip starting a process.
    if !dir.ancestors().any(|d| d.join(".git").exists()) {
        return GitStatus::Outside;
    }
    let quiet = |cmd: &mut Command| cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
    match quiet(git_command(dir).args(["rev-parse", "--is-inside-work-tree"])) {
        Err(_) => return GitStatus::NoGit,
        Ok(s) if !s.success() => return GitStatus::Outside,
        Ok(_) => {}
    }
    let tracked = quiet(
        git_command(dir)
            .args(["ls-files", "--error-unmatch", "--"])
            .arg(&absolute),
    );
    if tracked.is_ok_and(|s| s.success()) {
        return GitStatus::Tracked;
    }
    // Exit 0: ignored; 1: not ignored; 128: not a work tree or another fatal error.
    match quiet(git_command(dir).args(["check-ignore", "-q", "--"]).arg(&absolute)).map(|s| s.code()) {
        Ok(Some(0)) => GitStatus::Ignored,
        Ok(Some(1)) => GitStatus::NotIgnored,
        _ => GitStatus::Unknown,
    }
}

/// Whether `path` is inside a git work tree and neither ignored nor known to git otherwise.
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
    status(path) == GitStatus::NotIgnored
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
