//! Rolling back the *whole* local store directory (index and files together) to an earlier copy.
//!
//! With the key in a key file, the store keeps a high-water mark beside it (`<key file>.hwm`), out of reach of
//! whoever can only write the project: a restored older copy of `.skm/` is an integrity error until the mark is
//! deleted on purpose. With the key given directly (`SKM_LOCAL_KEY`), nothing outside the directory remembers
//! its state: the documented limitation, asserted here so that a change of behaviour is noticed.
#![cfg(feature = "local")]

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use skm_runtime::backend::local::{LocalKey, LocalStore};
use skm_runtime::backend::{AdminBackend, Backend, FailureKind, FetchRequest, FetchResult, PutRequest, SecretValue};

const V1: &str = "SENTINEL-rollback-v1-6c0f";
const V2: &str = "SENTINEL-rollback-v2-e41b";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}

/// Replaces the directory `root` with the copy at `snapshot`, as `rm -r .skm && cp -r backup .skm` would.
fn restore(snapshot: &Path, root: &Path) {
    std::fs::remove_dir_all(root).unwrap();
    copy_dir(snapshot, root);
}

async fn put(store: &LocalStore, path: &str, value: &str) {
    store
        .put(PutRequest::new(path, SecretValue::text(value)))
        .await
        .unwrap_or_else(|e| panic!("put {path}: {e}"));
}

async fn get(store: &LocalStore, path: &str) -> FetchResult {
    store.fetch(&[FetchRequest::current(path)]).await.remove(0)
}

fn text(r: &FetchResult) -> String {
    match &r.as_ref().unwrap_or_else(|e| panic!("expected a value, got {e}")).value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

fn mark_of(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".hwm");
    PathBuf::from(name)
}

#[tokio::test]
async fn a_restored_older_copy_of_the_whole_store_is_an_integrity_error_with_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project").join(".skm");
    let key_file = dir.path().join("config").join("skm").join("local.key");
    let store = || LocalStore::open(&root).key_file(&key_file);

    put(&store(), "db", V1).await;
    let snapshot = dir.path().join("backup");
    copy_dir(&root, &snapshot);
    put(&store(), "db", V2).await;
    assert_eq!(text(&get(&store(), "db").await), V2);
    let mark = mark_of(&key_file);
    assert!(
        mark.is_file(),
        "the write keeps a high-water mark at {}",
        mark.display()
    );

    restore(&snapshot, &root);
    for (what, s) in [("the same store value", store()), ("a fresh store value", store())] {
        let e = get(&s, "db")
            .await
            .expect_err(&format!("{what}: a rolled-back store served an old value"));
        assert_eq!(e.kind, FailureKind::Decryption, "{what}: {e}");
        let message = e.to_string();
        assert!(message.contains("rolled back"), "{what}: says what happened: {message}");
        assert!(
            message.contains(&mark.display().to_string()),
            "{what}: names the mark file to delete to accept a restored backup: {message}"
        );
        assert!(!message.contains(V1) && !message.contains(V2), "{what}: {message}");
    }
    // A write does not build on the old state either (it would bless it by raising its generation).
    let refused = store()
        .put(PutRequest::new("db", SecretValue::text("after")))
        .await
        .expect_err("a write onto a rolled-back store");
    assert!(refused.to_string().contains("rolled back"), "{refused}");
    assert!(store().list("").await.is_err(), "list hides the rollback");

    // Deleting the mark accepts the restored backup deliberately; the next write marks the new state.
    std::fs::remove_file(&mark).unwrap();
    assert_eq!(text(&get(&store(), "db").await), V1);
    put(&store(), "db", "third").await;
    assert!(mark.is_file());
    restore(&snapshot, &root);
    assert!(
        get(&store(), "db").await.is_err(),
        "the mark protects again after the next write"
    );
}

#[tokio::test]
async fn with_the_key_given_directly_a_whole_store_rollback_stays_undetected() {
    // The documented limitation: nothing outside the directory remembers its state.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let key = LocalKey::generate().unwrap();
    let store = || LocalStore::open(&root).key(key.clone());
    put(&store(), "db", V1).await;
    let snapshot = dir.path().join("backup");
    copy_dir(&root, &snapshot);
    put(&store(), "db", V2).await;
    restore(&snapshot, &root);
    assert_eq!(text(&get(&store(), "db").await), V1);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".hwm")), "{names:?}");
}

#[tokio::test]
async fn a_mark_that_does_not_authenticate_is_not_trusted_and_a_write_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let key_file = dir.path().join("local.key");
    let store = || LocalStore::open(&root).key_file(&key_file);
    put(&store(), "db", V1).await;
    let mark = mark_of(&key_file);
    let mut bytes = std::fs::read(&mark).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&mark, &bytes).unwrap();
    // A damaged mark (or one of a key the file no longer holds) cannot say anything about this store.
    assert_eq!(text(&get(&store(), "db").await), V1);
    put(&store(), "db", V2).await;
    let snapshot = dir.path().join("backup");
    copy_dir(&root, &snapshot);
    put(&store(), "db", "third").await;
    restore(&snapshot, &root);
    assert!(
        get(&store(), "db").await.is_err(),
        "the replaced mark protects the store"
    );
}

/// Two stores share the default key file (every project of a user does): their writes, at the same time,
/// must not lose each other's marks. Each store snapshots itself before its last write; both snapshots must
/// then be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_stores_sharing_a_key_file_keep_every_mark() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("local.key");
    // Create the key first, so that the two stores do not race to create it.
    put(
        &LocalStore::open(dir.path().join("first")).key_file(&key_file),
        "x",
        "x",
    )
    .await;
    let mut tasks = Vec::new();
    for name in ["a", "b", "c"] {
        let root = dir.path().join(name).join(".skm");
        let snapshot = dir.path().join(format!("{name}-backup"));
        let key_file = key_file.clone();
        tasks.push(tokio::spawn(async move {
            let store = LocalStore::open(&root).key_file(&key_file);
            for i in 0..30 {
                if i == 29 {
                    copy_dir(&root, &snapshot);
                }
                put(&store, &format!("p{}", i % 3), &format!("value-{i}")).await;
            }
            (root, snapshot)
        }));
    }
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap());
    }
    for (root, snapshot) in stores {
        restore(&snapshot, &root);
        let store = LocalStore::open(&root).key_file(&key_file);
        let r = get(&store, "p1").await;
        assert!(
            r.is_err(),
            "{}: a rollback by one write went unnoticed: the mark lost an update",
            root.display()
        );
    }
}
