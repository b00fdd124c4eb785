//! The OS keyring backend against a real Secret Service: GNOME Keyring on a private D-Bus session
//! (`skm_testing::SecretService`), with `secret-tool` (libsecret) as the third-party client that writes what
//! skm reads and reads what skm writes.
//!
//! The `keyring` crate finds the bus through `DBUS_SESSION_BUS_ADDRESS` in the process environment, which
//! the tests of this binary share, so every keyring call runs in a child process given exactly the session's
//! variables (`keyring::child_process_entry`); the parent starts the session and plays the other client. A
//! missing gnome-keyring fails the test (`SecretService::start` panics), never skips it.
#![cfg(feature = "keyring")]

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use skm::backend::keyring::KeyringBackend;
use skm::backend::local::LocalStore;
use skm::backend::{AdminBackend, Backend, DeleteMode, FailureKind, FetchRequest, PutRequest, SecretValue};
use skm::{ExposeSecret, Loader, SecretString, Secrets, VersionPin};
use skm_testing::SecretService;

const SENTINEL: &str = "SENTINEL-keyring-5c02-do-not-leak";
const CARD_VALUE: &str = "card-jwt-from-the-keyring";
const PROJECT: &str = "skmtest";

/// The README's card example, unchanged.
#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
    jwt_secret: SecretString,
}

// Only whether it loads matters.
#[allow(dead_code)]
#[derive(Secrets)]
struct Missing {
    #[secret(path = "auth/jwt", key = "secret")]
    present: SecretString,
    #[secret(path = "absent/entry")]
    absent: SecretString,
}

#[allow(dead_code)]
#[derive(Secrets)]
struct Leaky {
    #[secret(path = "leak/json", key = "absent")]
    absent_key: SecretString,
}

fn backend() -> KeyringBackend {
    KeyringBackend::from_env().expect("the keyring backend")
}

fn loader() -> Loader {
    Loader::new()
        .backend(backend())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

fn text(result: &skm::backend::FetchResult) -> String {
    match &result.as_ref().unwrap_or_else(|e| panic!("not found: {e}")).value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

/// Runs only when `SKM_KEYRING_CHILD` is set, as a child process started by the tests below, with the private
/// session's variables.
#[tokio::test]
async fn child_process_entry() {
    let Ok(mode) = std::env::var("SKM_KEYRING_CHILD") else {
        return;
    };
    match mode.as_str() {
        "card" => {
            let cfg = AppSecrets::load()
                .await
                .unwrap_or_else(|e| panic!("card example failed: {e}"));
            assert_eq!(cfg.jwt_secret.expose_secret(), CARD_VALUE);
        }
        "missing" => {
            let e = loader().load::<Missing>().await.err().expect("absent/entry is missing");
            let shown = e.to_string();
            assert!(shown.contains("absent/entry"), "{shown}");
            assert!(shown.contains(&format!("skm:{PROJECT}")), "{shown}");
            let r = backend().fetch(&[FetchRequest::current("absent/entry")]).await;
            assert_eq!(r[0].as_ref().unwrap_err().kind, FailureKind::NotFound, "{r:?}");
        }
        "admin" => admin().await,
        "sentinel" => {
            let b = backend();
            let r = b.fetch(&[FetchRequest::current("leak/check")]).await;
            assert_eq!(text(&r[0]), SENTINEL);
            let e = loader().load::<Leaky>().await.err().expect("the key is absent");
            let mut again = PutRequest::new("leak/check", SecretValue::text(SENTINEL));
            again.create_only = true;
            let put = b.put(again).await.unwrap_err();
            assert_eq!(put.kind, FailureKind::AlreadyExists, "{put:?}");
            let shown = format!("{r:?} {b:?} {e} {e:?} {put} {put:?}");
            assert!(!shown.contains(SENTINEL), "{shown}");
        }
        "no-secret-service" => {
            let started = Instant::now();
            let r = backend().fetch(&[FetchRequest::current("auth/jwt")]).await;
            let e = r[0].as_ref().unwrap_err();
            assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
            assert!(e.detail.contains("Secret Service"), "{e}");
            assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        }
        "silent-bus" => {
            let started = Instant::now();
            let b = backend().timeout(Duration::from_millis(500));
            let r = b.fetch(&[FetchRequest::current("auth/jwt")]).await;
            let e = r[0].as_ref().unwrap_err();
            assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
            assert!(e.detail.contains("did not answer within 500 ms"), "{e}");
            assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        }
        "local-key-write" => {
            let store = LocalStore::from_env().expect("the local store from SKM_LOCAL_KEY_SOURCE=keyring");
            let value = SecretValue::map([("secret", CARD_VALUE)]);
            store.put(PutRequest::new("auth/jwt", value)).await.unwrap();
        }
        "local-key-gone" => {
            let e = AppSecrets::load().await.err().expect("the key is gone");
            let shown = format!("{e}\n{e:?}");
            assert!(
                shown.contains("`local.key` of service `skm`") && shown.contains("SKM_LOCAL_KEY_SOURCE=keyring"),
                "{shown}"
            );
            assert!(!shown.contains(CARD_VALUE), "{shown}");
        }
        other => panic!("unknown SKM_KEYRING_CHILD mode {other}"),
    }
    println!("CHILD-OK {mode}");
}

/// Put (create-only honoured, then an overwrite), read back, delete, and what the keyring cannot do.
async fn admin() {
    let b = backend();
    let mut create = PutRequest::new("adm/new", SecretValue::text("first"));
    create.create_only = true;
    b.put(create.clone()).await.expect("create");
    let e = b.put(create).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::AlreadyExists, "{e:?}");
    let r = b.fetch(&[FetchRequest::current("adm/new")]).await;
    assert_eq!(text(&r[0]), "first", "a refused create-only put changed nothing");
    b.put(PutRequest::new("adm/new", SecretValue::text("second")))
        .await
        .expect("overwrite");
    let r = b
        .fetch(&[FetchRequest::current("adm/new"), FetchRequest::current("adm/new")])
        .await;
    assert_eq!(text(&r[0]), "second");
    assert_eq!(text(&r[1]), "second");
    b.delete("adm/new", DeleteMode::Default).await.expect("delete");
    let r = b.fetch(&[FetchRequest::current("adm/new")]).await;
    assert_eq!(r[0].as_ref().unwrap_err().kind, FailureKind::NotFound);
    let e = b.delete("adm/new", DeleteMode::Default).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::NotFound, "{e:?}");

    let e = b.list("").await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Unsupported);
    assert!(e.detail.contains("by name only"), "{e:?}");
    assert_eq!(b.versions("adm/kept").await.unwrap_err().kind, FailureKind::Unsupported);
    let mut cas = PutRequest::new("adm/kept", SecretValue::text("x"));
    cas.expected_version = Some("current".into());
    assert_eq!(b.put(cas).await.unwrap_err().kind, FailureKind::Unsupported);
    let pinned = FetchRequest {
        path: "adm/kept".into(),
        version: VersionPin::Previous,
    };
    assert_eq!(
        b.fetch(&[pinned]).await[0].as_ref().unwrap_err().kind,
        FailureKind::Unsupported
    );

    // Left for the parent's `secret-tool lookup`.
    let value = r#"{"secret":"written-by-skm"}"#;
    b.put(PutRequest::new("adm/kept", SecretValue::text(value)))
        .await
        .expect("put");
    // Through the loader too, with `key`.
    #[derive(Secrets)]
    struct Kept {
        #[secret(path = "adm/kept", key = "secret")]
        secret: SecretString,
    }
    let kept = loader().load::<Kept>().await.expect("load");
    assert_eq!(kept.secret.expose_secret(), "written-by-skm");
}

/// A scratch working directory named `name` (the default project is its name).
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("skm-keyring-child-{}", std::process::id()))
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `keyring::child_process_entry` in mode `mode` with `env`, in a working directory named `dir_name`.
async fn run_child(mode: &str, dir_name: &str, env: Vec<(String, String)>) {
    let dir = workdir(dir_name);
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "keyring::child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        // No `.env` file can be found from here.
        .current_dir(&dir)
        .env("SKM_KEYRING_CHILD", mode)
        .envs(env);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("CHILD-OK {mode}")),
        "child `{mode}` failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The session's variables, `SKM_BACKEND=keyring` and, when given, `SKM_KEYRING_PROJECT`.
fn keyring_env(service: &SecretService, project: Option<&str>) -> Vec<(String, String)> {
    let mut env = service.env();
    env.push(("SKM_BACKEND".into(), "keyring".into()));
    if let Some(p) = project {
        env.push(("SKM_KEYRING_PROJECT".into(), p.into()));
    }
    env
}

#[tokio::test]
async fn card_example_loads_from_entries_secret_tool_wrote() {
    let service = SecretService::start();
    let value = format!(r#"{{"secret":"{CARD_VALUE}"}}"#);
    // As a third-party client writes an item: only `service` and `username`, which the keyring crate finds.
    let service_name = format!("skm:{PROJECT}");
    service.store(
        "card jwt",
        &[("service", &service_name), ("username", "auth/jwt")],
        &value,
    );
    run_child("card", "anywhere", keyring_env(&service, Some(PROJECT))).await;

    // Without SKM_KEYRING_PROJECT, the project is the working directory's name.
    let dir_name = format!("cardproj{}", std::process::id());
    let by_dir = format!("skm:{dir_name}");
    service.store(
        "card jwt by directory",
        &[("service", &by_dir), ("username", "auth/jwt"), ("target", "default")],
        &value,
    );
    run_child("card", &dir_name, keyring_env(&service, None)).await;
}

/// `SKM_LOCAL_KEY_SOURCE=keyring`: the local store's first write puts a new key in the keyring (no key
/// file), a later process loads the card example from the store with it, and without the entry a load says
/// where the key should be.
#[tokio::test]
async fn the_local_store_key_can_live_in_the_keyring() {
    let service = SecretService::start();
    let store = tempfile::tempdir().unwrap();
    let mut env = service.env();
    let config_home = env.iter().find(|(k, _)| k == "XDG_CONFIG_HOME").unwrap().1.clone();
    env.push(("SKM_LOCAL_KEY_SOURCE".into(), "keyring".into()));
    env.push(("SKM_LOCAL_PATH".into(), store.path().join(".skm").display().to_string()));
    env.push(("SKM_BACKEND".into(), "local".into()));
    run_child("local-key-write", "localkey", env.clone()).await;

    // The key is in the keyring, as base64 text secret-tool reads, and no key file was made.
    let attributes = [("service", "skm"), ("username", "local.key")];
    let key = service.lookup(&attributes).expect("the key's keyring entry");
    assert!(key.trim().len() == 44 && key.trim().ends_with('='), "not a base64 key");
    assert!(!PathBuf::from(&config_home).join("skm/local.key").exists());
    assert!(std::fs::read_dir(store.path().join(".skm/secrets")).unwrap().count() > 0);

    // Another process reads the store with it.
    run_child("card", "localkey", env.clone()).await;

    // Without the entry, nothing opens the store, and the error says where the key was looked for.
    let cleared = service
        .secret_tool(&["clear", "service", "skm", "username", "local.key"])
        .output()
        .unwrap();
    assert!(cleared.status.success(), "{cleared:?}");
    assert_eq!(service.lookup(&attributes), None);
    run_child("local-key-gone", "localkey", env).await;
}

#[tokio::test]
async fn a_missing_entry_is_reported_by_name() {
    let service = SecretService::start();
    let service_name = format!("skm:{PROJECT}");
    service.store(
        "present",
        &[("service", &service_name), ("username", "auth/jwt")],
        r#"{"secret":"here"}"#,
    );
    run_child("missing", "missing", keyring_env(&service, Some(PROJECT))).await;
}

#[tokio::test]
async fn secret_tool_reads_what_skm_puts_and_create_only_never_overwrites() {
    let service = SecretService::start();
    run_child("admin", "admin", keyring_env(&service, Some(PROJECT))).await;
    let service_name = format!("skm:{PROJECT}");
    assert_eq!(
        service
            .lookup(&[("service", &service_name), ("username", "adm/kept")])
            .as_deref(),
        Some(r#"{"secret":"written-by-skm"}"#)
    );
    assert_eq!(
        service.lookup(&[("service", &service_name), ("username", "adm/new")]),
        None,
        "deleted"
    );
}

#[tokio::test]
async fn a_sentinel_value_never_reaches_debug_display_or_errors() {
    let service = SecretService::start();
    let service_name = format!("skm:{PROJECT}");
    service.store(
        "leak check",
        &[("service", &service_name), ("username", "leak/check")],
        SENTINEL,
    );
    service.store(
        "leak json",
        &[("service", &service_name), ("username", "leak/json")],
        &format!(r#"{{"present":"{SENTINEL}"}}"#),
    );
    run_child("sentinel", "sentinel", keyring_env(&service, Some(PROJECT))).await;
}

#[tokio::test]
async fn no_secret_service_is_unavailable_and_a_silent_bus_times_out() {
    // No session bus at the address: the keyring answers at once that it cannot reach one.
    let service = SecretService::start();
    let mut env = keyring_env(&service, Some(PROJECT));
    let dir = workdir("silent-socket");
    let socket = dir.join("bus");
    for (k, v) in env.iter_mut() {
        if k == "DBUS_SESSION_BUS_ADDRESS" {
            *v = format!("unix:path={}", dir.join("nothing-here").display());
        }
    }
    run_child("no-secret-service", "no-secret-service", env.clone()).await;
    // A socket that accepts and never answers: the backend's timeout ends the call.
    let _listener = UnixListener::bind(&socket).unwrap();
    for (k, v) in env.iter_mut() {
        if k == "DBUS_SESSION_BUS_ADDRESS" {
            *v = format!("unix:path={}", socket.display());
        }
    }
    run_child("silent-bus", "silent-bus", env).await;
    let _ = std::fs::remove_dir_all(&dir);
}
