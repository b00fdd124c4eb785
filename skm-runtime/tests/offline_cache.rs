//! The last-known-good cache (`Loader::offline_cache`, issue 28): a load succeeds, the backend goes away,
//! the next load starts from the cache with a warning; an old cache, a denied credential and strict mode
//! never use it; the cache file holds no plaintext.

use std::borrow::Cow;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use skm_runtime::backend::{FailureKind, FetchError, MemoryBackend, SecretValue};
use skm_runtime::spec::{FieldKind, FieldSpec, SecretSpec, StructSpec, Validators, VersionPin};
use skm_runtime::{Loader, Secrets, Values};

const SENTINEL: &str = "SENTINEL-offline-cache-5e1d";

/// A declaration's optional text, borrowed (what the derive emits).
const fn borrowed(s: Option<&'static str>) -> Option<Cow<'static, str>> {
    match s {
        Some(s) => Some(Cow::Borrowed(s)),
        None => None,
    }
}

const fn secret(path: &'static str, key: Option<&'static str>, env: Option<&'static str>) -> SecretSpec {
    SecretSpec {
        path: Some(Cow::Borrowed(path)),
        key: borrowed(key),
        env: borrowed(env),
        default: None,
        optional: false,
        plain: false,
        type_name: Cow::Borrowed("SecretString"),
        version: VersionPin::Current,
        validate: Validators::NONE,
        rotating: false,
        backend: None,
    }
}

static APP: StructSpec = StructSpec {
    name: "App",
    prefix: None,
    fields: &[
        FieldSpec {
            name: "jwt",
            kind: FieldKind::Secret(secret("auth/jwt", Some("secret"), Some("JWT_SECRET_KEY"))),
        },
        FieldSpec {
            name: "db",
            kind: FieldKind::Secret(secret("database/url", None, None)),
        },
    ],
};

struct App {
    jwt: SecretString,
    db: SecretString,
}

impl Secrets for App {
    fn spec() -> &'static StructSpec {
        &APP
    }

    fn from_values(values: &mut Values<'_>) -> Option<Self> {
        let jwt = values.take("jwt");
        let db = values.take("db");
        Some(App { jwt: jwt?, db: db? })
    }
}

struct Scene {
    dir: tempfile::TempDir,
    memory: MemoryBackend,
}

impl Scene {
    fn new() -> Scene {
        let memory = MemoryBackend::new().named("AWS Secrets Manager (test)");
        memory.insert(
            "auth/jwt",
            SecretValue::text(format!("{{\"secret\": \"{SENTINEL}-jwt\"}}")),
        );
        memory.insert("database/url", SecretValue::text(format!("{SENTINEL}-db")));
        Scene {
            dir: tempfile::tempdir().unwrap(),
            memory,
        }
    }

    fn store(&self) -> std::path::PathBuf {
        self.dir.path().join(".skm")
    }

    fn loader(&self, max_age: Duration) -> Loader {
        Loader::new()
            .backend(self.memory.clone())
            .no_dotenv()
            .env_vars([
                ("SKM_LOCAL_PATH", self.store().display().to_string()),
                ("SKM_LOCAL_KEY", "5a".repeat(32)),
            ])
            .offline_cache(max_age)
    }

    /// Every byte under the store directory.
    fn stored_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        let mut stack = vec![self.store()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    all.extend(std::fs::read(&path).unwrap());
                }
            }
        }
        all
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn an_outage_at_startup_loads_from_the_cache_with_a_warning() {
    let scene = Scene::new();
    let day = Duration::from_secs(24 * 3600);
    let first = scene.loader(day).load_report::<App>().await.unwrap();
    assert_eq!(first.value.jwt.expose_secret(), format!("{SENTINEL}-jwt"));
    assert!(first.warnings().is_empty(), "{:?}", first.warnings());
    let bytes = scene.stored_bytes();
    assert!(!bytes.is_empty(), "the cache was written");
    assert!(!contains(&bytes, SENTINEL), "the cache holds plaintext");

    // The backend goes away: the next load starts on the kept answers and says so.
    scene
        .memory
        .fail_all(FetchError::unavailable("connection refused (test)"));
    let cached = scene.loader(day).load_report::<App>().await.unwrap();
    assert_eq!(cached.value.jwt.expose_secret(), format!("{SENTINEL}-jwt"));
    assert_eq!(cached.value.db.expose_secret(), format!("{SENTINEL}-db"));
    let origin = cached.provenance.get("jwt").unwrap();
    assert!(
        origin.location.starts_with("offline cache (written ") && origin.location.contains("AWS Secrets Manager"),
        "{origin:?}"
    );
    assert_eq!(cached.warnings().len(), 2, "{:?}", cached.warnings());
    assert!(cached.warnings().iter().all(|w| w.contains("offline cache")));
    for text in cached.warnings().iter().chain([&format!("{:?}", cached.provenance)]) {
        assert!(!text.contains(SENTINEL), "{text}");
    }

    // A load served from the cache does not refresh it; strict mode never uses it.
    let strict = scene.loader(day).strict(true).load::<App>().await;
    assert!(strict.is_err(), "strict mode used the cache");

    // Without the cache, the same outage fails the load (the control).
    let plain = Loader::new()
        .backend(scene.memory.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .load::<App>()
        .await;
    assert!(plain.is_err());
}

#[tokio::test]
async fn a_denied_credential_or_a_missing_secret_never_falls_back_to_the_cache() {
    let scene = Scene::new();
    let day = Duration::from_secs(24 * 3600);
    scene.loader(day).load::<App>().await.unwrap();
    for (kind, error) in [
        (
            FailureKind::Forbidden,
            FetchError::new(FailureKind::Forbidden, "AccessDenied (test)"),
        ),
        (FailureKind::NotFound, FetchError::not_found("no such secret (test)")),
        (
            FailureKind::Decryption,
            FetchError::new(FailureKind::Decryption, "KMS (test)"),
        ),
    ] {
        scene.memory.fail_all(error);
        let Err(e) = scene.loader(day).load::<App>().await else {
            panic!("{kind:?} fell back to the cache");
        };
        assert!(!e.to_string().contains("offline cache"), "{e}");
    }
}

#[tokio::test]
async fn a_cache_older_than_its_maximum_age_is_not_used() {
    let scene = Scene::new();
    let second = Duration::from_secs(1);
    scene.loader(second).load::<App>().await.unwrap();
    scene
        .memory
        .fail_all(FetchError::unavailable("connection refused (test)"));
    // The cache counts whole seconds: past one second, it is too old.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let Err(e) = scene.loader(second).load_report::<App>().await else {
        panic!("a cache older than its maximum age was used");
    };
    assert!(e.to_string().contains("unavailable"), "{e}");
}

#[tokio::test]
async fn another_key_cannot_read_the_cache_and_the_load_says_why() {
    let scene = Scene::new();
    let day = Duration::from_secs(24 * 3600);
    scene.loader(day).load::<App>().await.unwrap();
    scene
        .memory
        .fail_all(FetchError::unavailable("connection refused (test)"));
    let other_key = Loader::new()
        .backend(scene.memory.clone())
        .no_dotenv()
        .env_vars([
            ("SKM_LOCAL_PATH", scene.store().display().to_string()),
            ("SKM_LOCAL_KEY", "6b".repeat(32)),
        ])
        .offline_cache(day);
    let Err(e) = other_key.load::<App>().await else {
        panic!("a cache sealed with another key was used");
    };
    assert!(e.to_string().contains("unavailable"), "{e}");
}
