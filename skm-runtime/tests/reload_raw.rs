//! `Loader::load_raw_tracked` / `reload_raw` (what `skm run --restart-on-change` polls with): an unchanged
//! reload asks for versions only, a change refetches just its path, an edited `.env` file is seen, and an
//! outage keeps the last load's state.

use std::borrow::Cow;

use skm_runtime::backend::{FailureKind, FetchError, MemoryBackend, SecretValue};
use skm_runtime::plan::ResolvedField;
use skm_runtime::spec::{SecretSpec, Validators, VersionPin};
use skm_runtime::{Loader, RawValues};

/// A declaration's optional text, borrowed (what the derive emits).
const fn borrowed(s: Option<&'static str>) -> Option<Cow<'static, str>> {
    match s {
        Some(s) => Some(Cow::Borrowed(s)),
        None => None,
    }
}

const fn spec(path: Option<&'static str>, env: Option<&'static str>) -> SecretSpec {
    SecretSpec {
        path: borrowed(path),
        key: None,
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

static A: SecretSpec = spec(Some("app/a"), None);
static B: SecretSpec = spec(Some("app/b"), None);
static C: SecretSpec = spec(Some("app/c"), None);
static FROM_DOTENV: SecretSpec = spec(None, Some("RELOAD_RAW_TOKEN"));

fn field(id: &str, spec: &'static SecretSpec) -> ResolvedField {
    ResolvedField {
        id: id.into(),
        path: spec.path.as_deref().map(String::from),
        key: None,
        env: spec.env.clone(),
        spec: spec.into(),
    }
}

fn value_of(raw: &RawValues, id: &str) -> String {
    let f = raw.fields.iter().find(|f| f.field == id).expect("the field was loaded");
    f.expose_str().expect("text").to_string()
}

fn backend_fields() -> (MemoryBackend, Vec<ResolvedField>) {
    let memory = MemoryBackend::new();
    for (path, v) in [("app/a", "a1"), ("app/b", "b1"), ("app/c", "c1")] {
        memory.insert(path, SecretValue::text(v));
    }
    (memory, vec![field("a", &A), field("b", &B), field("c", &C)])
}

#[tokio::test]
async fn an_unchanged_reload_asks_for_versions_only_and_a_change_refetches_its_path() {
    let (memory, fields) = backend_fields();
    let loader = Loader::new().backend(memory.clone()).no_dotenv();
    let (raw, mut tracker) = loader.load_raw_tracked("App", &fields).await.unwrap();
    assert_eq!(value_of(&raw, "b"), "b1");
    assert_eq!((memory.fetch_calls(), memory.fetched_paths()), (1, 3));

    for _ in 0..3 {
        assert!(loader.reload_raw("App", &fields, &mut tracker).await.unwrap().is_none());
    }
    assert_eq!(memory.version_probes(), 3);
    assert_eq!(memory.fetch_calls(), 1, "an unchanged reload fetched values");

    memory.insert("app/b", SecretValue::text("b2"));
    let new = loader
        .reload_raw("App", &fields, &mut tracker)
        .await
        .unwrap()
        .expect("the change was seen");
    assert_eq!(
        (value_of(&new, "a"), value_of(&new, "b"), value_of(&new, "c")),
        ("a1".into(), "b2".into(), "c1".into())
    );
    assert_eq!(memory.fetched_paths(), 4, "only the changed path was fetched again");
    assert!(loader.reload_raw("App", &fields, &mut tracker).await.unwrap().is_none());
}

#[tokio::test]
async fn an_outage_fails_the_reload_and_keeps_the_last_state() {
    let (memory, fields) = backend_fields();
    let loader = Loader::new().backend(memory.clone()).no_dotenv();
    let (_, mut tracker) = loader.load_raw_tracked("App", &fields).await.unwrap();
    memory.fail_all(FetchError::new(FailureKind::Unavailable, "connection refused"));
    let e = loader.reload_raw("App", &fields, &mut tracker).await.unwrap_err();
    assert!(e.to_string().contains("connection refused"), "{e}");
    memory.clear_failures();
    // Nothing changed meanwhile: the tracker still holds the first load's versions.
    assert!(loader.reload_raw("App", &fields, &mut tracker).await.unwrap().is_none());
    assert_eq!(memory.fetch_calls(), 1);
}

#[tokio::test]
async fn an_edited_dotenv_file_is_seen_by_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let dotenv = dir.path().join(".env");
    std::fs::write(&dotenv, "RELOAD_RAW_TOKEN=first\n").unwrap();
    let fields = vec![field("token", &FROM_DOTENV)];
    let loader = Loader::new().dotenv(&dotenv).env_vars(Vec::<(String, String)>::new());
    let (raw, mut tracker) = loader.load_raw_tracked("App", &fields).await.unwrap();
    assert_eq!(value_of(&raw, "token"), "first");
    assert!(loader.reload_raw("App", &fields, &mut tracker).await.unwrap().is_none());

    std::fs::write(&dotenv, "RELOAD_RAW_TOKEN=second-and-longer\n").unwrap();
    let new = loader
        .reload_raw("App", &fields, &mut tracker)
        .await
        .unwrap()
        .expect("the edit was seen");
    assert_eq!(value_of(&new, "token"), "second-and-longer");
}
