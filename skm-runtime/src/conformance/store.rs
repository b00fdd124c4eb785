//! The checks on the backend's own API: reads, writes, versions, listings, failures.

use secrecy::{ExposeSecret, SecretBox};

use super::Outcome;
use crate::backend::{AdminBackend, AdminErrorKind, Backend, FailureKind, FetchRequest, PutRequest, SecretValue};
use crate::spec::VersionPin;

pub(super) fn text(v: &SecretValue) -> &str {
    match v {
        SecretValue::Text(s) => s.expose_secret(),
        SecretValue::Binary(_) => panic!("expected a text value"),
    }
}

/// Whether a version a read reports is the id `put` returned: the same text, or a resource name of that
/// version (Secret Manager reports `projects/p/secrets/s/versions/3` so that provenance shows the mapped
/// secret id; its `put` returns `3`, which pins the same version).
fn same_version(read: &str, put: &str) -> bool {
    read == put || read.strip_suffix(put).is_some_and(|head| head.ends_with("/versions/"))
}

pub(super) async fn put_ok<B: AdminBackend>(backend: &B, request: PutRequest) -> String {
    let path = request.path.clone();
    backend
        .put(request)
        .await
        .unwrap_or_else(|e| panic!("put `{path}` failed: {e}"))
}

/// A path that was never written is `NotFound`, not another failure.
pub async fn missing_is_not_found<B: Backend>(backend: &B, prefix: &str) -> Outcome {
    let r = backend
        .fetch(&[FetchRequest::current(format!("{prefix}/never-written"))])
        .await;
    assert_eq!(r.len(), 1, "one result per request");
    let e = r[0].as_ref().expect_err("a missing path must not be found");
    assert_eq!(e.kind, FailureKind::NotFound, "{e}");
    Outcome::Passed
}

/// A written value reads back identically, with the version `put` returned.
pub async fn put_then_fetch<B: AdminBackend>(backend: &B, prefix: &str) -> Outcome {
    let path = format!("{prefix}/plain");
    let version = put_ok(
        backend,
        PutRequest::new(&path, SecretValue::text("v1 with spaces & ünïcode")),
    )
    .await;
    let r = backend.fetch(&[FetchRequest::current(&path)]).await;
    let payload = r[0].as_ref().expect("written path must be found");
    assert_eq!(text(&payload.value), "v1 with spaces & ünïcode");
    if let Some(read) = &payload.version {
        assert!(
            same_version(read, &version),
            "the version read ({read}) is the one put returned ({version})"
        );
    }
    Outcome::Passed
}

/// A binary value holding every byte value 0..=255 reads back byte-exact, as binary.
pub async fn binary_all_256_bytes<B: AdminBackend>(backend: &B, prefix: &str) -> Outcome {
    let path = format!("{prefix}/binary");
    let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    match backend
        .put(PutRequest::new(
            &path,
            SecretValue::Binary(SecretBox::new(Box::new(bytes.clone()))),
        ))
        .await
    {
        Ok(_) => {}
        Err(e) if e.kind == FailureKind::Unsupported => return Outcome::Unsupported(e.to_string()),
        Err(e) => panic!("put of a binary value failed: {e}"),
    }
    let r = backend.fetch(&[FetchRequest::current(&path)]).await;
    match &r[0].as_ref().expect("written binary path must be found").value {
        SecretValue::Binary(b) => assert!(b.expose_secret() == &bytes, "binary value not byte-exact"),
        SecretValue::Text(_) => panic!("a binary value came back as text"),
    }
    Outcome::Passed
}

/// 100 paths in one call: one result per request, in request order, found and missing mixed.
pub async fn hundred_paths_one_call<B: AdminBackend>(backend: &B, prefix: &str) -> Outcome {
    let mut requests = Vec::new();
    for i in 0..100 {
        let path = format!("{prefix}/many/{i:03}");
        if i % 7 != 3 {
            put_ok(backend, PutRequest::new(&path, SecretValue::text(format!("value-{i}")))).await;
        }
        requests.push(FetchRequest::current(path));
    }
    let results = backend.fetch(&requests).await;
    assert_eq!(results.len(), requests.len(), "one result per request");
    for (i, r) in results.iter().enumerate() {
        if i % 7 == 3 {
            assert_eq!(
                r.as_ref().err().map(|e| e.kind),
                Some(FailureKind::NotFound),
                "path {i}"
            );
        } else {
            assert_eq!(
                text(&r.as_ref().unwrap_or_else(|e| panic!("path {i}: {e}")).value),
                format!("value-{i}"),
                "path {i} out of order"
            );
        }
    }
    Outcome::Passed
}

/// A second put adds a version: current reads the new one, `versions` lists both newest first.
pub async fn new_version_becomes_current<B: AdminBackend>(backend: &B, prefix: &str) -> Outcome {
    let path = format!("{prefix}/versioned");
    let v1 = put_ok(backend, PutRequest::new(&path, SecretValue::text("one"))).await;
    let v2 = put_ok(backend, PutRequest::new(&path, SecretValue::text("two"))).await;
    assert_ne!(v1, v2, "each put is a new version");
    let r = backend.fetch(&[FetchRequest::current(&path)]).await;
    assert_eq!(text(&r[0].as_ref().expect("found").value), "two");
    let versions = backend.versions(&path).await.expect("versions");
    assert!(versions.len() >= 2, "both versions listed");
    assert_eq!(versions[0].id, v2, "newest first");
    assert!(versions.iter().any(|v| v.id == v1));
    Outcome::Passed
}

/// Current, previous and an explicit version (the id `put` returned) each read their own value, in one call.
pub async fn version_pins<B: AdminBackend>(backend: &B, prefix: &str) -> Outcome {
    let path = format!("{prefix}/pinned");
    // A second apart: Key Vault orders versions by their creation time, which it keeps in whole seconds.
    let v1 = put_ok(backend, PutRequest::new(&path, SecretValue::text("first"))).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let v2 = put_ok(backend, PutRequest::new(&path, SecretValue::text("second"))).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let v3 = put_ok(backend, PutRequest::new(&path, SecretValue::text("third"))).await;
    let pin = |version: VersionPin| FetchRequest {
        path: path.clone(),
        version,
    };
    let requests = [
        pin(VersionPin::Current),
        pin(VersionPin::Previous),
        pin(VersionPin::Id(v1.clone().into())),
    ];
    let results = backend.fetch(&requests).await;
    assert_eq!(results.len(), 3, "one result per request");
    for (r, (want, id)) in results.iter().zip([("third", &v3), ("second", &v2), ("first", &v1)]) {
        match r {
            Ok(payload) => {
                assert_eq!(text(&payload.value), want, "pinned read");
                if let Some(read) = &payload.version {
                    assert!(
                        same_version(read, id),
                        "the version read for `{want}`: {read}, put returned {id}"
                    );
                }
            }
            Err(e) if e.kind == FailureKind::Unsupported => return Outcome::Unsupported(e.to_string()),
            Err(e) => panic!("pinned read of `{want}` failed: {e}"),
        }
    }
    Outcome::Passed
}

/// `current_versions` names the version `put` returned, and `NotFound` for a missing path; a backend that
/// cannot tell versions cheaply says so (`None`).
pub async fn current_versions<B: AdminBackend>(backend: &B, prefix: &str) -> Outcome {
    let path = format!("{prefix}/cheap-version");
    let v1 = put_ok(backend, PutRequest::new(&path, SecretValue::text("one"))).await;
    let requests = [
        FetchRequest::current(&path),
        FetchRequest::current(format!("{prefix}/cheap-version-missing")),
    ];
    let Some(versions) = backend.current_versions(&requests).await else {
        return Outcome::Unsupported("current_versions returns None: refreshes refetch every path".into());
    };
    assert_eq!(versions.len(), 2, "one entry per request");
    assert_eq!(versions[0].as_ref().expect("the written path's version"), &v1);
    assert_eq!(versions[1].as_ref().err().map(|e| e.kind), Some(FailureKind::NotFound));
    let v2 = put_ok(backend, PutRequest::new(&path, SecretValue::text("two"))).await;
    let versions = backend.current_versions(&requests[..1]).await.expect("still supported");
    assert_eq!(
        versions[0].as_ref().expect("the new version"),
        &v2,
        "a put moves the current version"
    );
    Outcome::Passed
}

/// `create_only` refuses to overwrite and leaves the old value.
pub async fn create_only_never_overwrites<B: AdminBackend>(backend: &B, prefix: &str) -> Outcome {
    let path = format!("{prefix}/create-only");
    let mut first = PutRequest::new(&path, SecretValue::text("original"));
    first.create_only = true;
    put_ok(backend, first).await;
    let mut second = PutRequest::new(&path, SecretValue::text("clobber"));
    second.create_only = true;
    let e = backend.put(second).await.expect_err("second create must fail");
    assert_eq!(e.kind, AdminErrorKind::AlreadyExists, "{e}");
    let r = backend.fetch(&[FetchRequest::current(&path)]).await;
    assert_eq!(text(&r[0].as_ref().expect("found").value), "original");
    Outcome::Passed
}

/// Check-and-set: a write naming the current version succeeds, one naming a stale version fails with
/// `Conflict` and changes nothing. A backend without it refuses `expected_version` with `Unsupported`.
pub async fn check_and_set<B: AdminBackend>(backend: &B, prefix: &str) -> Outcome {
    let path = format!("{prefix}/cas");
    let v1 = put_ok(backend, PutRequest::new(&path, SecretValue::text("one"))).await;
    let mut stale = PutRequest::new(&path, SecretValue::text("lost"));
    stale.expected_version = Some(v1.clone());
    if !backend.supports_cas() {
        let e = backend
            .put(stale)
            .await
            .expect_err("expected_version without CAS must be refused");
        assert_eq!(e.kind, FailureKind::Unsupported, "{e}");
        let r = backend.fetch(&[FetchRequest::current(&path)]).await;
        assert_eq!(
            text(&r[0].as_ref().expect("found").value),
            "one",
            "nothing written unchecked"
        );
        return Outcome::Unsupported("supports_cas() is false".into());
    }
    let mut good = PutRequest::new(&path, SecretValue::text("two"));
    good.expected_version = Some(v1);
    put_ok(backend, good).await;
    let e = backend
        .put(stale)
        .await
        .expect_err("a stale expected_version must fail");
    assert_eq!(e.kind, FailureKind::Conflict, "{e}");
    let r = backend.fetch(&[FetchRequest::current(&path)]).await;
    assert_eq!(
        text(&r[0].as_ref().expect("found").value),
        "two",
        "the conflict changed nothing"
    );
    Outcome::Passed
}

/// `list` returns exactly the paths under a prefix.
pub async fn list_filters_by_prefix<B: AdminBackend>(backend: &B, prefix: &str) -> Outcome {
    for name in ["a", "b", "c"] {
        put_ok(
            backend,
            PutRequest::new(format!("{prefix}/list/{name}"), SecretValue::text("x")),
        )
        .await;
    }
    put_ok(
        backend,
        PutRequest::new(format!("{prefix}/unlisted"), SecretValue::text("x")),
    )
    .await;
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
    Outcome::Passed
}

/// After `delete`, the path reads as not found.
pub async fn delete_makes_it_not_found<B: AdminBackend>(backend: &B, prefix: &str) -> Outcome {
    let path = format!("{prefix}/deleted");
    put_ok(backend, PutRequest::new(&path, SecretValue::text("x"))).await;
    backend
        .delete(&path, crate::backend::DeleteMode::Force)
        .await
        .expect("delete");
    let r = backend.fetch(&[FetchRequest::current(&path)]).await;
    assert_eq!(r[0].as_ref().err().map(|e| e.kind), Some(FailureKind::NotFound));
    Outcome::Passed
}

/// Reading through `faulty` fails as `kind` (the written path; a never-written one may also read as
/// `NotFound` for `Forbidden` and `Decryption`), never as another kind or a value. Reads the path
/// [`put_then_fetch`] writes.
pub async fn fails_as(faulty: &dyn Backend, prefix: &str, kind: FailureKind) -> Outcome {
    let requests = [
        FetchRequest::current(format!("{prefix}/plain")),
        FetchRequest::current(format!("{prefix}/never-written")),
    ];
    let results = faulty.fetch(&requests).await;
    assert_eq!(results.len(), requests.len(), "one result per request");
    for r in &results {
        let e = r
            .as_ref()
            .err()
            .unwrap_or_else(|| panic!("a read through a {kind} backend succeeded"));
        if matches!(kind, FailureKind::Forbidden | FailureKind::Decryption) && e.kind == FailureKind::NotFound {
            // A path that was never written may read as "not found" to a caller who may not see it or cannot
            // decrypt it: only the written one must fail as `kind`.
            continue;
        }
        assert_eq!(e.kind, kind, "{e}");
    }
    assert_eq!(
        results[0].as_ref().err().map(|e| e.kind),
        Some(kind),
        "the written path"
    );
    Outcome::Passed
}
