//! The warning for a local store or `.env` file inside a git work tree that does not ignore it.
//!
//! Uses the real `git`: a missing git fails these tests with a message saying so. The tests of this binary
//! share one global log capture (the store logs from its worker threads), so each looks for its own paths.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use skm::{ExposeSecret, Loader, SecretString, Secrets};
use skm_runtime::gitcheck::not_ignored;

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// Warning lines about `path` being committable.
fn warnings_about(path: &Path) -> usize {
    let logs = String::from_utf8(LOGS.lock().unwrap().clone()).unwrap();
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
