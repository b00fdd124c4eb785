//! The conformance suite: behaviour every backend must have, as public async test functions.
//!
//! Each backend's tests call [`run_all`] against a live instance (the memory backend, the local store, moto,
//! OpenBao). A backend passes when every function returns without panicking. Functions take a `prefix`
//! so that runs against a shared server do not collide.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use skm_runtime::backend::MemoryBackend;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! skm_runtime::conformance::run_all(Arc::new(MemoryBackend::new()), "conformance").await;
//! # });
//! ```

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::backend::{AdminBackend, AdminErrorKind, Backend, FailureKind, FetchRequest, PutRequest, SecretValue};
use crate::spec::{FieldKind, FieldSpec, SecretSpec, StructSpec, Validators, VersionPin};
use crate::values::Secrets;
use crate::values::Values;
use crate::Loader;

/// Runs every check in this module.
pub async fn run_all<B: AdminBackend + 'static>(backend: Arc<B>, prefix: &str) {
    missing_is_not_found(&*backend, prefix).await;
    put_then_fetch(&*backend, prefix).await;
    many_paths_one_call(&*backend, prefix).await;
    new_version_becomes_current(&*backend, prefix).await;
    create_only_never_overwrites(&*backend, prefix).await;
    list_filters_by_prefix(&*backend, prefix).await;
    delete_makes_it_not_found(&*backend, prefix).await;
    loads_keys_and_types(backend, prefix).await;
}

fn text(v: &SecretValue) -> &str {
    match v {
        SecretValue::Text(s) => s.expose_secret(),
        SecretValue::Binary(_) => panic!("expected a text value"),
    }
}

/// A path that was never written is `NotFound`, not another failure.
pub async fn missing_is_not_found<B: Backend>(backend: &B, prefix: &str) {
    let r = backend
        .fetch(&[FetchRequest::current(format!("{prefix}/never-written"))])
        .await;
    assert_eq!(r.len(), 1, "one result per request");
    let e = r[0].as_ref().expect_err("a missing path must not be found");
    assert_eq!(e.kind, FailureKind::NotFound, "{e}");
}

/// A written value reads back identically.
pub async fn put_then_fetch<B: AdminBackend>(backend: &B, prefix: &str) {
    let path = format!("{prefix}/plain");
    backend
        .put(PutRequest::new(&path, SecretValue::text("v1 with spaces & ünïcode")))
        .await
        .expect("put");
    let r = backend.fetch(&[FetchRequest::current(&path)]).await;
    let payload = r[0].as_ref().expect("written path must be found");
    assert_eq!(text(&payload.value), "v1 with spaces & ünïcode");
}

/// Many paths in one call: one result per request, in request order, found and missing mixed.
pub async fn many_paths_one_call<B: AdminBackend>(backend: &B, prefix: &str) {
    let mut requests = Vec::new();
    for i in 0..25 {
        let path = format!("{prefix}/many/{i:02}");
        if i % 5 != 3 {
            backend
                .put(PutRequest::new(&path, SecretValue::text(format!("value-{i}"))))
                .await
                .expect("put");
        }
        requests.push(FetchRequest::current(path));
    }
    let results = backend.fetch(&requests).await;
    assert_eq!(results.len(), requests.len(), "one result per request");
    for (i, r) in results.iter().enumerate() {
        if i % 5 == 3 {
            assert_eq!(
                r.as_ref().err().map(|e| e.kind),
                Some(FailureKind::NotFound),
                "path {i}"
            );
        } else {
            assert_eq!(
                text(&r.as_ref().expect("found").value),
                format!("value-{i}"),
                "path {i} out of order"
            );
        }
    }
}

/// A second put adds a version: current reads the new one, `versions` lists both newest first.
pub async fn new_version_becomes_current<B: AdminBackend>(backend: &B, prefix: &str) {
    let path = format!("{prefix}/versioned");
    let v1 = backend
        .put(PutRequest::new(&path, SecretValue::text("one")))
        .await
        .expect("put 1");
    let v2 = backend
        .put(PutRequest::new(&path, SecretValue::text("two")))
        .await
        .expect("put 2");
    assert_ne!(v1, v2, "each put is a new version");
    let r = backend.fetch(&[FetchRequest::current(&path)]).await;
    assert_eq!(text(&r[0].as_ref().expect("found").value), "two");
    let versions = backend.versions(&path).await.expect("versions");
    assert!(versions.len() >= 2, "both versions listed");
    assert_eq!(versions[0].id, v2, "newest first");
    assert!(versions.iter().any(|v| v.id == v1));
}

/// `create_only` refuses to overwrite and leaves the old value.
pub async fn create_only_never_overwrites<B: AdminBackend>(backend: &B, prefix: &str) {
    let path = format!("{prefix}/create-only");
    let mut first = PutRequest::new(&path, SecretValue::text("original"));
    first.create_only = true;
    backend.put(first).await.expect("first create");
    let mut second = PutRequest::new(&path, SecretValue::text("clobber"));
    second.create_only = true;
    let e = backend.put(second).await.expect_err("second create must fail");
    assert_eq!(e.kind, AdminErrorKind::AlreadyExists, "{e}");
    let r = backend.fetch(&[FetchRequest::current(&path)]).await;
    assert_eq!(text(&r[0].as_ref().expect("found").value), "original");
}

/// `list` returns exactly the paths under a prefix.
pub async fn list_filters_by_prefix<B: AdminBackend>(backend: &B, prefix: &str) {
    for name in ["a", "b", "c"] {
        backend
            .put(PutRequest::new(format!("{prefix}/list/{name}"), SecretValue::text("x")))
            .await
            .expect("put");
    }
    backend
        .put(PutRequest::new(format!("{prefix}/unlisted"), SecretValue::text("x")))
        .await
        .expect("put");
    let listed: Vec<String> = backend
        .list(&format!("{prefix}/list/"))
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(
        listed,
        ["a", "b", "c"].map(|n| format!("{prefix}/list/{n}")).to_vec(),
        "exactly the paths under the prefix, sorted"
    );
}

/// After `delete`, the path reads as not found.
pub async fn delete_makes_it_not_found<B: AdminBackend>(backend: &B, prefix: &str) {
    let path = format!("{prefix}/deleted");
    backend
        .put(PutRequest::new(&path, SecretValue::text("x")))
        .await
        .expect("put");
    backend
        .delete(&path, crate::backend::DeleteMode::Force)
        .await
        .expect("delete");
    let r = backend.fetch(&[FetchRequest::current(&path)]).await;
    assert_eq!(r[0].as_ref().err().map(|e| e.kind), Some(FailureKind::NotFound));
}

struct Conf {
    user: SecretString,
    port: SecretBox<u16>,
    whole: SecretString,
}

static CONF_FIELDS: [FieldSpec; 3] = [
    secret_field("user", "conformance/db", Some("user"), "SecretString"),
    secret_field("port", "conformance/db", Some("port"), "SecretBox<u16>"),
    secret_field("whole", "conformance/plain", None, "SecretString"),
];

const fn secret_field(
    name: &'static str,
    path: &'static str,
    key: Option<&'static str>,
    type_name: &'static str,
) -> FieldSpec {
    FieldSpec {
        name,
        kind: FieldKind::Secret(SecretSpec {
            path: Some(path),
            key,
            env: None,
            default: None,
            optional: false,
            plain: false,
            type_name,
            version: VersionPin::Current,
            validate: Validators::NONE,
            rotating: false,
            backend: None,
        }),
    }
}

static CONF_SPEC: StructSpec = StructSpec {
    name: "Conf",
    prefix: Some("{profile}"),
    fields: &CONF_FIELDS,
};

impl Secrets for Conf {
    fn spec() -> &'static StructSpec {
        &CONF_SPEC
    }

    fn from_values(values: &mut Values<'_>) -> Option<Self> {
        let user = values.take("user");
        let port = values.take("port");
        let whole = values.take("whole");
        Some(Conf {
            user: user?,
            port: port?,
            whole: whole?,
        })
    }
}

/// Through the loader: keys of a JSON object secret, a number converted to `u16`, a whole value.
pub async fn loads_keys_and_types<B: AdminBackend + 'static>(backend: Arc<B>, prefix: &str) {
    backend
        .put(PutRequest::new(
            format!("{prefix}/conformance/db"),
            SecretValue::map([("user", "app"), ("port", "5432")]),
        ))
        .await
        .expect("put");
    backend
        .put(PutRequest::new(
            format!("{prefix}/conformance/plain"),
            SecretValue::text("whole value"),
        ))
        .await
        .expect("put");
    // The prefix becomes the profile so that `{profile}/conformance/db` lands under this run's prefix.
    let loader = Loader::new()
        .backend_arc(backend)
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .profile(prefix.replace('/', "-"));
    if prefix.contains('/') {
        // Profiles are one path segment; callers with nested prefixes skip this check.
        return;
    }
    let conf: Conf = loader.load().await.unwrap_or_else(|e| panic!("load failed:\n{e}"));
    assert_eq!(conf.user.expose_secret(), "app");
    assert_eq!(*conf.port.expose_secret(), 5432);
    assert_eq!(conf.whole.expose_secret(), "whole value");
}
