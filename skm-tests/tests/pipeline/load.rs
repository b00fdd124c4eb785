//! The load pipeline end to end: derive → spec → plan → fetch → resolve → report → values.

use std::sync::Arc;

use skm::backend::{FailureKind, FetchError, MemoryBackend, SecretValue};
use skm::{ExposeSecret, Layer, Loader, SecretBox, SecretString, Secrets, Zeroize};

const SENTINEL: &str = "SENTINEL-7c1e-do-not-leak";

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
    jwt_secret: SecretString,
}

fn dotenv_file(contents: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("skm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.env", N.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&path, contents).unwrap();
    path
}

/// The README's card example, unchanged, with no backend configured.
#[tokio::test]
async fn card_example_loads_from_env_without_backend() {
    // `load()` reads the process environment; this is the only test that touches it.
    std::env::set_var("SKM_BACKEND", "none");
    std::env::set_var("JWT_SECRET_KEY", "card-value");
    std::env::set_var("SKM_DOTENV", "");
    async fn run() -> Result<AppSecrets, skm::Error> {
        let cfg = AppSecrets::load().await?;
        Ok(cfg)
    }
    let cfg = run().await.unwrap();
    assert_eq!(cfg.jwt_secret.expose_secret(), "card-value");
}

#[derive(Secrets)]
struct Layered {
    #[secret(path = "app/db", key = "password", env = "DB_PASSWORD", default = "from-default")]
    password: SecretString,
}

async fn layered(loader: Loader) -> (String, String) {
    let loaded = loader.load_report::<Layered>().await.unwrap();
    let origin = loaded.provenance.get("password").unwrap().to_string();
    (loaded.value.password.expose_secret().to_string(), origin)
}

#[tokio::test]
async fn precedence_backend_over_env_over_dotenv_over_default() {
    let backend = MemoryBackend::new();
    backend.insert("app/db", SecretValue::map([("password", "from-backend")]));
    let dotenv = dotenv_file("# db\nDB_PASSWORD=from-dotenv\n");
    let env = [("DB_PASSWORD", "from-env")];

    let all = Loader::new().backend(backend.clone()).env_vars(env).dotenv(&dotenv);
    let (v, origin) = layered(all).await;
    assert_eq!(v, "from-backend");
    assert_eq!(origin, "memory: secret app/db key password");

    let no_backend = Loader::new().env_vars(env).dotenv(&dotenv);
    let (v, origin) = layered(no_backend).await;
    assert_eq!(v, "from-env");
    assert_eq!(origin, "env var: DB_PASSWORD");

    let dotenv_only = Loader::new().env_vars(Vec::<(String, String)>::new()).dotenv(&dotenv);
    let (v, origin) = layered(dotenv_only).await;
    assert_eq!(v, "from-dotenv");
    assert_eq!(origin, format!(".env file: {} line 2", dotenv.display()));

    let nothing = Loader::new().env_vars(Vec::<(String, String)>::new()).no_dotenv();
    let (v, origin) = layered(nothing).await;
    assert_eq!(v, "from-default");
    assert_eq!(origin, "default: #[secret(default = ...)]");

    // Not found in the backend falls back silently to env.
    let empty_backend = Loader::new().backend(MemoryBackend::new()).env_vars(env).no_dotenv();
    let loaded = empty_backend.load_report::<Layered>().await.unwrap();
    assert_eq!(loaded.value.password.expose_secret(), "from-env");
    assert!(loaded.provenance.warnings.is_empty());
}

#[tokio::test]
async fn reordered_precedence_lets_env_override_the_backend() {
    let backend = MemoryBackend::new();
    backend.insert("app/db", SecretValue::map([("password", "from-backend")]));
    let loader = Loader::new()
        .backend(backend)
        .env_vars([("DB_PASSWORD", "from-env")])
        .no_dotenv()
        .precedence([Layer::Env, Layer::Backend, Layer::Dotenv, Layer::Default]);
    let (v, origin) = layered(loader).await;
    assert_eq!(v, "from-env");
    assert_eq!(origin, "env var: DB_PASSWORD");
}

use skm_testing::logs::capture;

#[tokio::test]
async fn unreachable_backend_falls_back_with_a_warning_unless_strict() {
    let backend = MemoryBackend::new();
    backend.insert("app/db", SecretValue::map([("password", SENTINEL)]));
    backend.fail_all(FetchError::unavailable("connection refused"));
    let loader = Loader::new()
        .backend(backend)
        .env_vars([("DB_PASSWORD", "from-env")])
        .no_dotenv();

    let (logs, _guard) = capture();
    let loaded = loader.load_report::<Layered>().await.unwrap();
    assert_eq!(loaded.value.password.expose_secret(), "from-env");
    assert_eq!(loaded.provenance.warnings.len(), 1, "{:?}", loaded.provenance.warnings);
    assert!(loaded.provenance.warnings[0].contains("backend unavailable"));
    let logs = logs.text();
    assert!(logs.contains("WARN") && logs.contains("backend failed"), "{logs}");
    assert!(!logs.contains("from-env") && !logs.contains(SENTINEL), "{logs}");

    let err = loader
        .clone()
        .strict(true)
        .load::<Layered>()
        .await
        .err()
        .expect("strict must fail");
    let text = err.to_string();
    assert!(text.contains("field `password`"), "{text}");
    assert!(text.contains("backend unavailable (connection refused)"), "{text}");
    assert!(text.contains("env var DB_PASSWORD: found\n"), "{text}");
    let load = err.as_load().unwrap();
    assert_eq!(
        load.fields[0].reason,
        skm::FieldProblem::Backend(FailureKind::Unavailable)
    );
}

#[derive(Secrets)]
#[allow(dead_code)] // The test counts fetches; not every field is read back.
struct SixOnTwo {
    #[secret(path = "db", key = "user")]
    user: SecretString,
    #[secret(path = "db", key = "password")]
    password: SecretString,
    #[secret(path = "db", key = "host")]
    host: SecretString,
    #[secret(path = "db", key = "port")]
    port: SecretBox<u16>,
    #[secret(path = "api", key = "key")]
    api_key: SecretString,
    #[secret(path = "api", key = "secret")]
    api_secret: SecretString,
}

#[tokio::test]
async fn six_fields_on_two_paths_cost_two_fetches_in_one_call() {
    let backend = MemoryBackend::new();
    backend.insert(
        "db",
        SecretValue::map([("user", "u"), ("password", "p"), ("host", "h"), ("port", "5432")]),
    );
    backend.insert("api", SecretValue::map([("key", "k"), ("secret", "s")]));
    let loader = Loader::new()
        .backend(backend.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new());
    let s: SixOnTwo = loader.load().await.unwrap();
    assert_eq!(backend.fetch_calls(), 1, "one backend call per load");
    assert_eq!(backend.fetched_paths(), 2, "one fetch per distinct path");
    assert_eq!(*s.port.expose_secret(), 5432);
    assert_eq!(s.user.expose_secret(), "u");
    assert_eq!(s.api_secret.expose_secret(), "s");
}

#[derive(Debug, Clone, serde::Deserialize, Zeroize)]
struct DbConfig {
    user: String,
    port: u16,
}

#[derive(Secrets)]
struct FiveFields {
    #[secret(path = "svc/a", key = "token", env = "A_TOKEN")]
    present: SecretString,
    #[secret(path = "svc/missing", env = "MISSING_VAR")]
    missing: SecretString,
    #[secret(path = "svc/a", key = "port", env = "A_PORT")]
    wrong_type: SecretBox<u16>,
    #[secret(path = "svc/down", key = "x", env = "DOWN_VAR")]
    forbidden: SecretString,
    #[secret(path = "svc/db")]
    db: SecretBox<DbConfig>,
}

#[tokio::test]
async fn every_failing_field_is_reported_at_once_without_values() {
    let backend = MemoryBackend::new();
    backend.insert("svc/a", SecretValue::map([("token", SENTINEL), ("port", SENTINEL)]));
    backend.insert(
        "svc/db",
        SecretValue::text(format!(r#"{{"user":"{SENTINEL}","port":5432}}"#)),
    );
    backend.fail_path(
        "svc/down",
        FetchError::new(FailureKind::Forbidden, "AccessDeniedException"),
    );
    let dotenv = dotenv_file(&format!("A_TOKEN={SENTINEL}\n"));
    let loader = Loader::new()
        .backend(backend)
        .dotenv(&dotenv)
        .env_vars([("UNRELATED", SENTINEL)])
        .strict(true);

    let (logs, _guard) = capture();
    let err = loader.load::<FiveFields>().await.err().expect("three fields fail");
    let display = err.to_string();
    let debug = format!("{err:?}");
    let load = err.as_load().unwrap();
    let failing: Vec<&str> = load.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(failing, ["missing", "wrong_type", "forbidden"], "{display}");
    assert!(
        display.starts_with("could not load 3 of 5 secrets of `FiveFields`"),
        "{display}"
    );

    // Each names field, path, key, env, the sources tried and the reason.
    assert!(
        display.contains("field `missing` (path `svc/missing`, env `MISSING_VAR`): missing"),
        "{display}"
    );
    assert!(
        display.contains("memory secret `svc/missing`: missing (no secret at `svc/missing`)"),
        "{display}"
    );
    assert!(display.contains("env var MISSING_VAR: missing (not set)"), "{display}");
    assert!(display.contains("MISSING_VAR not in file"), "{display}");
    assert!(
        display.contains("field `wrong_type` (path `svc/a`, key `port`, env `A_PORT`): wrong type"),
        "{display}"
    );
    assert!(display.contains("not a valid `SecretBox<u16>`"), "{display}");
    assert!(display.contains("not a valid u16"), "{display}");
    assert!(
        display.contains("field `forbidden` (path `svc/down`, key `x`, env `DOWN_VAR`): access denied"),
        "{display}"
    );
    assert!(display.contains("access denied (AccessDeniedException)"), "{display}");

    for text in [&display, &debug, &logs.text()] {
        assert!(!text.contains(SENTINEL), "sentinel leaked:\n{text}");
    }

    // The loaded struct itself never shows values either.
    let ok = Loader::new().backend({
        let b = MemoryBackend::new();
        b.insert("svc/a", SecretValue::map([("token", SENTINEL), ("port", "1")]));
        b.insert("svc/missing", SecretValue::text(SENTINEL));
        b.insert("svc/down", SecretValue::map([("x", SENTINEL)]));
        b.insert(
            "svc/db",
            SecretValue::text(format!(r#"{{"user":"{SENTINEL}","port":5432}}"#)),
        );
        b
    });
    let loaded = ok.no_dotenv().load_report::<FiveFields>().await.unwrap();
    let v = &loaded.value;
    assert_eq!(v.db.expose_secret().user, SENTINEL);
    assert_eq!(v.db.expose_secret().port, 5432);
    let shown = format!(
        "{:?} {:?} {:?} {:?} {:?} {} {:?}",
        v.present, v.missing, v.wrong_type, v.forbidden, v.db, loaded.provenance, loaded.provenance
    );
    assert!(!shown.contains(SENTINEL), "{shown}");
}

#[derive(Secrets)]
#[secrets(prefix = "myapp/{profile}")]
struct WithPrefix {
    #[secret(path = "jwt", key = "secret")]
    jwt: SecretString,
    #[secret(flatten)]
    db: Nested,
    #[secret(env = "OPTIONAL_VAR")]
    optional: Option<SecretString>,
    #[secret(env = "PORT", default = "8080", plain)]
    port: u16,
}

#[derive(Secrets)]
#[secrets(prefix = "db")]
struct Nested {
    #[secret(path = "main", key = "url", env = "DATABASE_URL")]
    url: SecretString,
}

#[tokio::test]
async fn prefix_profile_flatten_option_and_plain() {
    let backend = MemoryBackend::new();
    backend.insert("myapp/prod/jwt", SecretValue::map([("secret", "j")]));
    backend.insert("myapp/prod/db/main", SecretValue::map([("url", "postgres://x")]));
    let loader = Loader::new()
        .backend(backend)
        .no_dotenv()
        .env_vars([("SKM_PROFILE", "prod")]);
    let loaded = loader.load_report::<WithPrefix>().await.unwrap();
    assert_eq!(loaded.value.jwt.expose_secret(), "j");
    assert_eq!(loaded.value.db.url.expose_secret(), "postgres://x");
    assert!(loaded.value.optional.is_none());
    assert_eq!(loaded.value.port, 8080);
    assert_eq!(
        loaded.provenance.get("db.url").unwrap().location,
        "secret myapp/prod/db/main key url"
    );
    assert_eq!(loaded.provenance.get("optional").unwrap().layer, None);

    let fields = <WithPrefix as Secrets>::spec().resolve(Some("dev")).unwrap();
    let paths: Vec<_> = fields.iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        paths,
        [
            Some("myapp/dev/jwt".to_string()),
            Some("myapp/dev/db/main".into()),
            None,
            None
        ]
    );

    let err = Loader::new().no_dotenv().env_vars(Vec::<(String, String)>::new());
    let e = err.load::<WithPrefix>().await.err().unwrap().to_string();
    assert!(e.contains("needs a profile: set SKM_PROFILE"), "{e}");
}

#[tokio::test]
async fn not_a_json_object_with_key_is_an_error_not_a_miss() {
    let backend = MemoryBackend::new();
    backend.insert("app/db", SecretValue::text(SENTINEL));
    let loader = Loader::new()
        .backend(backend)
        .no_dotenv()
        .env_vars([("DB_PASSWORD", "env")]);
    let e = loader.load::<Layered>().await.err().unwrap().to_string();
    assert!(
        e.contains("is not a JSON object, so key `password` cannot be read"),
        "{e}"
    );
    assert!(!e.contains(SENTINEL));
}

#[tokio::test]
async fn malformed_dotenv_names_the_line_not_the_value() {
    let path = dotenv_file(&format!("A=1\nB=2\n{SENTINEL} not an assignment\n"));
    let e = Loader::new()
        .dotenv(&path)
        .load::<Layered>()
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("line 3"), "{e}");
    assert!(!e.contains(SENTINEL), "{e}");
}

#[test]
fn spec_is_static_data() {
    let spec = <SixOnTwo as Secrets>::spec();
    assert_eq!(spec.name, "SixOnTwo");
    assert_eq!(spec.fields.len(), 6);
    let skm::FieldKind::Secret(port) = &spec.fields[3].kind else {
        panic!()
    };
    assert_eq!(
        (port.path.as_deref(), port.key.as_deref(), &*port.type_name),
        (Some("db"), Some("port"), "SecretBox<u16>")
    );
    assert!(!port.optional && port.default.is_none());
}

#[tokio::test]
async fn memory_backend_passes_the_conformance_suite() {
    let report = skm_runtime::conformance::run_all(Arc::new(MemoryBackend::new()), "conf").await;
    // The memory backend can be made neither forbidden, unavailable nor throttled.
    assert_eq!(report.unsupported, [], "{report:?}");
    assert_eq!(report.not_exercised, ["forbidden", "unavailable", "throttled"]);
    assert_eq!(report.passed.len(), skm_runtime::conformance::CHECKS.len() - 3);
}

#[cfg(feature = "local")]
#[tokio::test]
async fn local_store_passes_the_conformance_suite() {
    use skm::backend::local::{LocalKey, LocalStore};
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join(".skm")).key(LocalKey::from_bytes([7; 32]));
    // The same files read with another key: the store cannot decrypt them.
    let wrong = LocalStore::open(dir.path().join(".skm")).key(LocalKey::from_bytes([8; 32]));
    let report = skm_runtime::conformance::run_all(Arc::new(store), "conf").await;
    assert_eq!(report.unsupported, [], "{report:?}");
    assert_eq!(report.not_exercised, ["forbidden", "unavailable", "throttled"]);
    let decrypt = skm_runtime::conformance::fails_as(&wrong, "conf", skm::backend::FailureKind::Decryption).await;
    assert!(matches!(decrypt, skm_runtime::conformance::Outcome::Passed));
}

#[test]
fn detection_order() {
    use skm::backend::registry;
    use skm_runtime::detect::detect;
    // A store path that never exists, so a `.skm/` left in the working directory cannot change the answer.
    let with = |vars: &'static [(&'static str, &'static str)]| {
        move |n: &str| {
            if n == "SKM_LOCAL_PATH" {
                return Some("/nonexistent/skm-test-store".to_string());
            }
            vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(detect(&with(&[])).unwrap().name(), "none");
    assert_eq!(
        detect(&with(&[("SKM_BACKEND", "none"), ("AWS_REGION", "x")]))
            .unwrap()
            .name(),
        "none"
    );
    let e = detect(&with(&[("SKM_BACKEND", "s3")])).unwrap_err().to_string();
    assert!(e.contains("unknown backend `s3`"), "{e}");
    let aws = detect(&with(&[
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        ("VAULT_ADDR", "http://v"),
    ]))
    .unwrap();
    let compiled = |name: &str| registry::find(name).is_some_and(|d| d.compiled);
    if compiled("aws") {
        assert_eq!(aws.name(), "aws");
        // Both signals are present: the reason names the winner and the one that lost.
        assert!(aws.reason.starts_with("AWS_DEFAULT_REGION is set"), "{}", aws.reason);
        if compiled("vault") {
            assert!(
                aws.reason.contains("ahead of vault (VAULT_ADDR is set)"),
                "{}",
                aws.reason
            );
        }
    }
    let vault = detect(&with(&[("VAULT_ADDR", "http://v")])).unwrap();
    if compiled("vault") {
        assert_eq!(vault.name(), "vault");
    }
}

#[derive(Secrets)]
struct Binary {
    #[secret(path = "keys/hmac")]
    key: SecretBox<Vec<u8>>,
}

/// Issue 12: bytes come back byte-exact from the backend layer, with no env and no `.env` in play.
#[tokio::test]
async fn all_256_byte_values_round_trip_through_the_backend_layer() {
    let bytes: Vec<u8> = (0..=255u8).collect();
    let backend = MemoryBackend::new();
    backend.insert("keys/hmac", SecretValue::binary(bytes.clone()));
    let loaded = Loader::new()
        .backend(backend)
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .load_report::<Binary>()
        .await
        .unwrap();
    assert_eq!(loaded.value.key.expose_secret(), &bytes);
    let origin = loaded.provenance.get("key").unwrap();
    assert_eq!(
        (origin.layer, origin.location.as_str()),
        (Some(Layer::Backend), "secret keys/hmac")
    );
}

#[derive(Secrets)]
struct Fallback {
    #[secret(path = "svc/token", key = "token", env = "SVC_TOKEN")]
    token: SecretString,
    #[secret(path = "svc/opt", env = "SVC_OPT")]
    optional: Option<SecretString>,
}

/// Issue 17 #7: denied access and failed decryption are configuration errors, not outages.
#[tokio::test]
async fn forbidden_and_decryption_fail_the_load_unless_fallback_is_allowed() {
    for kind in [FailureKind::Forbidden, FailureKind::Decryption] {
        let backend = MemoryBackend::new();
        backend.fail_all(FetchError::new(kind, "denied"));
        let loader = Loader::new()
            .backend(backend)
            .no_dotenv()
            .env_vars([("SVC_TOKEN", "from-env")]);
        let err = loader
            .load::<Fallback>()
            .await
            .err()
            .expect("a misconfigured backend fails the load");
        let failing: Vec<&str> = err.as_load().unwrap().fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(failing, ["token", "optional"], "{kind}: {err}");
        assert!(err.to_string().contains(&kind.to_string()), "{err}");

        let allowed = loader
            .clone()
            .allow_fallback_on(kind)
            .load_report::<Fallback>()
            .await
            .unwrap();
        assert_eq!(allowed.value.token.expose_secret(), "from-env");
        assert!(allowed.value.optional.is_none());
        assert_eq!(
            allowed.provenance.warnings.len(),
            2,
            "{:?}",
            allowed.provenance.warnings
        );
        // Strict mode wins over an allowance.
        assert!(loader
            .clone()
            .allow_fallback_on(kind)
            .strict(true)
            .load::<Fallback>()
            .await
            .is_err());
    }
    // Outages keep falling back with a warning.
    let backend = MemoryBackend::new();
    backend.fail_all(FetchError::unavailable("connection refused"));
    let loaded = Loader::new()
        .backend(backend)
        .no_dotenv()
        .env_vars([("SVC_TOKEN", "from-env")])
        .load::<Fallback>()
        .await
        .unwrap();
    assert_eq!(loaded.token.expose_secret(), "from-env");
}

/// Issue 17: a malformed `.env` only matters to fields that reach the `.env` layer.
#[tokio::test]
async fn a_malformed_dotenv_is_an_error_only_for_fields_that_reach_it() {
    let path = dotenv_file(&format!("A=1\n{SENTINEL} not an assignment\n"));
    let backend = MemoryBackend::new();
    backend.insert("svc/token", SecretValue::map([("token", "from-backend")]));
    backend.insert("svc/opt", SecretValue::text("opt"));
    let loader = Loader::new().dotenv(&path).env_vars(Vec::<(String, String)>::new());
    let loaded = loader.clone().backend(backend).load::<Fallback>().await.unwrap();
    assert_eq!(loaded.token.expose_secret(), "from-backend");

    // Once a field needs the file, the error names the position, never the content.
    let err = loader
        .backend(MemoryBackend::new())
        .load::<Fallback>()
        .await
        .err()
        .unwrap();
    assert!(matches!(err, skm::Error::Dotenv(_)), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("line 2"), "{shown}");
    assert!(!shown.contains(SENTINEL), "{shown}");
}

/// Issue 12: every error variant keeps its cause.
#[tokio::test]
async fn errors_keep_their_sources() {
    use std::error::Error as _;
    // A directory where the `.env` file should be: a read error, with the I/O error as its source.
    let dir = std::env::temp_dir().join(format!("skm-test-envdir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = Loader::new()
        .dotenv(&dir)
        .env_vars(Vec::<(String, String)>::new())
        .load::<Fallback>()
        .await;
    let err = err.err().unwrap();
    assert!(matches!(err, skm::Error::Dotenv(_)), "{err:?}");
    assert!(err.source().is_some_and(|s| s.is::<std::io::Error>()), "{err:?}");

    let io = std::io::Error::other("disk on fire");
    let config = skm::Error::Config(skm::ConfigError::new("cannot read the key file").with_source(io));
    assert_eq!(config.source().unwrap().to_string(), "disk on fire");
}
