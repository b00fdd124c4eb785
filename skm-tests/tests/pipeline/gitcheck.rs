//! The warning for a local store or `.env` file inside a git work tree that does not ignore it.
//!
//! Uses the real `git`: a missing git fails these tests with a message saying so. The tests of this binary
//! share one global log capture (the store logs from its worker threads), so each looks for its own paths.

use std::path::{Path, PathBuf};
use std::process::Command;

use skm::{ExposeSecret, Loader, SecretString, Secrets};
use skm_runtime::gitcheck::not_ignored;

use crate::support::logs as capture_logs;

/// Warning lines about `path` being committable.
fn warnings_about(path: &Path) -> usize {
    let logs = capture_logs().text();
    let needle = path.display().to_string();
    logs.lines()
        .filter(|l| l.contains("WARN") && l.contains("not ignored") && l.contains(&needle))
        .count()
}

/// A new empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "skm-gitcheck-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh git repository with `ignore` as its .gitignore.
fn repo(ignore: &str) -> TempDir {
    let dir = TempDir::new();
    let status = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&dir.0)
        .status()
        .unwrap_or_else(|e| panic!("these tests need git on PATH (apt-get install git): {e}"));
    assert!(status.success(), "git init failed");
    std::fs::write(dir.0.join(".gitignore"), ignore).unwrap();
    dir
}

#[test]
fn not_ignored_asks_git() {
    let plain = repo("");
    let ignoring = repo(".skm/\n.env\n");
    let outside = TempDir::new();
    assert!(not_ignored(&plain.0.join(".skm")));
    assert!(not_ignored(&plain.0.join(".env")));
    std::fs::create_dir(ignoring.0.join(".skm")).unwrap();
    assert!(!not_ignored(&ignoring.0.join(".skm")));
    assert!(!not_ignored(&ignoring.0.join(".env")));
    assert!(!not_ignored(&outside.0.join(".env")), "outside a work tree");
}

#[cfg(feature = "local")]
#[tokio::test]
async fn a_store_in_a_work_tree_warns_once_unless_ignored() {
    use skm::backend::local::{LocalKey, LocalStore};
    use skm::backend::{AdminBackend, Backend, FetchRequest, PutRequest, SecretValue};
    capture_logs();
    let plain = repo("");
    let ignoring = repo(".skm/\n");
    for dir in [&plain.0, &ignoring.0] {
        let store = LocalStore::open(dir.join(".skm")).key(LocalKey::from_bytes([1; 32]));
        store.put(PutRequest::new("a", SecretValue::text("x"))).await.unwrap();
        store.put(PutRequest::new("b", SecretValue::text("y"))).await.unwrap();
        assert!(store.fetch(&[FetchRequest::current("a")]).await[0].is_ok());
    }
    skm_runtime::gitcheck::flush();
    assert_eq!(
        warnings_about(&plain.0.join(".skm")),
        1,
        "one warning for a store git would commit"
    );
    assert_eq!(
        warnings_about(&ignoring.0.join(".skm")),
        0,
        "no warning for an ignored store"
    );
}

#[derive(Secrets)]
struct Conf {
    #[secret(env = "TOKEN")]
    token: SecretString,
}

/// A load never runs git (issue 17 #9): the `.env` warning is `skm check`'s and `skm doctor`'s job.
#[tokio::test]
async fn a_load_never_runs_git_for_a_dotenv_in_a_work_tree() {
    capture_logs();
    let plain = repo("");
    let ignoring = repo(".env\n");
    for dir in [&plain.0, &ignoring.0] {
        std::fs::write(dir.join(".env"), "TOKEN=from-dotenv\n").unwrap();
        let loader = Loader::new()
            .no_backend()
            .dotenv(dir.join(".env"))
            .env_vars(Vec::<(String, String)>::new());
        for _ in 0..2 {
            let conf: Conf = loader.load().await.unwrap();
            assert_eq!(conf.token.expose_secret(), "from-dotenv");
        }
    }
    skm_runtime::gitcheck::flush();
    assert_eq!(warnings_about(&plain.0.join(".env")), 0, "a load does not ask git");
    assert_eq!(warnings_about(&ignoring.0.join(".env")), 0);
}

/// Runs git as a test fixture (with the full environment); panics if it fails.
fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git").args(args).current_dir(dir).status().unwrap();
    assert!(status.success(), "git {args:?}");
}

/// A work tree whose configuration runs a program (issue 17 #9): `core.fsmonitor` and a hook that write a
/// marker file. Asking git about ignores must run neither.
#[test]
fn a_work_trees_fsmonitor_and_hooks_never_run() {
    use skm_runtime::gitcheck::{status, GitStatus};
    let dir = repo("");
    let marker = dir.0.join("MARKER");
    let script = dir.0.join("fsmonitor.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntouch '{}'\nexit 0\n", marker.display())).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(dir.0.join("tracked.txt"), "x").unwrap();
    git(&dir.0, &["add", "tracked.txt"]);
    git(&dir.0, &["config", "core.fsmonitor", &script.display().to_string()]);
    git(&dir.0, &["config", "core.hooksPath", &dir.0.display().to_string()]);
    std::fs::write(dir.0.join(".env"), "A=1\n").unwrap();

    assert!(not_ignored(&dir.0.join(".env")));
    assert_eq!(status(&dir.0.join(".env")), GitStatus::NotIgnored);
    assert_eq!(status(&dir.0.join("tracked.txt")), GitStatus::Tracked);
    assert!(
        !marker.exists(),
        "asking git about ignores ran the work tree's core.fsmonitor"
    );

    // The positive control: plain git does run it, so the check above can fail.
    let _ = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(&dir.0)
        .output();
    assert!(marker.exists(), "the fixture's fsmonitor did not run under plain git");
}

/// Tokens and keys in this process's environment never reach git's (issue 17 #9).
#[test]
fn git_gets_a_cleared_environment() {
    const NAME: &str = "SKM_GITCHECK_TEST_TOKEN";
    // A name no other test reads, so setting it here races with nothing.
    std::env::set_var(NAME, "SENTINEL-token-9f9f");
    let dir = repo("");
    let dump = |cmd: &mut Command| {
        let out = cmd.args(["-c", "alias.skmenv=!env", "skmenv"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let seen = dump(&mut skm_runtime::gitcheck::git_command(&dir.0));
    assert!(!seen.contains("SENTINEL-token-9f9f"), "the token reached git:\n{seen}");
    assert!(!seen.lines().any(|l| l.starts_with("HOME=")), "{seen}");
    assert!(seen.contains("GIT_CONFIG_NOSYSTEM=1"), "{seen}");
    // The positive control: a plain git inherits it.
    let plain = dump(Command::new("git").current_dir(&dir.0));
    assert!(plain.contains("SENTINEL-token-9f9f"), "{plain}");
}
