//! `skm prepare` (issue 29): the value-free snapshot of the stores that `#[derive(Secrets)]` checks
//! declarations against at compile time.
//!
//! - Against the local store, the snapshots of the structs of the UI cases (`tests/ui_prepared/`) are exactly
//!   the committed ones (but for their date): the committed snapshots the compile-fail and compile-pass cases
//!   read are what `prepare` writes for those stores. `PREPARED_BLESS=1` writes them again (date fixed).
//! - Against moto, the same struct gives the same judgements; the versions carry AWS's stages.
//! - A store of sentinel values: no sentinel in the snapshot or the output, and the snapshot's schema has no
//!   field that could hold a value, a hash or a length (exact key sets, types checked).
//! - `prepare --check`: 0 when up to date, 1 when a key went away or a field was declared since, 0 (with a
//!   note) after a rotation; the standalone tool (manifest) records `parses: null`.
#![cfg(all(feature = "cli", feature = "local"))]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use skm::backend::local::{LocalKey, LocalStore};
use skm::backend::{AdminBackend, PutRequest, SecretValue};
use skm::cli::{exit, Cli, Io};
use skm::{SecretString, Secrets};

/// Inside every value stored here: it must never reach a snapshot or the output.
const SENTINEL: &str = "SENTINEL-prepare-7c1e93";

/// The date the committed snapshots carry.
const FIXED_DATE: &str = "2025-06-01T12:00:00Z";

#[derive(Secrets)]
#[secrets(prefix = "myapp/{profile}")]
#[allow(dead_code)]
struct JwtKeyPresent {
    #[secret(path = "auth/jwt", key = "secret", min_len = 16)]
    jwt: SecretString,
    #[secret(path = "db", key = "port", plain)]
    port: u16,
}

#[derive(Secrets)]
#[secrets(prefix = "myapp/{profile}")]
#[allow(dead_code)]
struct JwtKeyMissing {
    #[secret(path = "auth/jwt", key = "secret", min_len = 16)]
    jwt: SecretString,
    #[secret(path = "db", key = "port", plain)]
    port: u16,
}

/// `tests/ui_prepared/fail/store_problems.rs` without its field `new` (declared after the snapshot).
#[derive(Secrets)]
#[secrets(prefix = "myapp/{profile}")]
#[allow(dead_code)]
struct StoreProblems {
    #[secret(path = "auth/api")]
    api: SecretString,
    #[secret(path = "db", key = "port", plain)]
    port: u16,
    #[secret(path = "auth/jwt", key = "secret", min_len = 32)]
    jwt: SecretString,
    #[secret(path = "auth/opt", env = "OPT_TOKEN")]
    opt: SecretString,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui_prepared/snapshots")
}

fn local_store(dir: &Path) -> Arc<LocalStore> {
    Arc::new(LocalStore::open(dir.join(".skm")).key(LocalKey::from_bytes([7; 32])))
}

async fn put(store: &dyn AdminBackend, path: &str, value: SecretValue) {
    store.put(PutRequest::new(path, value)).await.expect("put");
}

/// A long value holding the sentinel (passes `min_len = 32`).
fn long() -> String {
    format!("{SENTINEL}-{SENTINEL}")
}

/// A short value holding the sentinel: at least 16, under 32 characters.
fn short() -> String {
    SENTINEL.to_string()
}

/// Runs the command line `args` on struct `T` (or on a manifest with `standalone`) with `backend`.
async fn skm<T: Secrets>(backend: Arc<dyn AdminBackend>, standalone: bool, args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        stdin: &mut std::io::empty(),
        stdout: &mut out,
        stderr: &mut err,
        stdin_tty: false,
        stdout_tty: false,
        stderr_tty: false,
    };
    let cli = if standalone {
        Cli::standalone()
    } else {
        Cli::embedded::<T>()
    };
    let argv = std::iter::once("secrets").chain(args.iter().copied());
    let code = cli.backend(backend).execute(argv, &mut io).await;
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The snapshot with its date replaced by [`FIXED_DATE`].
fn dated(mut snapshot: Value) -> Value {
    snapshot["prepared_at"] = Value::String(FIXED_DATE.into());
    snapshot
}

/// Compares the snapshot `prepare` wrote in `dir` to the committed fixture of the same name (or, with
/// `PREPARED_BLESS=1`, writes the fixture).
fn assert_matches_fixture(dir: &Path, name: &str) {
    let written = dated(read_json(&dir.join(name)));
    let fixture = fixtures().join(name);
    if std::env::var_os("PREPARED_BLESS").is_some() {
        // The file as `prepare` wrote it, but for its date.
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let date = read_json(&dir.join(name))["prepared_at"].as_str().unwrap().to_string();
        let text = text.replace(
            &format!("\"prepared_at\": \"{date}\""),
            &format!("\"prepared_at\": \"{FIXED_DATE}\""),
        );
        std::fs::write(&fixture, text).unwrap();
        return;
    }
    assert_eq!(
        written,
        read_json(&fixture),
        "`skm prepare` no longer writes the committed {name} (PREPARED_BLESS=1 writes it again; then check the \
         UI cases in tests/ui_prepared)"
    );
}

/// The stores behind the UI cases, in `store`.
async fn fill_ui_stores(store: &dyn AdminBackend) {
    // JwtKeyPresent / JwtKeyMissing read the same paths; the store changes between the two prepares.
    put(
        store,
        "myapp/staging/db",
        SecretValue::map([("port", "5432"), ("password", SENTINEL)]),
    )
    .await;
    // StoreProblems, profile staging: every value fine but the port.
    put(store, "myapp/staging/auth/api", SecretValue::text(long())).await;
    // StoreProblems, profile prod: `auth/api` missing, the JWT secret too short for `min_len = 32`.
    put(
        store,
        "myapp/prod/db",
        SecretValue::map([("port", "6432"), ("password", SENTINEL)]),
    )
    .await;
    put(
        store,
        "myapp/prod/auth/jwt",
        SecretValue::map([("secret", short()), ("issuer", SENTINEL.into())]),
    )
    .await;
}

#[tokio::test]
async fn local_store_snapshots_are_the_committed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local_store(tmp.path());
    let dir = tmp.path().join("prepared");
    let dir_arg = dir.to_str().unwrap();
    fill_ui_stores(store.as_ref()).await;

    // The key is `Secret`, not `secret`: the snapshot of JwtKeyMissing.
    put(
        store.as_ref(),
        "myapp/staging/auth/jwt",
        SecretValue::map([("Secret", long()), ("issuer", SENTINEL.into())]),
    )
    .await;
    let (code, out, err) = skm::<JwtKeyMissing>(
        store.clone(),
        false,
        &["prepare", "--profile", "staging", "--dir", dir_arg],
    )
    .await;
    assert_eq!(code, exit::OK, "{out}\n{err}");
    assert!(
        out.contains("no key `secret`"),
        "the table shows the missing key:\n{out}"
    );
    assert_matches_fixture(&dir, "JwtKeyMissing.staging.json");

    // After the key is added, `prepare` writes the snapshot that compiles (JwtKeyPresent is the same struct).
    put(
        store.as_ref(),
        "myapp/staging/auth/jwt",
        SecretValue::map([("secret", long()), ("issuer", SENTINEL.into())]),
    )
    .await;
    let (code, out, err) = skm::<JwtKeyPresent>(
        store.clone(),
        false,
        &["prepare", "--profile", "staging", "--dir", dir_arg],
    )
    .await;
    assert_eq!(code, exit::OK, "{out}\n{err}");
    assert_matches_fixture(&dir, "JwtKeyPresent.staging.json");

    // StoreProblems in two profiles at once; staging's port does not parse.
    put(
        store.as_ref(),
        "myapp/staging/db",
        SecretValue::map([("port", "not-a-port"), ("password", SENTINEL)]),
    )
    .await;
    let args = ["prepare", "--profile", "staging", "--profile", "prod", "--dir", dir_arg];
    let (code, out, err) = skm::<StoreProblems>(store.clone(), false, &args).await;
    assert_eq!(code, exit::OK, "{out}\n{err}");
    assert_matches_fixture(&dir, "StoreProblems.staging.json");
    assert_matches_fixture(&dir, "StoreProblems.prod.json");
    let prod = read_json(&dir.join("StoreProblems.prod.json"));
    let field = |name: &str| {
        prod["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(field("api")["exists"], false);
    assert_eq!(field("jwt")["valid"], false);
    assert_eq!(
        field("jwt")["parses"],
        Value::Null,
        "a value that fails a validator is not parsed"
    );
    assert_eq!(field("port")["parses"], true);
    let staging = read_json(&dir.join("StoreProblems.staging.json"));
    let port = staging["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "port")
        .unwrap();
    assert_eq!(
        (port["parses"].clone(), port["valid"].clone()),
        (Value::Bool(false), Value::Bool(true))
    );

    for text in [&out, &err] {
        assert!(!text.contains(SENTINEL), "a value in the output:\n{text}");
    }
}

/// The keys a snapshot may have, and each field entry's: nothing else, so no value, hash or length can hide.
const TOP_KEYS: &[&str] = &["skm_prepared", "struct", "profile", "prepared_at", "typed", "fields"];
const FIELD_KEYS: &[&str] = &[
    "field",
    "path",
    "key",
    "type",
    "validators",
    "version",
    "backend",
    "exists",
    "keys",
    "versions",
    "parses",
    "valid",
];

/// Checks the snapshot's schema: exact key sets; booleans, names and declared text only.
fn assert_value_free_schema(snapshot: &Value) {
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let sorted = |list: &[&str]| -> Vec<String> {
        let mut k: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        k.sort();
        k
    };
    assert_eq!(keys(snapshot), sorted(TOP_KEYS));
    assert_eq!(snapshot["skm_prepared"], 1);
    for f in snapshot["fields"].as_array().unwrap() {
        assert_eq!(keys(f), sorted(FIELD_KEYS), "{f}");
        assert_eq!(keys(&f["validators"]), sorted(&["min_len", "not", "pattern"]));
        assert!(f["exists"].is_boolean());
        for judgement in ["parses", "valid"] {
            assert!(f[judgement].is_boolean() || f[judgement].is_null(), "{f}");
        }
        assert!(f["keys"].is_null() || f["keys"].as_array().unwrap().iter().all(Value::is_string));
        if let Some(versions) = f["versions"].as_array() {
            for v in versions {
                assert_eq!(keys(v), sorted(&["id", "stages"]), "{v}");
            }
        }
    }
}

#[tokio::test]
async fn a_store_of_sentinels_leaves_no_value_hash_or_length_in_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local_store(tmp.path());
    let dir = tmp.path().join("prepared");
    fill_ui_stores(store.as_ref()).await;
    put(store.as_ref(), "myapp/prod/auth/api", SecretValue::text(long())).await;
    put(store.as_ref(), "myapp/prod/auth/opt", SecretValue::text(long())).await;
    let args = ["--json", "prepare", "--profile", "prod", "--dir", dir.to_str().unwrap()];
    let (code, out, err) = skm::<StoreProblems>(store.clone(), false, &args).await;
    assert_eq!(code, exit::OK, "{out}\n{err}");
    let text = std::fs::read_to_string(dir.join("StoreProblems.prod.json")).unwrap();
    for (what, t) in [("snapshot", &text), ("stdout", &out), ("stderr", &err)] {
        assert!(!t.contains(SENTINEL), "the {what} holds a value:\n{t}");
        // Nor a part of one.
        assert!(!t.contains(&SENTINEL[..12]), "the {what} holds part of a value:\n{t}");
    }
    let snapshot: Value = serde_json::from_str(&text).unwrap();
    assert_value_free_schema(&snapshot);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_value_free_schema(&json["snapshots"][0]["snapshot"]);
}

#[tokio::test]
async fn check_fails_when_the_store_or_the_declarations_moved_but_not_on_a_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local_store(tmp.path());
    let dir = tmp.path().join("prepared");
    let dir_arg = dir.to_str().unwrap();
    put(store.as_ref(), "myapp/staging/db", SecretValue::map([("port", "5432")])).await;
    put(
        store.as_ref(),
        "myapp/staging/auth/jwt",
        SecretValue::map([("secret", long()), ("issuer", SENTINEL.into())]),
    )
    .await;
    let prepare = ["prepare", "--profile", "staging", "--dir", dir_arg];
    let check = ["prepare", "--check", "--profile", "staging", "--dir", dir_arg];
    let (code, out, err) = skm::<JwtKeyPresent>(store.clone(), false, &prepare).await;
    assert_eq!(code, exit::OK, "{out}\n{err}");
    let before = std::fs::read_to_string(dir.join("JwtKeyPresent.staging.json")).unwrap();

    let (code, out, err) = skm::<JwtKeyPresent>(store.clone(), false, &check).await;
    assert_eq!(code, exit::OK, "up to date:\n{out}\n{err}");
    assert!(out.contains("is up to date"), "{out}");

    // A rotation: a new version, the same keys. Not a failure; said in a note.
    put(
        store.as_ref(),
        "myapp/staging/auth/jwt",
        SecretValue::map([("secret", format!("{}x", long())), ("issuer", SENTINEL.into())]),
    )
    .await;
    let (code, out, err) = skm::<JwtKeyPresent>(store.clone(), false, &check).await;
    assert_eq!(code, exit::OK, "a rotation is not stale:\n{out}\n{err}");
    assert!(err.contains("versions moved"), "{err}");

    // The key goes away: stale, exit 1, and the file is not rewritten by --check.
    put(
        store.as_ref(),
        "myapp/staging/auth/jwt",
        SecretValue::map([("issuer", SENTINEL)]),
    )
    .await;
    let (code, out, err) = skm::<JwtKeyPresent>(store.clone(), false, &check).await;
    assert_eq!(code, exit::FAILED, "{out}\n{err}");
    assert!(
        out.contains("`jwt` (myapp/staging/auth/jwt#secret): its keys changed"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("JwtKeyPresent.staging.json")).unwrap(),
        before
    );

    // A declaration the snapshot does not have (StoreProblems has no snapshot here at all).
    let (code, out, err) = skm::<StoreProblems>(store.clone(), false, &check).await;
    assert_eq!(code, exit::FAILED, "{out}\n{err}");
    for text in [&out, &err] {
        assert!(!text.contains(SENTINEL), "a value in the output:\n{text}");
    }
}

#[tokio::test]
async fn the_standalone_tool_records_parses_as_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local_store(tmp.path());
    let dir = tmp.path().join("prepared");
    put(
        store.as_ref(),
        "myapp/staging/db",
        SecretValue::map([("port", "not-a-port")]),
    )
    .await;
    put(
        store.as_ref(),
        "myapp/staging/auth/jwt",
        SecretValue::map([("secret", short())]),
    )
    .await;
    let manifest = tmp.path().join("skm.toml");
    let (code, out, err) = skm::<JwtKeyPresent>(
        store.clone(),
        false,
        &["manifest", "--profile", "staging", "-o", manifest.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, exit::OK, "{out}\n{err}");
    let args = [
        "--manifest",
        manifest.to_str().unwrap(),
        "prepare",
        "--dir",
        dir.to_str().unwrap(),
    ];
    let (code, out, err) = skm::<JwtKeyPresent>(store.clone(), true, &args).await;
    assert_eq!(code, exit::OK, "{out}\n{err}");
    let snapshot = read_json(&dir.join("JwtKeyPresent.staging.json"));
    assert_eq!(snapshot["typed"], false);
    for f in snapshot["fields"].as_array().unwrap() {
        assert_eq!(f["parses"], Value::Null, "{f}");
        assert_eq!(f["exists"], true, "{f}");
    }
    // The validators are still judged: `secret` is 23 characters, `min_len = 16`.
    assert_eq!(snapshot["fields"][0]["valid"], true);
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn moto_gives_the_same_judgements_with_aws_stages() {
    use skm::backend::aws::AwsBackend;

    // No instance metadata lookups from the SDK (moto needs none).
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let moto = skm_testing::Moto::start().await;
    let aws = AwsBackend::builder()
        .region("us-east-1")
        .endpoint_url(moto.endpoint())
        .static_credentials("test", "test")
        .build()
        .await
        .expect("backend");
    let aws: Arc<dyn AdminBackend> = Arc::new(aws);
    put(
        aws.as_ref(),
        "myapp/staging/db",
        SecretValue::map([("port", "5432"), ("password", SENTINEL)]),
    )
    .await;
    put(
        aws.as_ref(),
        "myapp/staging/auth/jwt",
        SecretValue::map([("Secret", long()), ("issuer", SENTINEL.into())]),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prepared");
    let args = ["prepare", "--profile", "staging", "--dir", dir.to_str().unwrap()];
    let (code, out, err) = skm::<JwtKeyMissing>(aws.clone(), false, &args).await;
    assert_eq!(code, exit::OK, "{out}\n{err}");
    for text in [&out, &err] {
        assert!(!text.contains(SENTINEL), "a value in the output:\n{text}");
    }
    let text = std::fs::read_to_string(dir.join("JwtKeyMissing.staging.json")).unwrap();
    assert!(!text.contains(SENTINEL));
    let snapshot: Value = serde_json::from_str(&text).unwrap();
    assert_value_free_schema(&snapshot);
    let fixture = read_json(&fixtures().join("JwtKeyMissing.staging.json"));
    for (got, want) in snapshot["fields"]
        .as_array()
        .unwrap()
        .iter()
        .zip(fixture["fields"].as_array().unwrap())
    {
        for k in ["field", "path", "key", "type", "exists", "keys", "parses", "valid"] {
            assert_eq!(got[k], want[k], "{k} of {}", got["field"]);
        }
        let stages: Vec<&str> = got["versions"][0]["stages"]
            .as_array()
            .expect("AWS lists versions")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(stages.contains(&"AWSCURRENT"), "{got}");
    }
    // The same store with the key added: the snapshot of the case that compiles.
    put(
        aws.as_ref(),
        "myapp/staging/auth/jwt",
        SecretValue::map([("secret", long()), ("issuer", SENTINEL.into())]),
    )
    .await;
    let (code, out, err) = skm::<JwtKeyPresent>(aws.clone(), false, &args).await;
    assert_eq!(code, exit::OK, "{out}\n{err}");
    let snapshot = read_json(&dir.join("JwtKeyPresent.staging.json"));
    let fixture = read_json(&fixtures().join("JwtKeyPresent.staging.json"));
    for (got, want) in snapshot["fields"]
        .as_array()
        .unwrap()
        .iter()
        .zip(fixture["fields"].as_array().unwrap())
    {
        for k in ["field", "path", "key", "type", "exists", "keys", "parses", "valid"] {
            assert_eq!(got[k], want[k], "{k} of {}", got["field"]);
        }
    }
}
