//! The commands in process, with a backend set in code (`Cli::backend`): the safety properties that need a
//! misbehaving backend, which no real server provides on demand.

use std::sync::Arc;

use async_trait::async_trait;
use skm::backend::{
    AdminBackend, AdminError, AdminErrorKind, Backend, DeleteMode, FetchRequest, FetchResult, ListEntry, MemoryBackend,
    PutRequest, SecretValue, VersionInfo,
};
use skm::cli::{exit, Cli, Io};
use skm::{SecretString, Secrets};

#[derive(Secrets)]
#[allow(dead_code)]
struct AppSecrets {
    #[secret(path = "app/jwt", key = "secret", env = "JWT_SECRET")]
    jwt: SecretString,
    #[secret(path = "app/db", key = "url", env = "DATABASE_URL")]
    db_url: SecretString,
}

/// How the wrapped backend misbehaves.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Writes succeed but store another value at `app/jwt` (a verification must catch it).
    Corrupt,
    /// Writes to `app/jwt` fail.
    Refuse,
}

#[derive(Debug)]
struct Faulty(MemoryBackend, Fault);

#[async_trait]
impl Backend for Faulty {
    fn name(&self) -> String {
        "faulty".into()
    }
    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        self.0.fetch(requests).await
    }
}

#[async_trait]
impl AdminBackend for Faulty {
    async fn put(&self, mut request: PutRequest) -> Result<String, AdminError> {
        if request.path == "app/jwt" {
            match self.1 {
                Fault::Corrupt => request.value = SecretValue::map([("secret", "something-else")]),
                Fault::Refuse => return Err(AdminError::new(AdminErrorKind::Forbidden, "app/jwt", "denied")),
            }
        }
        self.0.put(request).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        self.0.list(prefix).await
    }
    async fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
        self.0.delete(path, mode).await
    }
    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        self.0.versions(path).await
    }
}

async fn run(backend: Arc<dyn AdminBackend>, args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        stdin: &mut std::io::empty(),
        stdout: &mut out,
        stderr: &mut err,
        stdin_tty: false,
        stdout_tty: false,
        stderr_tty: false,
    };
    let mut argv = vec!["secrets"];
    argv.extend(args);
    let code = Cli::embedded::<AppSecrets>()
        .backend(backend)
        .execute(argv, &mut io)
        .await;
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

const DOTENV: &str = "JWT_SECRET=SENTINEL-jwt-1\nDATABASE_URL=SENTINEL-db-2\n";

async fn delete_source_with(fault: Fault) -> (u8, serde_json::Value, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    std::fs::write(&env, DOTENV).unwrap();
    let backend = Arc::new(Faulty(MemoryBackend::new(), fault));
    let from = env.display().to_string();
    let (code, out, err) = run(backend, &["migrate", "--from", &from, "--delete-source", "--json"]).await;
    assert!(!out.contains("SENTINEL") && !err.contains("SENTINEL"), "{out}\n{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    (code, report, std::fs::read_to_string(&env).unwrap(), dir)
}

#[tokio::test]
async fn a_failed_verification_keeps_the_dotenv() {
    let (code, report, dotenv, _dir) = delete_source_with(Fault::Corrupt).await;
    assert_eq!(code, exit::FAILED, "{report:#}");
    assert_eq!(report["verified"], 1, "{report:#}");
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{report:#}");
    assert!(
        failures[0].as_str().unwrap().contains("verify `app/jwt#secret`"),
        "{report:#}"
    );
    assert_eq!(report["source_rewritten"], false);
    assert_eq!(dotenv, DOTENV, "the .env changed although a value did not verify");
}

#[tokio::test]
async fn a_failed_write_keeps_the_dotenv() {
    let (code, report, dotenv, _dir) = delete_source_with(Fault::Refuse).await;
    assert_eq!(code, exit::FAILED, "{report:#}");
    assert_eq!(report["written"], 1, "{report:#}");
    assert!(
        report["failures"][0].as_str().unwrap().contains("access denied"),
        "{report:#}"
    );
    assert_eq!(dotenv, DOTENV);
    // The backup was made before anything was written, and is the original.
    let backup = report["backup"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(backup).unwrap(), DOTENV);
}

#[tokio::test]
async fn a_backend_set_in_code_is_used_without_detection() {
    let memory = MemoryBackend::new();
    memory.insert("app/jwt", SecretValue::map([("secret", "SENTINEL-x")]));
    let (code, out, _) = run(Arc::new(memory.clone()), &["get", "app/jwt", "--key", "secret"]).await;
    assert_eq!(code, exit::OK);
    assert!(out.contains("********") && !out.contains("SENTINEL-x"), "{out}");
    let (code, _, err) = run(Arc::new(memory.clone()), &["put", "app/jwt", "--key", "secret"]).await;
    // stdin is empty: refused rather than stored.
    assert_eq!(code, exit::USAGE, "{err}");
    assert!(err.contains("is empty: nothing written"), "{err}");
    assert_eq!(memory.versions("app/jwt").await.unwrap().len(), 1);
}
