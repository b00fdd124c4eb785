//! Hot reload against the memory backend (the AWS and Vault variants live in their backend tests).

use std::time::Duration;

use skm::backend::{Backend, FetchError, MemoryBackend, SecretValue};
use skm::{ExposeSecret, Loader, SecretString, Secrets, WatchOptions};

#[derive(Secrets)]
struct Keys {
    #[secret(path = "auth/jwt", key = "secret")]
    jwt: SecretString,
    #[secret(path = "db", key = "password")]
    db: SecretString,
}

fn backend() -> MemoryBackend {
    let b = MemoryBackend::new();
    b.insert("auth/jwt", SecretValue::map([("secret", "jwt-v1")]));
    b.insert("db", SecretValue::map([("password", "db-v1")]));
    b
}

fn loader(b: &MemoryBackend) -> Loader {
    Loader::new()
        .backend(b.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

#[tokio::test]
async fn a_new_version_is_seen_and_unchanged_paths_are_not_refetched() {
    let b = backend();
    let mut watch = loader(&b)
        .watch::<Keys>(WatchOptions::ttl(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(watch.get().unwrap().jwt.expose_secret(), "jwt-v1");
    assert_eq!(b.fetch_calls(), 1);

    // An unchanged tick only asks for versions.
    watch.request_refresh();
    watch.wait_ticks(1).await;
    assert_eq!(b.fetch_calls(), 1, "no refetch when versions are unchanged");
    assert_eq!(b.version_probes(), 1);

    b.insert("auth/jwt", SecretValue::map([("secret", "jwt-v2")]));
    watch.request_refresh();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(watch.get().unwrap().jwt.expose_secret(), "jwt-v2");
    assert_eq!(watch.with(|k| k.db.expose_secret().to_string()), "db-v1");
    assert_eq!(b.fetched_paths(), 2 + 1, "only the changed path was refetched");
    assert_eq!(watch.provenance().get("jwt").unwrap().version.as_deref(), Some("2"));
    let stats = watch.stats();
    assert_eq!((stats.ticks, stats.changes, stats.failures), (2, 1, 0));
}

#[tokio::test]
async fn the_ttl_drives_refreshes() {
    let b = backend();
    let mut watch = loader(&b)
        .watch::<Keys>(WatchOptions::ttl(Duration::from_millis(50)))
        .await
        .unwrap();
    b.insert("db", SecretValue::map([("password", "db-v2")]));
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(watch.get().unwrap().db.expose_secret(), "db-v2");
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_values_then_goes_stale() {
    let b = backend();
    let options = WatchOptions::ttl(Duration::from_secs(3600)).max_staleness(Duration::from_millis(200));
    let watch = loader(&b).watch::<Keys>(options).await.unwrap();
    b.fail_all(FetchError::unavailable("connection refused"));
    watch.request_refresh();
    watch.wait_ticks(1).await;
    assert_eq!(watch.get().unwrap().jwt.expose_secret(), "jwt-v1", "old values kept");
    let stats = watch.stats();
    assert_eq!(stats.failures, 1);
    assert!(stats.last_error.unwrap().contains("connection refused"));

    tokio::time::sleep(Duration::from_millis(250)).await;
    let stale = watch.get().err().expect("past max staleness");
    assert!(stale.to_string().contains("connection refused"), "{stale}");
    assert_eq!(watch.latest().jwt.expose_secret(), "jwt-v1");

    b.clear_failures();
    watch.request_refresh();
    watch.wait_ticks(2).await;
    assert!(watch.get().is_ok(), "a successful refresh makes it fresh again");
}

#[tokio::test]
async fn dropping_the_handle_stops_the_task() {
    let b = backend();
    let watch = loader(&b)
        .watch::<Keys>(WatchOptions::ttl(Duration::from_millis(10)))
        .await
        .unwrap();
    watch.wait_ticks(2).await;
    drop(watch);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let probes = b.version_probes();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.version_probes(), probes, "no refresh after drop");
}

#[tokio::test]
async fn audit_events_name_fetches_and_refreshes_but_never_values() {
    const SENTINEL: &str = "SENTINEL-audit-4d2a";
    let (captured, _guard) = skm_testing::logs::capture();

    let b = MemoryBackend::new();
    b.insert("auth/jwt", SecretValue::map([("secret", SENTINEL)]));
    b.insert("db", SecretValue::map([("password", SENTINEL)]));
    let watch = loader(&b)
        .watch::<Keys>(WatchOptions::ttl(Duration::from_secs(3600)))
        .await
        .unwrap();
    b.insert("db", SecretValue::map([("password", format!("{SENTINEL}-2"))]));
    watch.request_refresh();
    watch.wait_ticks(1).await;

    let logs = captured.text();
    let audit: Vec<&str> = logs.lines().filter(|l| l.contains("skm::audit")).collect();
    let fetch = audit
        .iter()
        .find(|l| l.contains("fetch") && l.contains("path=auth/jwt"))
        .expect(&logs);
    for field in ["backend=memory", "outcome=found", "version=1", "latency_ms="] {
        assert!(fetch.contains(field), "{field} missing in {fetch}");
    }
    let resolve = audit
        .iter()
        .find(|l| l.contains("resolve") && l.contains("field=jwt"))
        .expect(&logs);
    for field in ["path=auth/jwt", "key=secret", "outcome=found", "source=memory"] {
        assert!(resolve.contains(field), "{field} missing in {resolve}");
    }
    assert!(
        audit
            .iter()
            .any(|l| l.contains("refresh") && l.contains("changed=true")),
        "{logs}"
    );
    assert!(!logs.contains(SENTINEL), "a value reached the logs:\n{logs}");
}

/// A backend whose fetches hang while `slow` is set; version probes stay fast.
#[derive(Debug, Clone)]
struct Hanging {
    inner: MemoryBackend,
    slow: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl Backend for Hanging {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn fetch(&self, requests: &[skm::backend::FetchRequest]) -> Vec<skm::backend::FetchResult> {
        if self.slow.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        self.inner.fetch(requests).await
    }

    async fn current_versions(
        &self,
        requests: &[skm::backend::FetchRequest],
    ) -> Option<Vec<Result<String, FetchError>>> {
        self.inner.current_versions(requests).await
    }
}

/// Issue 12 and 17: a refresh runs the load's pipeline: it respects `Loader::deadline` and writes audit events.
#[tokio::test]
async fn a_refresh_respects_the_deadline_and_writes_audit_events() {
    let (captured, _guard) = skm_testing::logs::capture();
    let backend = Hanging {
        inner: backend(),
        slow: Default::default(),
    };
    let watch = Loader::new()
        .backend(backend.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .deadline(Duration::from_millis(200))
        .watch::<Keys>(WatchOptions::ttl(Duration::from_secs(3600)))
        .await
        .unwrap();
    backend.inner.insert("db", SecretValue::map([("password", "db-v2")]));
    backend.slow.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    watch.request_refresh();
    tokio::time::timeout(Duration::from_secs(5), watch.wait_ticks(1))
        .await
        .expect("the refresh ends at the deadline, not when the backend answers");
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = watch.stats();
    assert_eq!(stats.failures, 1, "{stats:?}");
    assert!(
        stats.last_error.as_deref().unwrap_or_default().contains("deadline"),
        "{stats:?}"
    );
    assert_eq!(watch.latest().db.expose_secret(), "db-v1", "the last good values stay");
    let logs = captured.text();
    assert!(
        logs.lines()
            .any(|l| l.contains("skm::audit") && l.contains("path=db") && l.contains("outcome=backend unavailable")),
        "the timed-out refresh fetch is audited:\n{logs}"
    );
}

// Only loaded to be refused: the fields are never read.
#[allow(dead_code)]
#[derive(Secrets)]
struct Inner {
    #[secret(env = "DUP_VAR")]
    b: SecretString,
}

#[allow(dead_code)]
#[derive(Secrets)]
struct Duplicate {
    #[secret(env = "DUP_VAR")]
    a: SecretString,
    #[secret(flatten)]
    inner: Inner,
}

/// Issue 12: `watch` rejects a duplicate declaration exactly like `load`.
#[tokio::test]
async fn watch_rejects_a_duplicate_declaration_like_load() {
    let loader = loader(&backend()).env_vars([("DUP_VAR", "x")]);
    let load = loader.load::<Duplicate>().await.err().expect("load rejects it");
    let watch = loader
        .watch::<Duplicate>(WatchOptions::default())
        .await
        .expect_err("watch rejects it");
    assert!(matches!(watch, skm::Error::Config(_)), "{watch:?}");
    assert_eq!(watch.to_string(), load.to_string());
    assert!(load.to_string().contains("both read env var DUP_VAR"), "{load}");
}
