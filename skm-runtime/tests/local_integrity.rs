//! The local store's defence against an attacker who can write the store directory but does not hold the key:
//! an old copy of a path's file, a file of another store (encrypted with the same key), files swapped
//! between paths, or a removed file are authentication errors that name the path, never a value.
//! Stores written by the previous format still open, and are upgraded by the next write.
#![cfg(feature = "local")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::ExposeSecret;
use skm_runtime::backend::local::{LocalKey, LocalStore};
use skm_runtime::backend::{
    AdminBackend, AdminErrorKind, Backend, DeleteMode, FailureKind, FetchRequest, FetchResult, PutRequest, SecretValue,
    VersionPin,
};

const OLD: &str = "SENTINEL-integrity-old-5d1e";
const NEW: &str = "SENTINEL-integrity-new-9a2c";
const OTHER: &str = "SENTINEL-integrity-other-store-33b0";
/// The key of `tests/fixtures/local-format1` (the same as `tests/local.rs`).
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn key() -> LocalKey {
    LocalKey::parse(KEY_HEX).unwrap()
}

fn store_at(root: &Path) -> LocalStore {
    LocalStore::open(root).key(key())
}

fn file_of(root: &Path, name: &str) -> PathBuf {
    root.join("secrets").join(name)
}

async fn get(store: &LocalStore, path: &str, pin: VersionPin) -> FetchResult {
    store
        .fetch(&[FetchRequest {
            path: path.into(),
            version: pin,
        }])
        .await
        .remove(0)
}

fn text(r: &FetchResult) -> String {
    match &r.as_ref().unwrap_or_else(|e| panic!("expected a value, got {e}")).value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

async fn put(store: &LocalStore, path: &str, value: &str) -> String {
    store
        .put(PutRequest::new(path, SecretValue::text(value)))
        .await
        .unwrap_or_else(|e| panic!("put {path}: {e}"))
}

/// Every way of reading `path` fails as an authentication (decryption) error that names the path and shows
/// none of `secrets`; a write refuses to build on it; `list` does not hide it.
async fn assert_rejected(store: &LocalStore, path: &str, secrets: &[&str], what: &str) {
    for pin in [VersionPin::Current, VersionPin::Previous, VersionPin::Number(1)] {
        let r = get(store, path, pin.clone()).await;
        let e = r
            .as_ref()
            .err()
            .unwrap_or_else(|| panic!("{what}: {pin} of `{path}` read a value"));
        assert_eq!(e.kind, FailureKind::Decryption, "{what}: {e}");
        assert!(
            e.detail.contains(&format!("`{path}`")),
            "{what}: the error does not name the path: {e}"
        );
        for s in secrets {
            assert!(!e.to_string().contains(s), "{what}: the error shows a value: {e}");
        }
    }
    let v = store
        .versions(path)
        .await
        .expect_err(&format!("{what}: versions read it"));
    let l = store.list("").await.expect_err(&format!("{what}: list hid it"));
    let w = store
        .put(PutRequest::new(path, SecretValue::text("after")))
        .await
        .expect_err(&format!("{what}: a put built on it"));
    let k = store
        .put_key(path, "k", "after")
        .await
        .expect_err(&format!("{what}: put_key built on it"));
    let b = store
        .rollback(path, 1)
        .await
        .expect_err(&format!("{what}: rollback built on it"));
    for e in [&v, &l, &w, &k, &b] {
        assert_eq!(e.kind, AdminErrorKind::Other, "{what}: {e}");
        for s in secrets {
            assert!(!e.to_string().contains(s), "{what}: the error shows a value: {e}");
        }
    }
    assert!(w.to_string().contains(&format!("`{path}`")), "{what}: {w}");
}

#[tokio::test]
async fn an_old_copy_of_one_paths_file_is_an_authentication_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let store = store_at(&root);
    put(&store, "db", OLD).await;
    put(&store, "other", "unchanged").await;
    let file = file_of(&root, "db.skm");
    let old = std::fs::read(&file).unwrap();
    put(&store, "db", NEW).await;
    let current = std::fs::read(&file).unwrap();

    // A write of another path in between must not make the old copy acceptable again.
    put(&store, "other", "changed").await;
    std::fs::write(&file, &old).unwrap();
    assert_rejected(&store, "db", &[OLD, NEW], "db rolled back to version 1").await;
    // A fresh store value (no cached state) on the same directory sees it too.
    assert_rejected(&store_at(&root), "db", &[OLD, NEW], "db rolled back, new store value").await;
    // The other path still reads.
    assert_eq!(text(&get(&store, "other", VersionPin::Current).await), "changed");

    // The current file put back: everything reads again, and writes continue.
    std::fs::write(&file, &current).unwrap();
    assert_eq!(text(&get(&store, "db", VersionPin::Current).await), NEW);
    assert_eq!(text(&get(&store, "db", VersionPin::Previous).await), OLD);
    assert_eq!(put(&store, "db", "third").await, "3");

    // A soft delete is a write too: the file from before it cannot bring the path back.
    let before_delete = std::fs::read(&file).unwrap();
    store.delete("db", DeleteMode::Default).await.unwrap();
    std::fs::write(&file, &before_delete).unwrap();
    assert_rejected(&store, "db", &[OLD, NEW], "db undeleted by an old copy").await;
}

#[tokio::test]
async fn a_file_of_another_store_with_the_same_key_is_an_authentication_error() {
    let dir = tempfile::tempdir().unwrap();
    let (a_root, b_root) = (dir.path().join("a"), dir.path().join("b"));
    let (a, b) = (store_at(&a_root), store_at(&b_root));
    put(&a, "db", NEW).await;
    put(&a, "keep", "kept").await;
    put(&b, "db", OTHER).await;
    put(&b, "fresh", OTHER).await;

    // Same path, same key, same version number: only the store tells them apart.
    std::fs::copy(file_of(&b_root, "db.skm"), file_of(&a_root, "db.skm")).unwrap();
    assert_rejected(&a, "db", &[NEW, OTHER], "db copied from store b").await;

    // A path store a never had.
    std::fs::copy(file_of(&b_root, "fresh.skm"), file_of(&a_root, "fresh.skm")).unwrap();
    assert_rejected(&a, "fresh", &[OTHER], "fresh copied from store b").await;
    assert_eq!(text(&get(&a, "keep", VersionPin::Current).await), "kept");

    // Store b's index copied over store a's: none of a's own files match it any more.
    std::fs::remove_file(file_of(&a_root, "fresh.skm")).unwrap();
    std::fs::copy(b_root.join("index"), a_root.join("index")).unwrap();
    let r = get(&a, "keep", VersionPin::Current).await;
    let e = r.as_ref().expect_err("a's file read under b's index");
    assert_eq!(e.kind, FailureKind::Decryption, "{e}");
}

#[tokio::test]
async fn files_swapped_between_two_paths_are_an_authentication_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let store = store_at(&root);
    put(&store, "a", OLD).await;
    put(&store, "b", NEW).await;
    let (fa, fb) = (file_of(&root, "a.skm"), file_of(&root, "b.skm"));
    let (ba, bb) = (std::fs::read(&fa).unwrap(), std::fs::read(&fb).unwrap());
    std::fs::write(&fa, &bb).unwrap();
    std::fs::write(&fb, &ba).unwrap();
    assert_rejected(&store, "a", &[OLD, NEW], "a holds b's file").await;
    assert_rejected(&store, "b", &[OLD, NEW], "b holds a's file").await;
}

#[tokio::test]
async fn a_removed_file_is_an_authentication_error_not_a_missing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let store = store_at(&root);
    put(&store, "db", NEW).await;
    put(&store, "other", "x").await;
    let file = file_of(&root, "db.skm");
    let saved = std::fs::read(&file).unwrap();
    // Removing the file would otherwise let a lower layer or a default take the secret's place.
    std::fs::remove_file(&file).unwrap();
    let r = get(&store, "db", VersionPin::Current).await;
    let e = r.as_ref().expect_err("a removed file read");
    assert_eq!(e.kind, FailureKind::Decryption, "{e}");
    assert!(e.detail.contains("`db`"), "{e}");
    assert!(store.list("").await.is_err(), "list hid the removed file");
    std::fs::write(&file, &saved).unwrap();
    assert_eq!(text(&get(&store, "db", VersionPin::Current).await), NEW);

    // A forced delete is recorded: the path is gone, and its old file put back stays gone.
    store.delete("db", DeleteMode::Force).await.unwrap();
    assert!(!file.exists());
    assert_eq!(
        get(&store, "db", VersionPin::Current).await.unwrap_err().kind,
        FailureKind::NotFound
    );
    std::fs::write(&file, &saved).unwrap();
    let r = get(&store, "db", VersionPin::Current).await;
    assert!(r.is_err(), "a force-deleted secret came back from its old file");
    assert!(!r.unwrap_err().to_string().contains(NEW));
    let listed: Vec<String> = store.list("").await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(listed, ["other"]);
    // A new put starts the path again, above the old file's write count, and an old copy stays refused.
    assert_eq!(put(&store, "db", OLD).await, "1");
    assert_eq!(text(&get(&store, "db", VersionPin::Current).await), OLD);
    std::fs::write(&file, &saved).unwrap();
    assert_rejected(&store, "db", &[OLD, NEW], "db's pre-delete file over its re-creation").await;
}

#[tokio::test]
async fn a_write_interrupted_before_the_index_still_reads() {
    // A writer killed after renaming the path's file but before renaming the index leaves the file one
    // write ahead of the index: that is the new value, not an attack (only the key holder can make it).
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let store = store_at(&root);
    put(&store, "db", OLD).await;
    let index = std::fs::read(root.join("index")).unwrap();
    put(&store, "db", NEW).await;
    std::fs::write(root.join("index"), &index).unwrap();
    assert_eq!(text(&get(&store, "db", VersionPin::Current).await), NEW);
    assert_eq!(put(&store, "db", "third").await, "3");
    assert_eq!(text(&get(&store, "db", VersionPin::Previous).await), NEW);

    // The same for a path's first write.
    let index = std::fs::read(root.join("index")).unwrap();
    put(&store, "fresh", NEW).await;
    std::fs::write(root.join("index"), &index).unwrap();
    assert_eq!(text(&get(&store, "fresh", VersionPin::Current).await), NEW);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}

fn format_byte(file: &Path) -> u8 {
    let bytes = std::fs::read(file).unwrap();
    assert!(bytes.starts_with(b"SKMLOCAL"), "{}", file.display());
    bytes[8]
}

#[tokio::test]
async fn a_store_of_the_previous_format_opens_and_is_upgraded_by_the_next_write() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/local-format1/store");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    copy_dir(&fixture, &root);
    for name in ["app%2Fdb.skm", "auth%2Fjwt.skm", "gone.skm"] {
        assert_eq!(format_byte(&file_of(&root, name)), 1, "the fixture is format 1");
    }
    let legacy_db = std::fs::read(file_of(&root, "app%2Fdb.skm")).unwrap();
    let store = store_at(&root);

    // Reads before any write: everything as the old skm wrote it, and nothing changes on disk.
    assert_eq!(text(&get(&store, "app/db", VersionPin::Current).await), "fixture-db-v2");
    assert_eq!(
        text(&get(&store, "app/db", VersionPin::Previous).await),
        "fixture-db-v1"
    );
    assert_eq!(
        get(&store, "gone", VersionPin::Current).await.unwrap_err().kind,
        FailureKind::NotFound
    );
    let listed: Vec<String> = store.list("").await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(listed, ["app/db", "auth/jwt"]);
    assert!(!root.join("index").exists());
    assert_eq!(format_byte(&file_of(&root, "app%2Fdb.skm")), 1);

    // The first write upgrades the whole store under the lock, and loses nothing.
    assert_eq!(store.put_key("auth/jwt", "extra", "e").await.unwrap(), "2");
    assert!(root.join("index").exists());
    for name in ["app%2Fdb.skm", "auth%2Fjwt.skm", "gone.skm"] {
        assert_eq!(format_byte(&file_of(&root, name)), 2, "{name} was not upgraded");
    }
    let reopened = store_at(&root);
    assert_eq!(
        text(&get(&reopened, "app/db", VersionPin::Current).await),
        "fixture-db-v2"
    );
    assert_eq!(
        text(&get(&reopened, "app/db", VersionPin::Number(1)).await),
        "fixture-db-v1"
    );
    assert_eq!(reopened.versions("app/db").await.unwrap().len(), 2);
    let jwt: serde_json::Value =
        serde_json::from_str(&text(&get(&reopened, "auth/jwt", VersionPin::Current).await)).unwrap();
    assert_eq!(jwt["pass"], "fixture-pass");
    assert_eq!(jwt["extra"], "e");
    // The soft-deleted path is still restorable.
    assert_eq!(reopened.rollback("gone", 1).await.unwrap(), "2");
    assert_eq!(text(&get(&reopened, "gone", VersionPin::Current).await), "x");

    // After the upgrade, the old-format file cannot be replayed.
    std::fs::write(file_of(&root, "app%2Fdb.skm"), &legacy_db).unwrap();
    assert_rejected(
        &reopened,
        "app/db",
        &["fixture-db-v1", "fixture-db-v2"],
        "a format-1 copy after the upgrade",
    )
    .await;
}

#[tokio::test]
async fn a_missing_index_of_an_upgraded_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let store = store_at(&root);
    put(&store, "db", NEW).await;
    // Deleting the index must not turn the store back into one whose files are taken on trust.
    std::fs::remove_file(root.join("index")).unwrap();
    assert_rejected(&store, "db", &[NEW], "index removed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_racing_writers_never_see_a_false_alarm() {
    // Readers take no lock: a read between a writer's file rename and its index rename must not be taken
    // for a rollback.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let store = Arc::new(store_at(&root));
    put(&store, "db", "0").await;
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 1..=60 {
                put(&store, "db", &i.to_string()).await;
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let r = get(&store, "db", VersionPin::Current).await;
        text(&r);
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads > 0);
    assert_eq!(text(&get(&store, "db", VersionPin::Current).await), "60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_meets_a_write_in_progress_waits_for_it_instead_of_failing() {
    // Deterministic form of the race above: the test holds the writers' lock and leaves the store as a
    // writer would be seen between its renames (here: the index two writes behind the file), so a reader
    // finds a mismatch; it must wait on the lock and read again, not report an integrity error.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let store = store_at(&root);
    put(&store, "db", OLD).await;
    let old_index = std::fs::read(root.join("index")).unwrap();
    put(&store, "db", "between").await;
    put(&store, "db", NEW).await;
    let current_index = std::fs::read(root.join("index")).unwrap();

    let lock_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.join("lock"))
        .unwrap();
    let mut lock = fd_lock::RwLock::new(lock_file);
    let guard = lock.write().unwrap();
    std::fs::write(root.join("index"), &old_index).unwrap();
    let reader = {
        let store = store.clone();
        tokio::spawn(async move { get(&store, "db", VersionPin::Current).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !reader.is_finished(),
        "the reader did not wait for the write in progress"
    );
    // The "writer" finishes: the index catches up, the lock is released.
    std::fs::write(root.join("index"), &current_index).unwrap();
    drop(guard);
    let r = reader.await.unwrap();
    assert_eq!(text(&r), NEW);
}

#[test]
fn an_uncontended_read_does_not_need_the_blocking_pool() {
    // A read that meets no writer happens on the calling task (a blocking thread's start was a large part of
    // a cold start). With the runtime's only blocking thread held by another task, it still completes.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = store_at(&root);
        put(&store, "db", NEW).await;
        let (release, held) = std::sync::mpsc::channel::<()>();
        let occupant = tokio::task::spawn_blocking(move || held.recv_timeout(std::time::Duration::from_secs(60)));
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            get(&store, "db", VersionPin::Current),
        )
        .await
        .expect("the read waited for the blocking pool");
        assert_eq!(text(&read), NEW);
        release.send(()).unwrap();
        occupant.await.unwrap().unwrap();
    });
}
