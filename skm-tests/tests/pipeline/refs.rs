//! `skm::figment::refs`: `ref+BACKEND://PATH[#KEY]` values in an app's TOML, resolved from two backends (the
//! local store and a memory backend standing in for Vault) in one fetch call each, never shown by figment's
//! `Debug` or in any error.
#![cfg(feature = "local")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use figment::providers::Serialized;
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Deserialize;
use skm::backend::local::{LocalKey, LocalStore};
use skm::backend::{AdminBackend, Backend, FetchRequest, FetchResult, PutRequest, SecretValue};
use skm::figment::refs::{self, RefsError};
use skm::testing::MemoryBackend;
use skm::Loader;

const DB_URL: &str = "SENTINEL-postgres://app:pw@db/app";
const TOKEN: &str = "SENTINEL-token-77c1";
const API_KEY: &str = "SENTINEL-api-key-9d2e";
const HOST: &str = "SENTINEL-host.internal";
/// The local store's key, as bytes and as `SKM_LOCAL_KEY` (hex).
const KEY: [u8; 32] = [7; 32];

const TOML: &str = r#"
name = "app"
port = 8080
token = "ref+local://app/token"

[database]
url = "ref+local://app/db#url"
port = "ref+local://app/db#port"

[api]
key = "ref+openbao://api#key"
hosts = ["a.example", "ref+vault://api#host"]
"#;

/// A TOML string as a figment source, all in the default profile.
struct Toml(String);

impl Provider for Toml {
    fn metadata(&self) -> Metadata {
        Metadata::named("TOML file")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict: Dict = toml::from_str(&self.0).map_err(|e| figment::Error::from(e.to_string()))?;
        Ok(Profile::Default.collect(dict))
    }
}

#[derive(Debug, Deserialize)]
struct Config {
    name: String,
    port: u16,
    token: String,
    database: Database,
    api: Api,
}

#[derive(Debug, Deserialize)]
struct Database {
    url: String,
    port: u16,
}

#[derive(Debug, Deserialize)]
struct Api {
    key: String,
    hosts: Vec<String>,
}

/// A backend that counts its fetch calls.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Backend>,
    calls: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Backend for Counting {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch(requests).await
    }
}

struct Scene {
    dir: tempfile::TempDir,
    vault: MemoryBackend,
}

impl Scene {
    async fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join(".skm")).key(LocalKey::from_bytes(KEY));
        let db = SecretValue::map([("url", DB_URL), ("port", "5432")]);
        store.put(PutRequest::new("app/db", db)).await.unwrap();
        store
            .put(PutRequest::new("app/token", SecretValue::text(TOKEN)))
            .await
            .unwrap();
        let vault = MemoryBackend::new().named("vault");
        vault.insert("api", SecretValue::map([("key", API_KEY), ("host", HOST)]));
        Scene { dir, vault }
    }

    fn store(&self) -> LocalStore {
        LocalStore::open(self.dir.path().join(".skm")).key(LocalKey::from_bytes(KEY))
    }

    /// A loader with both backends, the local store counted.
    fn loader(&self) -> (Loader, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let local = Counting {
            inner: Arc::new(self.store()),
            calls: calls.clone(),
        };
        let loader = Loader::new()
            .no_dotenv()
            .with_backend("local", local)
            .with_backend("vault", self.vault.clone());
        (loader, calls)
    }
}

fn assert_no_value(what: &str, text: &str) {
    assert!(!text.contains("SENTINEL"), "a value leaked into {what}: {text}");
}

#[tokio::test]
async fn a_toml_loads_references_from_two_backends_in_one_wave() {
    let scene = Scene::new().await;
    let (loader, local_calls) = scene.loader();
    let figment = Figment::from(Toml(TOML.into()));
    let resolved = refs::resolve(&figment, &loader).await.unwrap();
    let config: Config = resolved.extract_lossy().unwrap();
    assert_eq!((config.name.as_str(), config.port), ("app", 8080));
    assert_eq!((config.database.url.as_str(), config.database.port), (DB_URL, 5432));
    assert_eq!(config.token, TOKEN);
    assert_eq!(config.api.key, API_KEY);
    assert_eq!(config.api.hosts, ["a.example", HOST]);

    // Three references to the local store (two of one path), two to Vault: one fetch call each.
    assert_eq!(local_calls.load(Ordering::SeqCst), 1);
    assert_eq!(scene.vault.fetch_calls(), 1);

    let origin = |key: &str| resolved.provenance().get(key).unwrap().to_string();
    assert_eq!(origin("database.url"), "local: secret app/db key url");
    assert_eq!(origin("token"), "local: secret app/token");
    assert_eq!(origin("api.hosts[1]"), "vault: secret api key host");
    assert_eq!(resolved.references().count(), 5);

    // The app's figment holds only the references; the resolved copy shows keys and references only.
    assert_no_value("the figment's Debug", &format!("{figment:?} {figment:#?}"));
    assert_no_value("Resolved's Debug", &format!("{resolved:?} {resolved:#?}"));
    assert!(format!("{resolved:?}").contains("ref+local://app/db#url"));
    assert_no_value("the provenance", &format!("{:?}", resolved.provenance()));
}

#[tokio::test]
async fn a_backend_missing_from_the_loader_is_built_from_its_environment() {
    let scene = Scene::new().await;
    let key_hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let loader = Loader::new().no_dotenv().env_vars([
        ("SKM_LOCAL_PATH", scene.dir.path().join(".skm").display().to_string()),
        ("SKM_LOCAL_KEY", key_hex),
    ]);
    let figment = Figment::from(Serialized::default("token", "ref+local://app/token"));
    let token: String = refs::resolve(&figment, &loader)
        .await
        .unwrap()
        .extract_inner("token")
        .unwrap();
    assert_eq!(token, TOKEN);
}

#[derive(Debug, Deserialize)]
struct WrongType {
    #[allow(dead_code)]
    database: WrongDatabase,
}

#[derive(Debug, Deserialize)]
struct WrongDatabase {
    #[allow(dead_code)]
    url: u16,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
enum Mode {
    Fast,
    Slow,
}

/// A type whose own error quotes the value it was given, as some `Deserialize` impls do.
#[derive(Debug)]
struct Quoting;

impl<'de> Deserialize<'de> for Quoting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Err(serde::de::Error::custom(format!("`{text}` is not a quoting value")))
    }
}

#[tokio::test]
async fn extraction_errors_never_show_a_resolved_value() {
    let scene = Scene::new().await;
    let (loader, _) = scene.loader();
    let figment = Figment::from(Toml(TOML.into()));
    let resolved = refs::resolve(&figment, &loader).await.unwrap();

    // A resolved string where a number is wanted: figment would say `found string "SENTINEL..."`.
    let e = resolved.extract::<WrongType>().unwrap_err();
    let text = format!("{e}\n{e:?}\n{e:#?}");
    assert_no_value("a type error", &text);
    assert!(text.contains(refs::HIDDEN), "{text}");
    assert!(
        e.to_string()
            .contains(r#"for key "database.url" in local: secret app/db key url"#),
        "{e}"
    );
    // A value that is not a secret-looking string is hidden all the same.
    let e = resolved.extract_inner::<bool>("database.port").unwrap_err();
    assert!(!format!("{e} {e:?}").contains("5432"), "{e}");

    // An unknown variant and a message quoting the value.
    let e = resolved.extract_inner::<Mode>("token").unwrap_err();
    assert_no_value("an unknown variant", &format!("{e}\n{e:?}"));
    let e = resolved.extract_inner::<Quoting>("token").unwrap_err();
    let text = format!("{e}\n{e:?}");
    assert_no_value("a custom message", &text);
    assert!(text.contains("[REDACTED]` is not a quoting value"), "{text}");

    // The same through the one-call form, as a `RefsError`.
    let e = refs::extract::<WrongType>(&figment, &loader).await.unwrap_err();
    assert!(matches!(e, RefsError::Figment(_)));
    let text = format!("{e}\n{e:?}");
    assert_no_value("a RefsError", &format!("{text}\n{}", figment::Error::from(e)));
}

#[tokio::test]
async fn a_missing_reference_and_an_unknown_backend_are_reported_together() {
    let scene = Scene::new().await;
    let (loader, local_calls) = scene.loader();
    let figment = Figment::from(Toml(TOML.into()))
        .merge(Serialized::default("database.password", "ref+local://app/db#password"))
        .merge(Serialized::default("cache.url", "ref+nope://cache"))
        .merge(Serialized::default("api.secret", "ref+vault://gone"));
    let e = refs::resolve(&figment, &loader).await.unwrap_err();
    let RefsError::Resolve(ref error) = e else {
        panic!("{e}")
    };
    let failed: Vec<&str> = error
        .as_load()
        .unwrap()
        .fields
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(failed, ["api.secret", "cache.url", "database.password"]);
    let text = format!("{e}\n{e:?}\n{error:#?}");
    assert_no_value("the failure report", &text);
    for needle in [
        "ref+local://app/db#password",
        "ref+nope://cache",
        "unknown backend `nope`",
        "ref+vault://gone",
        "figment references",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    // Still one wave: the failures came from the same single call per backend.
    assert_eq!(local_calls.load(Ordering::SeqCst), 1);
    assert_eq!(scene.vault.fetch_calls(), 1);
}

#[tokio::test]
async fn only_the_selected_profile_is_resolved() {
    let scene = Scene::new().await;
    let (loader, _) = scene.loader();
    // A reference in a profile that is not selected is never read (here it would fail).
    let figment = Figment::from(Serialized::default("token", "ref+local://app/token"))
        .merge(Serialized::default("token", "ref+local://nowhere").profile("release"));
    let resolved = refs::resolve(&figment, &loader).await.unwrap();
    assert_eq!(resolved.extract_inner::<String>("token").unwrap(), TOKEN);
    let e = refs::resolve(&figment.select("release"), &loader).await.unwrap_err();
    assert!(e.to_string().contains("ref+local://nowhere"), "{e}");
}
