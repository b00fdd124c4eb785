//! Rotation grace with the memory backend: a `Rotating<T>` field holds the current and the previous version.

use std::time::Duration;

use skm::backend::{FetchError, MemoryBackend, SecretValue};
use skm::{ExposeSecret, Loader, Rotating, SecretBox, SecretString, Secrets, VersionPin, WatchOptions};

#[derive(Secrets)]
struct Jwt {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET")]
    keys: Rotating<SecretString>,
}

fn loader(b: &MemoryBackend) -> Loader {
    Loader::new()
        .backend(b.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

fn jwt(secret: &str) -> SecretValue {
    SecretValue::map([("secret", secret)])
}

fn exposed(keys: &Rotating<SecretString>) -> Vec<String> {
    keys.iter().map(|k| k.expose_secret().to_string()).collect()
}

#[tokio::test]
async fn after_two_versions_both_are_returned_in_one_fetch() {
    let b = MemoryBackend::new();
    b.insert("auth/jwt", jwt("key-v1"));
    b.insert("auth/jwt", jwt("key-v2"));
    let loaded = loader(&b).load_report::<Jwt>().await.unwrap();
    let keys = &loaded.value.keys;
    assert_eq!(keys.current().expose_secret(), "key-v2");
    assert_eq!(keys.previous().map(|k| k.expose_secret()), Some("key-v1"));
    assert_eq!(exposed(keys), ["key-v2", "key-v1"]);
    assert_eq!(b.fetch_calls(), 1, "current and previous are requested together");
    assert_eq!(b.fetched_paths(), 2);
    assert_eq!(loaded.provenance.get("keys").unwrap().version.as_deref(), Some("2"));
    assert!(
        loaded.provenance.warnings.is_empty(),
        "{:?}",
        loaded.provenance.warnings
    );
}

#[tokio::test]
async fn after_one_version_previous_is_none() {
    let b = MemoryBackend::new();
    b.insert("auth/jwt", jwt("key-v1"));
    let secrets: Jwt = loader(&b).load().await.unwrap();
    assert_eq!(secrets.keys.current().expose_secret(), "key-v1");
    assert!(secrets.keys.previous().is_none());
    assert_eq!(exposed(&secrets.keys), ["key-v1"]);
}

/// A previous version is the backend's: next to a value from env it would pair unrelated keys.
#[tokio::test]
async fn a_current_value_from_env_has_no_previous() {
    let b = MemoryBackend::new();
    let secrets: Jwt = Loader::new()
        .backend(b)
        .no_dotenv()
        .env_vars([("JWT_SECRET", "from-env")])
        .load()
        .await
        .unwrap();
    assert_eq!(exposed(&secrets.keys), ["from-env"]);
}

#[tokio::test]
async fn the_spec_marks_the_field_and_the_plan_asks_for_the_previous_version() {
    let skm::FieldKind::Secret(spec) = &Jwt::spec().fields[0].kind else {
        panic!("a secret field");
    };
    assert!(spec.rotating);
    assert_eq!(spec.type_name, "Rotating<SecretString>");
    let fields = Jwt::spec().resolve(None).unwrap();
    let plan = skm_runtime::plan::Plan::new(&fields);
    let pins: Vec<VersionPin> = plan.requests.iter().map(|r| r.version.clone()).collect();
    assert_eq!(pins, [VersionPin::Current, VersionPin::Previous]);
}

/// A typed rotating field converts each version, and validators apply to both: an old placeholder is never
/// accepted as a previous key.
#[tokio::test]
async fn a_previous_version_failing_the_validators_is_dropped_with_a_warning() {
    #[derive(Secrets)]
    struct Signing {
        #[secret(path = "signing", min_len = 8, not = ["changeme"])]
        key: Rotating<SecretString>,
        #[secret(path = "limits", key = "rate")]
        rate: Rotating<SecretBox<u32>>,
        // `plain` converts each version to the inner type.
        #[secret(path = "limits", key = "burst", plain)]
        burst: Rotating<u32>,
    }
    let b = MemoryBackend::new();
    b.insert("signing", SecretValue::text("changeme"));
    b.insert("signing", SecretValue::text("a-real-signing-key"));
    b.insert("limits", SecretValue::map([("rate", "10"), ("burst", "1")]));
    b.insert("limits", SecretValue::map([("rate", "20"), ("burst", "2")]));
    let loaded = loader(&b).load_report::<Signing>().await.unwrap();
    let value = loaded.value;
    assert_eq!(exposed(&value.key), ["a-real-signing-key"]);
    let rates: Vec<u32> = value.rate.iter().map(|r| *r.expose_secret()).collect();
    assert_eq!(rates, [20, 10]);
    assert_eq!(value.burst.iter().copied().collect::<Vec<u32>>(), [2, 1]);
    let warnings = &loaded.provenance.warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("placeholder listed in `not`"), "{warnings:?}");
    assert!(!warnings[0].contains("changeme\""), "{warnings:?}");
}

#[tokio::test]
async fn a_previous_version_that_does_not_convert_is_dropped_unless_strict() {
    #[derive(Secrets)]
    struct Limits {
        #[secret(path = "limits", key = "rate")]
        rate: Rotating<SecretBox<u32>>,
    }
    let b = MemoryBackend::new();
    b.insert("limits", SecretValue::map([("rate", "not-a-number")]));
    b.insert("limits", SecretValue::map([("rate", "20")]));
    let loaded = loader(&b).load_report::<Limits>().await.unwrap();
    assert_eq!(*loaded.value.rate.current().expose_secret(), 20);
    assert!(loaded.value.rate.previous().is_none());
    assert_eq!(loaded.provenance.warnings.len(), 1);
    assert!(loaded.provenance.warnings[0].contains("(previous version)"));

    let err = loader(&b).strict(true).load::<Limits>().await.err().unwrap();
    assert!(err.to_string().contains("previous version"), "{err}");
    assert!(!err.to_string().contains("not-a-number"), "{err}");
}

/// A backend that fails only the previous-version requests, as a store whose history is unreadable would.
#[derive(Debug)]
struct NoHistory(MemoryBackend);

#[async_trait::async_trait]
impl skm::backend::Backend for NoHistory {
    fn name(&self) -> String {
        "no-history".into()
    }

    async fn fetch(&self, requests: &[skm::backend::FetchRequest]) -> Vec<skm::backend::FetchResult> {
        let mut results = self.0.fetch(requests).await;
        for (request, result) in requests.iter().zip(&mut results) {
            if request.version == VersionPin::Previous {
                *result = Err(FetchError::new(
                    skm::backend::FailureKind::Forbidden,
                    "no access to versions",
                ));
            }
        }
        results
    }
}

#[tokio::test]
async fn a_failed_previous_read_warns_or_fails_in_strict_mode() {
    let b = MemoryBackend::new();
    b.insert("auth/jwt", jwt("key-v1"));
    b.insert("auth/jwt", jwt("key-v2"));
    let base = || {
        Loader::new()
            .backend(NoHistory(b.clone()))
            .no_dotenv()
            .env_vars(Vec::<(String, String)>::new())
    };
    let loaded = base().load_report::<Jwt>().await.unwrap();
    assert_eq!(exposed(&loaded.value.keys), ["key-v2"]);
    assert_eq!(loaded.provenance.warnings.len(), 1);
    assert!(
        loaded.provenance.warnings[0].contains("access denied"),
        "{:?}",
        loaded.provenance.warnings
    );

    let err = base().strict(true).load::<Jwt>().await.err().unwrap();
    let field = &err.as_load().unwrap().fields[0];
    assert_eq!(
        field.reason,
        skm::FieldProblem::Backend(skm::backend::FailureKind::Forbidden)
    );
    assert!(err.to_string().contains("(previous version): access denied"), "{err}");
}

#[tokio::test]
async fn rotation_through_watch_shows_the_new_current_and_the_old_as_previous() {
    let b = MemoryBackend::new();
    b.insert("auth/jwt", jwt("key-v1"));
    let mut watch = loader(&b)
        .watch::<Jwt>(WatchOptions::ttl(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(watch.with(|s| exposed(&s.keys)), ["key-v1"]);

    b.insert("auth/jwt", jwt("key-v2"));
    watch.request_refresh();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(watch.with(|s| exposed(&s.keys)), ["key-v2", "key-v1"]);

    b.insert("auth/jwt", jwt("key-v3"));
    watch.request_refresh();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(watch.get().unwrap().keys.current().expose_secret(), "key-v3");
    assert_eq!(watch.with(|s| exposed(&s.keys)), ["key-v3", "key-v2"]);

    // Unchanged versions cost no fetch.
    let fetches = b.fetch_calls();
    watch.request_refresh();
    watch.wait_ticks(3).await;
    assert_eq!(b.fetch_calls(), fetches);
}

#[test]
fn debug_shows_no_value() {
    let keys = Rotating::new(SecretString::from("new-secret"), Some(SecretString::from("old-secret")));
    let debug = format!("{keys:?}");
    assert!(
        !debug.contains("new-secret") && !debug.contains("old-secret"),
        "{debug}"
    );
    assert!(debug.starts_with("Rotating"), "{debug}");
    let (current, previous) = keys.into_parts();
    assert_eq!(current.expose_secret(), "new-secret");
    assert_eq!(previous.unwrap().expose_secret(), "old-secret");
}
