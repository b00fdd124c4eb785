//! The conformance suite: behaviour every backend must have (feature `conformance`).
//!
//! [`Suite`] runs every check in [`CHECKS`] against a live instance (the memory backend, the local store, moto,
//! OpenBao, drongo, the Key Vault test server) and returns a [`Report`]: which checks passed, which the backend
//! answered with [`FailureKind::Unsupported`] (with its reason) and which failure kinds were not exercised
//! because the caller gave no backend in that state. A check that fails panics, naming the check. Nothing is
//! skipped silently: a caller asserts the report it expects (e.g. `report.assert_complete()`).
//!
//! Checks take a `prefix` so that runs against a shared server do not collide.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use skm_runtime::backend::MemoryBackend;
//! use skm_runtime::conformance::Suite;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let report = Suite::new(Arc::new(MemoryBackend::new()), "conformance").run().await;
//! assert_eq!(report.passed.len(), skm_runtime::conformance::CHECKS.len() - 3);
//! assert_eq!(report.not_exercised, ["forbidden", "unavailable", "throttled"]);
//! # });
//! ```

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::backend::{AdminBackend, AdminErrorKind, Backend, FailureKind, FetchRequest, PutRequest, SecretValue};
use crate::spec::{FieldKind, FieldSpec, SecretSpec, StructSpec, Validators, VersionPin};
use crate::values::Secrets;
use crate::values::Values;
use crate::Loader;

/// Every check [`Suite::run`] performs, in order.
pub const CHECKS: &[&str] = &[
    "missing_is_not_found",
    "put_then_fetch",
    "binary_all_256_bytes",
    "hundred_paths_one_call",
    "new_version_becomes_current",
    "version_pins",
    "current_versions",
    "create_only_never_overwrites",
    "check_and_set",
    "list_filters_by_prefix",
    "delete_makes_it_not_found",
    "loads_keys_and_types",
    "key_on_text_is_invalid",
    "forbidden",
    "unavailable",
    "throttled",
];

/// What a [`Suite`] run found. Every name of [`CHECKS`] is in exactly one of the three lists.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Checks that ran and passed.
    pub passed: Vec<&'static str>,
    /// Checks the backend answered with [`FailureKind::Unsupported`] or declined (e.g. no check-and-set),
    /// with the reason.
    pub unsupported: Vec<(&'static str, String)>,
    /// Failure kinds the caller gave no backend for (see [`Suite::forbidden`] and the like).
    pub not_exercised: Vec<&'static str>,
}

impl Report {
    /// How many checks were accounted for; always [`CHECKS`]`.len()` after a run.
    pub fn accounted(&self) -> usize {
        self.passed.len() + self.unsupported.len() + self.not_exercised.len()
    }

    /// Panics unless every check passed.
    pub fn assert_complete(&self) {
        assert!(
            self.unsupported.is_empty() && self.not_exercised.is_empty(),
            "conformance checks not passed: {self:?}"
        );
        assert_eq!(self.passed, CHECKS, "every check, in order");
    }

    /// The names of the unsupported checks.
    pub fn unsupported_names(&self) -> Vec<&'static str> {
        self.unsupported.iter().map(|(n, _)| *n).collect()
    }
}

/// The conformance suite for one backend. Backends in a failure state (a forbidden token, an unreachable
/// address, a throttling proxy) are optional; a failure kind without one is reported as not exercised.
pub struct Suite<B> {
    backend: Arc<B>,
    prefix: String,
    forbidden: Option<Arc<dyn Backend>>,
    unavailable: Option<Arc<dyn Backend>>,
    throttled: Option<Arc<dyn Backend>>,
    skipped: Vec<(&'static str, String)>,
}

impl<B: AdminBackend + 'static> Suite<B> {
    /// The suite for `backend`, writing under `prefix`.
    pub fn new(backend: Arc<B>, prefix: impl Into<String>) -> Self {
        Suite {
            backend,
            prefix: prefix.into(),
            forbidden: None,
            unavailable: None,
            throttled: None,
            skipped: Vec::new(),
        }
    }

    /// Does not run the check `name` (one of [`CHECKS`]), for a documented difference of the backend; the
    /// report lists it as unsupported with `why`, so a skip is never silent.
    ///
    /// # Panics
    /// If `name` is not a check.
    pub fn skip(mut self, name: &'static str, why: impl Into<String>) -> Self {
        assert!(CHECKS.contains(&name), "no conformance check named `{name}`");
        self.skipped.push((name, why.into()));
        self
    }

    /// The same store read with credentials that lack permission: reads must fail as `Forbidden`.
    pub fn forbidden(mut self, backend: Arc<dyn Backend>) -> Self {
        self.forbidden = Some(backend);
        self
    }

    /// The backend at an address that does not answer: reads must fail as `Unavailable`.
    pub fn unavailable(mut self, backend: Arc<dyn Backend>) -> Self {
        self.unavailable = Some(backend);
        self
    }

    /// The store behind a quota it exceeds: reads must fail as `Throttled` once retries run out.
    pub fn throttled(mut self, backend: Arc<dyn Backend>) -> Self {
        self.throttled = Some(backend);
        self
    }

    /// Runs every check of [`CHECKS`], in order.
    pub async fn run(self) -> Report {
        let b = &*self.backend;
        let p = self.prefix.as_str();
        let mut report = Report::default();
        let skipped = self.skipped.clone();
        let skip = |name: &str| skipped.iter().find(|(n, _)| *n == name).map(|(_, why)| why.clone());
        let mut record = |name: &'static str, outcome: Outcome| match outcome {
            Outcome::Passed => report.passed.push(name),
            Outcome::Unsupported(why) => report.unsupported.push((name, why)),
            Outcome::NotExercised => report.not_exercised.push(name),
        };
        // Runs a check unless the caller skipped it (then recorded as unsupported, with the caller's reason).
        macro_rules! check {
            ($name:literal, $call:expr) => {
                let outcome = match skip($name) {
                    Some(why) => Outcome::Unsupported(why),
                    None => $call.await,
                };
                record($name, outcome);
            };
        }
        check!("missing_is_not_found", missing_is_not_found(b, p));
        check!("put_then_fetch", put_then_fetch(b, p));
        check!("binary_all_256_bytes", binary_all_256_bytes(b, p));
        check!("hundred_paths_one_call", hundred_paths_one_call(b, p));
        check!("new_version_becomes_current", new_version_becomes_current(b, p));
        check!("version_pins", version_pins(b, p));
        check!("current_versions", current_versions(b, p));
        check!("create_only_never_overwrites", create_only_never_overwrites(b, p));
        check!("check_and_set", check_and_set(b, p));
        check!("list_filters_by_prefix", list_filters_by_prefix(b, p));
        check!("delete_makes_it_not_found", delete_makes_it_not_found(b, p));
        check!("loads_keys_and_types", loads_keys_and_types(self.backend.clone(), p));
        check!(
            "key_on_text_is_invalid",
            key_on_text_is_invalid(self.backend.clone(), p)
        );
        for (name, kind, faulty) in [
            ("forbidden", FailureKind::Forbidden, &self.forbidden),
            ("unavailable", FailureKind::Unavailable, &self.unavailable),
            ("throttled", FailureKind::Throttled, &self.throttled),
        ] {
            let outcome = match faulty {
                Some(faulty) => fails_as(&**faulty, p, kind).await,
                None => Outcome::NotExercised,
            };
            record(name, outcome);
        }
        assert_eq!(
            report.accounted(),
            CHECKS.len(),
            "every check accounted for: {report:?}"
        );
        report
    }
}

/// Runs the suite without failure-state backends and returns its report.
pub async fn run_all<B: AdminBackend + 'static>(backend: Arc<B>, prefix: &str) -> Report {
    Suite::new(backend, prefix).run().await
}

/// How one check ended (a failed check panics instead).
#[derive(Debug)]
pub enum Outcome {
    /// The check ran and passed.
    Passed,
    /// The backend does not support what the check needs; the reason.
    Unsupported(String),
    /// No backend in the needed state was given.
    NotExercised,
}

fn text(v: &SecretValue) -> &str {
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

async fn put_ok<B: AdminBackend>(backend: &B, request: PutRequest) -> String {
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

/// The profile a loader check runs under: `prefix` as one path segment (profiles cannot hold `/`).
fn profile_of(prefix: &str) -> String {
    prefix.replace('/', "-")
}

/// Through the loader: keys of a JSON object secret, a number converted to `u16`, a whole value.
pub async fn loads_keys_and_types<B: AdminBackend + 'static>(backend: Arc<B>, prefix: &str) -> Outcome {
    // The declarations use the prefix `{profile}`, so the secrets go under this run's profile.
    let profile = profile_of(prefix);
    put_ok(
        &*backend,
        PutRequest::new(
            format!("{profile}/conformance/db"),
            SecretValue::map([("user", "app"), ("port", "5432")]),
        ),
    )
    .await;
    put_ok(
        &*backend,
        PutRequest::new(
            format!("{profile}/conformance/plain"),
            SecretValue::text("conformance-sentinel-whole"),
        ),
    )
    .await;
    let loader = Loader::new()
        .backend_arc(backend)
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .profile(profile);
    let conf: Conf = loader.load().await.unwrap_or_else(|e| panic!("load failed:\n{e}"));
    assert_eq!(conf.user.expose_secret(), "app");
    assert_eq!(*conf.port.expose_secret(), 5432);
    assert_eq!(conf.whole.expose_secret(), "conformance-sentinel-whole");
    Outcome::Passed
}

struct KeyOnText {
    _user: SecretString,
}

static KEY_ON_TEXT_FIELDS: [FieldSpec; 1] = [secret_field("user", "conformance/plain", Some("user"), "SecretString")];

static KEY_ON_TEXT_SPEC: StructSpec = StructSpec {
    name: "KeyOnText",
    prefix: Some("{profile}"),
    fields: &KEY_ON_TEXT_FIELDS,
};

impl Secrets for KeyOnText {
    fn spec() -> &'static StructSpec {
        &KEY_ON_TEXT_SPEC
    }

    fn from_values(values: &mut Values<'_>) -> Option<Self> {
        Some(KeyOnText {
            _user: values.take("user")?,
        })
    }
}

/// Through the loader: a `key` on a value that is not a JSON object is an invalid secret (no fallback),
/// and the error names the field and path, never the value. Runs after [`loads_keys_and_types`].
pub async fn key_on_text_is_invalid<B: AdminBackend + 'static>(backend: Arc<B>, prefix: &str) -> Outcome {
    let profile = profile_of(prefix);
    let loader = Loader::new()
        .backend_arc(backend)
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .profile(profile);
    let err = match loader.load::<KeyOnText>().await {
        Ok(_) => panic!("a key on a text value must not load"),
        Err(crate::Error::Load(e)) => e,
        Err(e) => panic!("expected a load error, got: {e}"),
    };
    assert_eq!(err.fields.len(), 1, "{err}");
    assert!(
        matches!(err.fields[0].reason, crate::error::FieldProblem::Invalid(_)),
        "{err}"
    );
    let shown = err.to_string();
    assert!(shown.contains("conformance/plain"), "the path is named: {shown}");
    assert!(
        !shown.contains("conformance-sentinel-whole"),
        "the value leaked: {shown}"
    );
    Outcome::Passed
}
