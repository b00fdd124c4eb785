//! The local encrypted store against a real file system and real processes.
//!
//! The crash and concurrency tests re-run this test binary as child processes: the `child_process` test
//! does nothing unless `SKM_LOCAL_TEST_CHILD` names a role, in which case it becomes a writer.
#![cfg(feature = "local")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use skm_runtime::backend::local::{LocalKey, LocalStore};
use skm_runtime::backend::{
    AdminBackend, AdminErrorKind, Backend, DeleteMode, FailureKind, FetchRequest, FetchResult, PutRequest, SecretValue,
    VersionPin,
};
use skm_runtime::detect::detect;

const SENTINEL: &str = "SENTINEL-local-7f3a9c";
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn key() -> LocalKey {
    LocalKey::parse(KEY_HEX).unwrap()
}

fn store_at(root: &Path) -> LocalStore {
    LocalStore::open(root).key(key())
}

fn text(r: &FetchResult) -> String {
    match &r.as_ref().unwrap_or_else(|e| panic!("expected a value, got {e}")).value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

fn version(r: &FetchResult) -> String {
    r.as_ref().expect("found").version.clone().expect("a version")
}

fn kind(r: &FetchResult) -> FailureKind {
    r.as_ref().err().unwrap_or_else(|| panic!("expected an error")).kind
}

async fn get(store: &LocalStore, path: &str, pin: VersionPin) -> FetchResult {
    let mut r = store
        .fetch(&[FetchRequest {
            path: path.into(),
            version: pin,
        }])
        .await;
    assert_eq!(r.len(), 1);
    r.remove(0)
}

async fn put(store: &LocalStore, path: &str, value: &str) -> String {
    store
        .put(PutRequest::new(path, SecretValue::text(value)))
        .await
        .unwrap_or_else(|e| panic!("put {path}: {e}"))
}

fn store_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("secrets"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn temp_files(root: &Path) -> usize {
    store_files(root)
        .iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".tmp-"))
        .count()
}

#[tokio::test]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    skm_runtime::conformance::run_all(Arc::new(store_at(&dir.path().join(".skm"))), "conformance").await;
}

#[tokio::test]
async fn round_trip_of_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let store = store_at(&root);
    assert!(
        !LocalStore::exists_at(&root),
        "nothing is created before the first write"
    );
    assert_eq!(
        kind(&get(&store, "auth/jwt", VersionPin::Current).await),
        FailureKind::NotFound
    );
    assert_eq!(store.list("").await.unwrap(), vec![]);

    // A map, plain text that is not JSON, and bytes, each read back exactly.
    assert_eq!(
        store
            .put(PutRequest::new(
                "auth/jwt",
                SecretValue::map([("secret", SENTINEL), ("issuer", "me")])
            ))
            .await
            .unwrap(),
        "1"
    );
    put(&store, "plain", "not json { at all\n").await;
    store
        .put(PutRequest::new("bin", SecretValue::binary(vec![0, 159, 146, 150, 255])))
        .await
        .unwrap();
    assert!(LocalStore::exists_at(&root));
    let jwt: serde_json::Value =
        serde_json::from_str(&text(&get(&store, "auth/jwt", VersionPin::Current).await)).unwrap();
    assert_eq!(jwt, serde_json::json!({"secret": SENTINEL, "issuer": "me"}));
    assert_eq!(
        text(&get(&store, "plain", VersionPin::Current).await),
        "not json { at all\n"
    );
    match &get(&store, "bin", VersionPin::Current).await.unwrap().value {
        SecretValue::Binary(b) => assert_eq!(b.expose_secret(), &vec![0, 159, 146, 150, 255]),
        SecretValue::Text(_) => panic!("bytes must stay bytes"),
    }

    // Versions: 7 puts keep the last 5.
    for i in 1..=7 {
        assert_eq!(put(&store, "rot", &format!("v{i}")).await, i.to_string());
    }
    let versions = store.versions("rot").await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        ["7", "6", "5", "4", "3"]
    );
    assert_eq!(versions[0].stages, ["current"]);
    assert_eq!(versions[1].stages, ["previous"]);
    assert!(versions[2].stages.is_empty() && versions[0].created.is_some());
    let current = get(&store, "rot", VersionPin::Current).await;
    assert_eq!((text(&current), version(&current)), ("v7".into(), "7".into()));
    for pin in [
        VersionPin::Previous,
        VersionPin::stage("previous"),
        VersionPin::stage("AWSPREVIOUS"),
        VersionPin::Number(6),
        VersionPin::id("6"),
    ] {
        let r = get(&store, "rot", pin.clone()).await;
        assert_eq!((text(&r), version(&r)), ("v6".into(), "6".into()), "{pin}");
    }
    for pin in [VersionPin::stage("current"), VersionPin::stage("AWSCURRENT")] {
        assert_eq!(text(&get(&store, "rot", pin.clone()).await), "v7", "{pin}");
    }
    assert_eq!(text(&get(&store, "rot", VersionPin::Number(3)).await), "v3");
    let pruned = get(&store, "rot", VersionPin::Number(2)).await;
    assert_eq!(kind(&pruned), FailureKind::NotFound);
    assert!(pruned.unwrap_err().detail.contains("versions 3 to 7 are kept"));
    for pin in [
        VersionPin::Number(8),
        VersionPin::id("abc"),
        VersionPin::stage("AWSPENDING"),
    ] {
        assert_eq!(
            kind(&get(&store, "rot", pin.clone()).await),
            FailureKind::NotFound,
            "{pin}"
        );
    }
    let single = get(&store, "plain", VersionPin::Previous).await;
    assert_eq!(kind(&single), FailureKind::NotFound, "one version has no previous");

    // Rollback copies an old version as a new one.
    assert_eq!(store.rollback("rot", 4).await.unwrap(), "8");
    let r = get(&store, "rot", VersionPin::Current).await;
    assert_eq!((text(&r), version(&r)), ("v4".into(), "8".into()));
    assert_eq!(
        store.rollback("rot", 1).await.unwrap_err().kind,
        AdminErrorKind::NotFound
    );
    assert_eq!(
        store.rollback("nope", 1).await.unwrap_err().kind,
        AdminErrorKind::NotFound
    );

    // put_key keeps the other keys.
    assert_eq!(store.put_key("auth/jwt", "audience", "api").await.unwrap(), "2");
    let jwt: serde_json::Value =
        serde_json::from_str(&text(&get(&store, "auth/jwt", VersionPin::Current).await)).unwrap();
    assert_eq!(
        jwt,
        serde_json::json!({"secret": SENTINEL, "issuer": "me", "audience": "api"})
    );
    assert_eq!(
        store.put_key("plain", "k", "v").await.unwrap_err().kind,
        AdminErrorKind::Other
    );

    // create_only never overwrites.
    let mut create = PutRequest::new("plain", SecretValue::text("clobber"));
    create.create_only = true;
    assert_eq!(
        store.put(create.clone()).await.unwrap_err().kind,
        AdminErrorKind::AlreadyExists
    );
    assert_eq!(
        text(&get(&store, "plain", VersionPin::Current).await),
        "not json { at all\n"
    );
    create.path = "fresh".into();
    assert_eq!(store.put(create).await.unwrap(), "1");

    // List: sorted, filtered by prefix, with update times.
    let listed = store.list("").await.unwrap();
    assert_eq!(
        listed.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        ["auth/jwt", "bin", "fresh", "plain", "rot"]
    );
    assert!(listed.iter().all(|e| e.updated.is_some()));
    assert_eq!(store.list("auth/").await.unwrap().len(), 1);

    // Soft delete hides the path but keeps its versions; a new put continues the numbering.
    store.delete("rot", DeleteMode::Default).await.unwrap();
    assert_eq!(
        kind(&get(&store, "rot", VersionPin::Current).await),
        FailureKind::NotFound
    );
    assert_eq!(store.versions("rot").await.unwrap_err().kind, AdminErrorKind::NotFound);
    assert!(!store.list("").await.unwrap().iter().any(|e| e.path == "rot"));
    assert_eq!(
        store.delete("rot", DeleteMode::Default).await.unwrap_err().kind,
        AdminErrorKind::NotFound
    );
    let mut create = PutRequest::new("rot", SecretValue::text("v9"));
    create.create_only = true;
    assert_eq!(
        store.put(create).await.unwrap(),
        "9",
        "a soft-deleted path can be created again"
    );
    store.delete("rot", DeleteMode::RecoveryDays(7)).await.unwrap();
    assert_eq!(
        store.rollback("rot", 8).await.unwrap(),
        "10",
        "rollback restores a soft-deleted path"
    );
    assert_eq!(text(&get(&store, "rot", VersionPin::Current).await), "v4");

    // Force delete removes the file; a new put starts again at 1.
    store.delete("rot", DeleteMode::Force).await.unwrap();
    assert_eq!(
        store.delete("rot", DeleteMode::Force).await.unwrap_err().kind,
        AdminErrorKind::NotFound
    );
    assert!(!store_files(&root).iter().any(|p| p.ends_with("rot.skm")));
    assert_eq!(put(&store, "rot", "again").await, "1");

    // A new store value (a restarted process) reads the same data with the same key.
    let reopened = store_at(&root);
    assert_eq!(
        text(&get(&reopened, "plain", VersionPin::Current).await),
        "not json { at all\n"
    );
    let versions = reopened
        .current_versions(&[FetchRequest::current("auth/jwt"), FetchRequest::current("x")])
        .await;
    let versions = versions.expect("the local store reports versions");
    assert_eq!(versions[0].as_deref().unwrap(), "2");
    assert_eq!(versions[1].as_ref().unwrap_err().kind, FailureKind::NotFound);

    // Many paths in one call, repeated paths and mixed pins, in order.
    let r = reopened
        .fetch(&[
            FetchRequest::current("fresh"),
            FetchRequest::current("missing"),
            FetchRequest {
                path: "auth/jwt".into(),
                version: VersionPin::Number(1),
            },
            FetchRequest::current("auth/jwt"),
        ])
        .await;
    assert_eq!(text(&r[0]), "clobber");
    assert_eq!(kind(&r[1]), FailureKind::NotFound);
    assert_eq!((version(&r[2]), version(&r[3])), ("1".into(), "2".into()));

    // No temp files are left behind, and the secret never appears in a file or in Debug.
    assert_eq!(temp_files(&root), 0);
    for file in store_files(&root) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(SENTINEL.len()).any(|w| w == SENTINEL.as_bytes()),
            "plaintext in {file:?}"
        );
    }
    let debug = format!("{store:?} {:?}", get(&store, "auth/jwt", VersionPin::Current).await);
    assert!(!debug.contains(SENTINEL) && !debug.contains(KEY_HEX), "{debug}");
}

#[tokio::test]
async fn every_flipped_bit_position_and_truncation_is_a_decryption_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let store = store_at(&root);
    put(&store, "auth/jwt", SENTINEL).await;
    put(&store, "other", "other value").await;
    let file = root.join("secrets").join("auth%2Fjwt.skm");
    let original = std::fs::read(&file).unwrap();
    assert!(original.starts_with(b"SKMLOCAL\x02"));

    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..original.len() {
        let mut bad = original.clone();
        bad[i] ^= 1 << (i % 8);
        cases.push((format!("bit flip at byte {i}"), bad));
    }
    for len in [0, 5, 9, 20, 40, original.len() - 1] {
        cases.push((format!("truncated to {len} bytes"), original[..len].to_vec()));
    }
    let mut longer = original.clone();
    longer.push(0);
    cases.push(("one byte appended".into(), longer));
    // A valid file of another path copied over this one.
    cases.push((
        "the file of `other`".into(),
        std::fs::read(root.join("secrets").join("other.skm")).unwrap(),
    ));

    for (what, bytes) in &cases {
        std::fs::write(&file, bytes).unwrap();
        let r = get(&store, "auth/jwt", VersionPin::Current).await;
        let e = r
            .as_ref()
            .err()
            .unwrap_or_else(|| panic!("{what}: read a value from a modified file"));
        assert_eq!(e.kind, FailureKind::Decryption, "{what}: {e}");
        assert!(!e.detail.contains(SENTINEL));
        // A write must not replace what it cannot read, and list must not hide it.
        let w = store.put(PutRequest::new("auth/jwt", SecretValue::text("new"))).await;
        assert!(w.is_err(), "{what}: a put overwrote a file it could not decrypt");
        assert_eq!(&std::fs::read(&file).unwrap(), bytes, "{what}: the file was changed");
        assert!(store.list("").await.is_err(), "{what}: list hid a damaged file");
    }
    std::fs::write(&file, &original).unwrap();
    assert_eq!(text(&get(&store, "auth/jwt", VersionPin::Current).await), SENTINEL);
    println!(
        "tamper: {} modified files, each a decryption error, none overwritten",
        cases.len()
    );
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    put(&store_at(&root), "auth/jwt", SENTINEL).await;

    let wrong = LocalStore::open(&root).key(LocalKey::from_bytes([9; 32]));
    let e = get(&wrong, "auth/jwt", VersionPin::Current).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Decryption, "{e}");
    assert!(e.detail.contains("wrong key"), "{e}");
    assert!(!e.to_string().contains(SENTINEL));
    let w = wrong
        .put(PutRequest::new("auth/jwt", SecretValue::text("x")))
        .await
        .unwrap_err();
    assert_eq!(w.kind, AdminErrorKind::Other, "{w}");
    assert_eq!(
        text(&get(&store_at(&root), "auth/jwt", VersionPin::Current).await),
        SENTINEL
    );

    // A key file that does not exist: reads say so, and writes do not invent a new key for an existing store.
    let key_file = dir.path().join("keys").join("absent.key");
    let missing = LocalStore::open(&root).key_file(&key_file);
    let e = get(&missing, "auth/jwt", VersionPin::Current).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Decryption);
    assert!(
        e.detail.contains("SKM_LOCAL_KEY") && e.detail.contains("absent.key"),
        "{e}"
    );
    assert!(missing
        .put(PutRequest::new("new", SecretValue::text("x")))
        .await
        .is_err());
    assert!(
        !key_file.exists(),
        "a key file was created for a store encrypted with another key"
    );

    // A malformed key file.
    std::fs::create_dir_all(key_file.parent().unwrap()).unwrap();
    std::fs::write(&key_file, "not a key\n").unwrap();
    let e = get(
        &LocalStore::open(&root).key_file(&key_file),
        "auth/jwt",
        VersionPin::Current,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, FailureKind::Decryption);
    assert!(
        e.detail.contains("does not hold a valid key") && !e.detail.contains("not a key"),
        "{e}"
    );
}

#[tokio::test]
async fn key_file_is_created_once_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let key_file = dir.path().join("config").join("skm").join("local.key");
    let store = LocalStore::open(&root).key_file(&key_file);
    assert!(!key_file.exists());
    put(&store, "a", SENTINEL).await;
    let written = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(written.len(), 45, "base64 of 32 bytes and a newline");
    let parsed = LocalKey::parse(&written).unwrap();
    assert_eq!(format!("{}\n", parsed.to_base64().expose_secret()), written);
    #[cfg(unix)]
    {
        assert_eq!(mode(&key_file), 0o600);
        assert_eq!(mode(key_file.parent().unwrap()), 0o700);
    }
    // Another process (a new store value) reuses the key and reads the value; the file is not rewritten.
    let again = LocalStore::open(&root).key_file(&key_file);
    assert_eq!(text(&get(&again, "a", VersionPin::Current).await), SENTINEL);
    put(&again, "b", "x").await;
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), written);
    // The same key given as SKM_LOCAL_KEY, in base64 and in hex, reads the same store.
    let hex: String = {
        use std::fmt::Write;
        let b64 = parsed.to_base64();
        let bytes = base64_decode(b64.expose_secret());
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    for encoded in [
        written.trim().to_string(),
        hex.to_uppercase(),
        written.trim().trim_end_matches('=').to_string(),
    ] {
        let env = |name: &str| match name {
            "SKM_LOCAL_PATH" => Some(root.display().to_string()),
            "SKM_LOCAL_KEY" => Some(encoded.clone()),
            _ => None,
        };
        let from_env = LocalStore::from_lookup(&env).unwrap();
        assert_eq!(text(&get(&from_env, "a", VersionPin::Current).await), SENTINEL);
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    // A tiny decoder so that the test does not share the implementation's.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        bits = (bits << 6) | alphabet.iter().position(|&a| a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[test]
fn configuration_from_the_environment() {
    let bad = |name: &str| (name == "SKM_LOCAL_KEY").then(|| "hunter2-not-a-key".to_string());
    let e = LocalStore::from_lookup(&bad).unwrap_err().to_string();
    assert!(e.contains("SKM_LOCAL_KEY") && !e.contains("hunter2"), "{e}");
    let short = |name: &str| (name == "SKM_LOCAL_KEY").then(|| "ab".repeat(31));
    assert!(LocalStore::from_lookup(&short).is_err());

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let env = |name: &str| match name {
        "SKM_LOCAL_PATH" => Some(root.display().to_string()),
        "SKM_LOCAL_KEY_FILE" => Some(dir.path().join("k").display().to_string()),
        _ => None,
    };
    let store = LocalStore::from_lookup(&env).unwrap();
    assert_eq!(store.path(), root);
    let debug = format!("{store:?}");
    assert!(debug.contains("file") && debug.contains("/k"), "{debug}");
    let relative = LocalStore::from_lookup(&|name| (name == "SKM_LOCAL_KEY").then(|| KEY_HEX.to_string())).unwrap();
    assert_eq!(
        relative.path(),
        std::env::current_dir().unwrap().join(".skm"),
        "default .skm, made absolute"
    );

    // SKM_LOCAL_KEY_SOURCE: `file` is the default; `keyring` beside a key or key file is ambiguous; anything
    // else is refused. (The keyring itself: skm-tests' keyring module, against a real Secret Service.)
    let source = |value: &'static str, other: Option<&'static str>| {
        move |name: &str| match name {
            "SKM_LOCAL_KEY_SOURCE" => Some(value.to_string()),
            n if Some(n) == other => Some(KEY_HEX.to_string()),
            _ => None,
        }
    };
    assert!(LocalStore::from_lookup(&source("file", None)).is_ok());
    for other in ["SKM_LOCAL_KEY", "SKM_LOCAL_KEY_FILE"] {
        let e = LocalStore::from_lookup(&source("keyring", Some(other)))
            .unwrap_err()
            .to_string();
        assert!(e.contains(other) && !e.contains(KEY_HEX), "{e}");
    }
    let e = LocalStore::from_lookup(&source("vault", None)).unwrap_err().to_string();
    assert!(e.contains("SKM_LOCAL_KEY_SOURCE must be `file`"), "{e}");
    let keyring = LocalStore::from_lookup(&source("keyring", None));
    if cfg!(feature = "keyring") {
        assert!(format!("{:?}", keyring.unwrap()).contains("keyring"));
    } else {
        let e = keyring.unwrap_err().to_string();
        assert!(e.contains("the `keyring` feature"), "{e}");
    }
}

#[tokio::test]
async fn detection_finds_an_existing_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let root_text = root.display().to_string();
    let env = |extra: &'static [(&'static str, &'static str)]| {
        let root_text = root_text.clone();
        move |name: &str| {
            if name == "SKM_LOCAL_PATH" {
                return Some(root_text.clone());
            }
            extra.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(detect(&env(&[])).unwrap().name(), "none", "no store yet");
    assert_eq!(detect(&env(&[("SKM_BACKEND", "local")])).unwrap().name(), "local");
    assert_eq!(detect(&env(&[("SKM_BACKEND", "Local-Store")])).unwrap().name(), "local");
    put(&store_at(&root), "x", "y").await;
    let choice = detect(&env(&[])).unwrap();
    assert_eq!(choice.name(), "local");
    assert!(choice.reason.contains(&root_text), "{}", choice.reason);
    assert_eq!(detect(&env(&[("SKM_BACKEND", "none")])).unwrap().name(), "none");
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn permissions_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nested").join(".skm");
    let store = store_at(&root);
    put(&store, "a/b", "x").await;
    put(&store, "a/b", "y").await;
    store.put_key("c", "k", "v").await.unwrap();
    assert_eq!(mode(&root), 0o700, ".skm");
    assert_eq!(mode(&root.join("secrets")), 0o700, ".skm/secrets");
    assert_eq!(mode(&root.join("lock")), 0o600, ".skm/lock");
    let files = store_files(&root);
    assert_eq!(files.len(), 2);
    for f in &files {
        assert_eq!(mode(f), 0o600, "{f:?}");
    }
    println!(
        "permissions: .skm 700, secrets/ 700, lock 600, {} store files 600",
        files.len()
    );
}

/// Entry point of the writer processes of the crash and concurrency tests; a no-op in a normal run.
#[test]
fn child_process() {
    let Ok(role) = std::env::var("SKM_LOCAL_TEST_CHILD") else {
        return;
    };
    let root = PathBuf::from(std::env::var("SKM_LOCAL_TEST_STORE").unwrap());
    let store = LocalStore::open(root).key(LocalKey::parse(&std::env::var("SKM_LOCAL_TEST_KEY").unwrap()).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match role.as_str() {
            "crash" => {
                let start: u64 = std::env::var("SKM_LOCAL_TEST_START").unwrap().parse().unwrap();
                // Bounded so that an orphaned child stops by itself.
                let deadline = Instant::now() + Duration::from_secs(60);
                for seq in start..start + 100_000 {
                    let began = Instant::now();
                    put(&store, "crash/value", &crash_payload(seq)).await;
                    println!("@skm done {seq} {}", began.elapsed().as_micros());
                    if Instant::now() > deadline {
                        break;
                    }
                }
            }
            "concurrent" => {
                let id = std::env::var("SKM_LOCAL_TEST_ID").unwrap();
                println!("@skm start {}", unix_ms());
                for i in 0..100 {
                    store
                        .put_key("conc/shared", &format!("{id}-{i:03}"), &format!("value-{id}-{i}"))
                        .await
                        .unwrap();
                    put(&store, &format!("conc/{id}/{i:03}"), &format!("own-{id}-{i}")).await;
                }
                println!("@skm end {}", unix_ms());
            }
            other => panic!("unknown child role {other}"),
        }
    });
}

/// The text after `@skm <tag>` in a line of a child's output; libtest may print its own text before it.
fn marker<'l>(line: &'l str, tag: &str) -> Option<&'l str> {
    let at = line.find("@skm ")?;
    line[at + 5..].strip_prefix(tag)
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// About 3 KB, so that a file spans several pages; every chunk names the sequence number.
fn crash_payload(seq: u64) -> String {
    format!("{seq:010};").repeat(300)
}

fn parse_crash_payload(text: &str) -> u64 {
    let first = &text[..11];
    assert_eq!(text, first.repeat(300), "a value mixing two writes");
    first[..10].parse().unwrap()
}

fn child(role: &str, root: &Path, extra: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_process", "--exact", "--nocapture", "--test-threads", "1"])
        .env("SKM_LOCAL_TEST_CHILD", role)
        .env("SKM_LOCAL_TEST_STORE", root)
        .env("SKM_LOCAL_TEST_KEY", KEY_HEX)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

/// A small deterministic generator, seeded from the clock and printed, so that a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn sigkill_at_random_points_leaves_the_old_or_the_new_value() {
    const ROUNDS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let seed = std::env::var("SKM_LOCAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| (unix_ms() as u64) | 1);
    let mut rng = XorShift(seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut next, mut old, mut new, mut temps_seen, mut acked_total) = (1u64, 0, 0, 0, 0u64);
    let mut delays = Vec::new();
    let mut write_micros = Vec::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut proc = child("crash", &root, &[("SKM_LOCAL_TEST_START", next.to_string())])
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<(u64, u64)>();
        let stdout = proc.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((seq, micros)) = marker(&line, "done ").and_then(|m| m.split_once(' ')) {
                    let _ = tx.send((seq.parse().unwrap(), micros.parse().unwrap()));
                }
            }
        });
        // Kill only once the writer is in its loop, at a random point of one of the next writes: the delay
        // spans 1.5 times the duration of the write just acknowledged.
        let first = rx.recv_timeout(Duration::from_secs(60));
        let span = first.map_or(25_000, |(_, micros)| micros * 3 / 2 + 1);
        let delay = rng.below(span);
        std::thread::sleep(Duration::from_micros(delay));
        proc.kill().unwrap(); // SIGKILL
        let status = proc.wait().unwrap();
        reader.join().unwrap();
        let first = first.unwrap_or_else(|_| panic!("round {round}: the writer never completed a write"));
        let mut last_acked = first.0;
        for (seq, micros) in std::iter::once(first).chain(rx.try_iter()) {
            last_acked = last_acked.max(seq);
            write_micros.push(micros);
        }
        assert!(!status.success(), "round {round}: the writer was not killed");
        acked_total += last_acked + 1 - next;
        delays.push(delay);
        temps_seen += temp_files(&root);

        // A fresh store value, as a restarted process would open it.
        let store = store_at(&root);
        let r = rt.block_on(get(&store, "crash/value", VersionPin::Current));
        let value = text(&r);
        let seq = parse_crash_payload(&value);
        assert_eq!(
            version(&r),
            seq.to_string(),
            "round {round}: version and value disagree"
        );
        assert!(
            seq == last_acked || seq == last_acked + 1,
            "round {round}: store holds write {seq}, but the writer had completed {last_acked}"
        );
        if seq == last_acked {
            old += 1;
        } else {
            new += 1;
        }
        let versions = rt.block_on(store.versions("crash/value")).unwrap();
        assert_eq!(versions[0].id, seq.to_string());
        next = seq + 1;
    }
    assert_eq!(old + new, ROUNDS);
    let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
    write_micros.sort_unstable();
    println!(
        "crash: seed {seed}; {ROUNDS} SIGKILLs {min}-{max} us after a completed write; {acked_total} writes \
         completed and acknowledged in {:.1} s (one write: median {} us, max {} us); store always opened: {old} times with the last acknowledged \
         value (old), {new} times with the write in flight (new, killed after the rename), 0 torn or unreadable; \
         {temps_seen} temporary files left by killed writers (removed by the next writer)",
        started.elapsed().as_secs_f64(),
        write_micros[write_micros.len() / 2],
        write_micros[write_micros.len() - 1],
    );
    // The next writer swept the temporary files of earlier kills.
    let store = store_at(&root);
    rt.block_on(put(&store, "crash/value", &crash_payload(next)));
    assert_eq!(temp_files(&root), 0, "stale temporary files were not removed");
}

#[test]
fn two_processes_writing_concurrently_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".skm");
    let started = Instant::now();
    let procs: Vec<_> = ["a", "b"]
        .iter()
        .map(|id| {
            (
                id,
                child("concurrent", &root, &[("SKM_LOCAL_TEST_ID", id.to_string())])
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let mut windows = Vec::new();
    for (id, proc) in procs {
        let out = proc.wait_with_output().unwrap();
        assert!(out.status.success(), "writer {id} failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stamp = |tag: &str| -> u128 {
            stdout
                .lines()
                .find_map(|l| marker(l, tag))
                .unwrap_or_else(|| panic!("writer {id} printed no `{tag}`"))
                .trim()
                .parse()
                .unwrap()
        };
        windows.push((stamp("start "), stamp("end ")));
    }
    let elapsed = started.elapsed();
    let overlap = windows[0]
        .1
        .min(windows[1].1)
        .saturating_sub(windows[0].0.max(windows[1].0));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = store_at(&root);
    let shared: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text(&rt.block_on(get(&store, "conc/shared", VersionPin::Current)))).unwrap();
    let mut lost_keys = 0;
    let mut lost_paths = 0;
    for id in ["a", "b"] {
        for i in 0..100 {
            if shared.get(&format!("{id}-{i:03}")).and_then(|v| v.as_str()) != Some(&format!("value-{id}-{i}")) {
                lost_keys += 1;
            }
            let own = rt.block_on(get(&store, &format!("conc/{id}/{i:03}"), VersionPin::Current));
            if own.as_ref().ok().map(|_| text(&own)) != Some(format!("own-{id}-{i}")) {
                lost_paths += 1;
            }
        }
    }
    let versions = rt.block_on(store.versions("conc/shared")).unwrap();
    let listed = rt.block_on(store.list("conc/")).unwrap();
    println!(
        "concurrency: 2 processes, 400 writes (200 different keys into one shared path + 200 different paths) \
         in {:.2} s, writers overlapping for {overlap} ms; keys in the shared path {}/200 (lost {lost_keys}), \
         paths {}/200 (lost {lost_paths}), shared path at version {} (expected 200), {} paths listed",
        elapsed.as_secs_f64(),
        shared.len(),
        200 - lost_paths,
        versions[0].id,
        listed.len()
    );
    assert_eq!((lost_keys, lost_paths, shared.len()), (0, 0, 200));
    assert_eq!(versions[0].id, "200", "every put_key made its own version");
    assert_eq!(listed.len(), 201);
    assert!(overlap > 0, "the writers did not run at the same time: {windows:?}");
    assert_eq!(temp_files(&root), 0);
}

/// Check-and-set under the store's lock: a put naming the current version wins, a stale one is a
/// `Conflict`; of 20 concurrent writers that all read version 1, exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(&dir.path().join(".skm"));
    assert!(store.supports_cas());
    let put = |expected: Option<&str>, v: &str| {
        let mut r = PutRequest::new("cas/x", SecretValue::text(v));
        r.expected_version = expected.map(str::to_string);
        r
    };
    let e = store.put(put(Some("1"), "a")).await.unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::Conflict, "{e}");
    assert_eq!(store.put(put(None, "a")).await.unwrap(), "1");
    assert_eq!(store.put(put(Some("1"), "b")).await.unwrap(), "2");
    let e = store.put(put(Some("1"), "c")).await.unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::Conflict, "{e}");

    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = PutRequest::new("cas/x", SecretValue::text(format!("w{i}")));
            r.expected_version = Some("2".into());
            store.put(r).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => {
                assert_eq!(v, "3");
                wins += 1;
            }
            Err(e) => assert_eq!(e.kind, AdminErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(wins, 1);
}
