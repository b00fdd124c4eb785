//! The Google Cloud Secret Manager backend against a real drongo server, with Google's own Python client
//! (`google-cloud-secret-manager`, REST transport) as the judge of what GCP stores.
//!
//! Every test starts its own drongo (`skm_testing::Drongo`), so tests share no state. The process
//! environment is never changed; the README card test runs this binary again as a child process with only
//! `GOOGLE_CLOUD_PROJECT` and `SKM_GCP_ENDPOINT` set (see `child_process_entry`).
//!
//! drongo differs from Google Cloud (see `skm_testing::Drongo`); a test that touches a difference names it.
#![cfg(feature = "gcp")]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skm::backend::gcp::{GcpBackend, VersionState};
use skm::backend::{
    AdminBackend, AdminErrorKind, Backend, DeleteMode, FailureKind, FetchRequest, PutRequest, SecretValue,
};
use skm::{ExposeSecret, Loader, SecretBox, SecretString, Secrets, VersionPin};
use skm_testing::{Action, Drongo, Proxy};

const PROJECT: &str = "skm-test";
const SENTINEL: &str = "SENTINEL-gcp-9d41-do-not-leak";

async fn backend(endpoint: &str) -> GcpBackend {
    GcpBackend::builder()
        .project(PROJECT)
        .endpoint(endpoint)
        .build()
        .await
        .expect("backend")
}

fn loader(backend: &GcpBackend) -> Loader {
    Loader::new()
        .backend(backend.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

async fn put(backend: &GcpBackend, path: &str, value: SecretValue) -> String {
    backend.put(PutRequest::new(path, value)).await.expect("put")
}

fn text(result: &skm::backend::FetchResult) -> String {
    match &result.as_ref().expect("found").value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

/// The request's path without the query (Google's client adds `$alt=json;enum-encoding=int`).
fn path_of(r: &skm_testing::RecordedRequest) -> &str {
    r.path.split('?').next().unwrap_or_default()
}

fn pin(path: &str, version: VersionPin) -> FetchRequest {
    FetchRequest {
        path: path.into(),
        version,
    }
}

// ---- Google's client writes, skm reads; and the reverse. ----

const GOOGLE_WRITES: &str = r#"
def make(secret_id, *payloads):
    s = client.create_secret(request={"parent": f"projects/{project}", "secret_id": secret_id,
                                      "secret": {"replication": {"automatic": {}}}})
    for p in payloads:
        client.add_secret_version(request={"parent": s.name, "payload": {"data": p}})
make("auth-jwt", json.dumps({"secret": "jwt-from-google"}).encode())
make("database-connection", json.dumps({"url": "postgres://google@db/app", "port": 6543}).encode())
make("py-token", b"token-1", b"token-2")
make("py-blob", bytes([0, 1, 2, 254, 255]))
print("written")
"#;

#[derive(Secrets)]
struct FromGoogle {
    #[secret(path = "auth/jwt", key = "secret")]
    jwt: SecretString,
    #[secret(path = "database/connection", key = "url")]
    url: SecretString,
    #[secret(path = "database/connection", key = "port")]
    port: SecretBox<u16>,
    #[secret(path = "py/token")]
    token: SecretString,
    #[secret(path = "py/token", version = 1)]
    first_token: SecretString,
    #[secret(path = "py/blob")]
    blob: SecretBox<Vec<u8>>,
}

#[tokio::test]
async fn reads_what_googles_client_writes() {
    let drongo = Drongo::start().await;
    let out = drongo.google_client(PROJECT, GOOGLE_WRITES, b"").await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("written"));

    let b = backend(&drongo.endpoint()).await;
    let loaded = loader(&b)
        .load_report::<FromGoogle>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s = loaded.value;
    assert_eq!(s.jwt.expose_secret(), "jwt-from-google");
    assert_eq!(s.url.expose_secret(), "postgres://google@db/app");
    assert_eq!(*s.port.expose_secret(), 6543);
    assert_eq!(s.token.expose_secret(), "token-2");
    assert_eq!(s.first_token.expose_secret(), "token-1");
    assert_eq!(s.blob.expose_secret(), &vec![0, 1, 2, 254, 255]);
    // Provenance shows the declared path and, in the version, the secret it mapped to.
    let origin = loaded.provenance.get("jwt").expect("origin");
    assert_eq!(origin.source, "Google Cloud Secret Manager (skm-test)");
    assert_eq!(origin.location, "secret auth/jwt key secret");
    assert_eq!(
        origin.version.as_deref(),
        Some("projects/skm-test/secrets/auth-jwt/versions/1")
    );
}

const GOOGLE_READS: &str = r#"
import base64
out = {}
for sid in ["skm-text", "skm-map", "skm-blob"]:
    r = client.access_secret_version(request={"name": f"projects/{project}/secrets/{sid}/versions/latest"})
    out[sid] = base64.b64encode(r.payload.data).decode()
s = client.get_secret(request={"name": f"projects/{project}/secrets/skm-map"})
out["labels"] = dict(s.labels)
out["versions"] = [v.name for v in client.list_secret_versions(request={"parent": f"projects/{project}/secrets/skm-text"})]
print(json.dumps(out))
"#;

#[tokio::test]
async fn googles_client_reads_what_skm_writes() {
    let drongo = Drongo::start().await;
    let proxy = Proxy::start(&drongo.endpoint()).await;
    let b = backend(&proxy.url()).await;
    put(&b, "skm/text", SecretValue::text("first")).await;
    assert_eq!(put(&b, "skm/text", SecretValue::text("héllo wörld")).await, "2");
    let mut tagged = PutRequest::new("skm/map", SecretValue::map([("user", "app"), ("password", "pw")]));
    tagged.tags = vec![("team".into(), "payments".into()), ("env".into(), "prod".into())];
    b.put(tagged).await.expect("put with tags");
    put(&b, "skm/blob", SecretValue::binary(vec![0, 159, 146, 150, 255])).await;

    // Writes carry the payload's CRC32C (drongo does not check it; Google does).
    let adds: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| path_of(r).ends_with(":addVersion"))
        .collect();
    assert_eq!(adds.len(), 4);
    for add in &adds {
        let body = add.json().expect("json body");
        let data = body["payload"]["data"].as_str().expect("base64 data");
        let crc = body["payload"]["dataCrc32c"]
            .as_str()
            .expect("dataCrc32c sent as an int64 string");
        assert_eq!(crc.parse::<u32>().unwrap(), crc32c(&base64_decode(data)));
    }
    // An emulator on loopback gets no credentials at all.
    assert!(proxy
        .requests()
        .iter()
        .all(|r| !r.headers.contains_key("authorization")));

    let out = drongo.google_client(PROJECT, GOOGLE_READS, b"").await;
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json from python");
    assert_eq!(
        base64_decode(seen["skm-text"].as_str().unwrap()),
        "héllo wörld".as_bytes()
    );
    let map: serde_json::Value = serde_json::from_slice(&base64_decode(seen["skm-map"].as_str().unwrap())).unwrap();
    assert_eq!(map, serde_json::json!({"user": "app", "password": "pw"}));
    assert_eq!(
        base64_decode(seen["skm-blob"].as_str().unwrap()),
        vec![0, 159, 146, 150, 255]
    );
    assert_eq!(seen["labels"], serde_json::json!({"team": "payments", "env": "prod"}));
    assert_eq!(seen["versions"].as_array().unwrap().len(), 2);

    // Tags must be valid labels: the error says which and why, and nothing is written.
    let mut bad = PutRequest::new("skm/bad-tags", SecretValue::text("x"));
    bad.tags = vec![("Team".into(), "x".into())];
    let e = b.put(bad).await.expect_err("uppercase label key");
    assert!(e.detail.contains("`Team=x`"), "{e}");
}

/// CRC32C (Castagnoli), bit by bit: an oracle independent of the crate the backend uses.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn base64_decode(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = alphabet.iter().position(|a| *a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

// ---- Names ----

#[derive(Secrets)]
#[secrets(prefix = "myapp/{profile}")]
struct Prefixed {
    #[secret(path = "db/conn", key = "url")]
    url: SecretString,
}

#[derive(Secrets)]
#[allow(dead_code)] // never loads: the collision is the point
struct Colliding {
    #[secret(path = "dup/x")]
    a: SecretString,
    #[secret(path = "dup-x")]
    b: SecretString,
}

#[tokio::test]
async fn paths_map_slashes_to_dashes_and_collisions_name_both() {
    let drongo = Drongo::start().await;
    let b = backend(&drongo.endpoint()).await;
    put(&b, "myapp/prod/db/conn", SecretValue::map([("url", "postgres://prod")])).await;
    put(&b, "dup/x", SecretValue::text("x")).await;
    // Google's client sees the mapped ids.
    let out = drongo
        .google_client(
            PROJECT,
            "print(json.dumps(sorted(s.name for s in client.list_secrets(request={'parent': f'projects/{project}'}))))",
            b"",
        )
        .await;
    let names: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        names,
        [
            "projects/skm-test/secrets/dup-x",
            "projects/skm-test/secrets/myapp-prod-db-conn"
        ]
    );

    // The prefix and `{profile}` map too.
    let s: Prefixed = loader(&b)
        .profile("prod")
        .load()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.url.expose_secret(), "postgres://prod");

    // Two declared paths naming one secret: an error naming both, for both fields.
    let e = loader(&b)
        .load::<Colliding>()
        .await
        .err()
        .expect("collision")
        .to_string();
    assert!(
        e.contains("both map to GCP secret `projects/skm-test/secrets/dup-x`")
            && e.contains("`dup/x`")
            && e.contains("`dup-x`"),
        "{e}"
    );
    // A full resource name is used as is; a missing secret says which id a path mapped to.
    let r = b
        .fetch(&[
            FetchRequest::current("projects/skm-test/secrets/dup-x"),
            FetchRequest::current("not/there"),
            FetchRequest::current("bad path"),
        ])
        .await;
    assert_eq!(text(&r[0]), "x");
    let missing = r[1].as_ref().unwrap_err();
    assert_eq!(missing.kind, FailureKind::NotFound);
    assert!(
        missing
            .detail
            .contains("GCP secret `not-there` (declared path `not/there`)"),
        "{missing}"
    );
    let bad = r[2].as_ref().unwrap_err();
    assert_eq!(bad.kind, FailureKind::Invalid);
    assert!(bad.detail.contains("` ` at byte 3"), "{bad}");
    // `list` answers with secret ids under the mapped prefix.
    let listed: Vec<String> = b.list("myapp/").await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(listed, ["myapp-prod-db-conn"]);
}

// ---- Versions ----

#[derive(Secrets)]
struct Rotated {
    #[secret(path = "rot/key")]
    key: skm::Rotating<SecretString>,
    #[secret(path = "rot/key", version = 1)]
    first: SecretString,
}

#[tokio::test]
async fn pins_and_rotating_read_the_right_versions() {
    let drongo = Drongo::start().await;
    let proxy = Proxy::start(&drongo.endpoint()).await;
    let b = backend(&proxy.url()).await;
    for v in ["k1", "k2", "k3"] {
        put(&b, "rot/key", SecretValue::text(v)).await;
    }
    proxy.clear();
    let s: Rotated = loader(&b).load().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.key.current().expose_secret(), "k3");
    assert_eq!(s.key.previous().map(|p| p.expose_secret()), Some("k2"));
    assert_eq!(s.first.expose_secret(), "k1");
    // latest, then 2 for the previous one (same task), and 1 for the pin: three accesses, no metadata read.
    assert_eq!(proxy.count(), 3, "{:?}", proxy.counts());
    assert_eq!(
        proxy.count_of("GET /v1/projects/skm-test/secrets/rot-key/versions/latest:access"),
        1
    );

    // The previous *enabled* version: with 2 disabled, rotation grace falls back to 1.
    b.disable_version("rot/key", 2).await.unwrap();
    let s: Rotated = loader(&b).load().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.key.previous().map(|p| p.expose_secret()), Some("k1"));

    // A version that never existed is not found; an AWS stage is refused with a hint.
    let r = b
        .fetch(&[
            pin("rot/key", VersionPin::Number(9)),
            pin("rot/key", VersionPin::stage("AWSPREVIOUS")),
            pin("rot/key", VersionPin::id("3")),
        ])
        .await;
    assert_eq!(r[0].as_ref().unwrap_err().kind, FailureKind::NotFound);
    let stage = r[1].as_ref().unwrap_err();
    assert_eq!(stage.kind, FailureKind::Invalid);
    assert!(stage.detail.contains("version = N"), "{stage}");
    assert_eq!(text(&r[2]), "k3");

    // One version only: no previous.
    put(&b, "rot/single", SecretValue::text("only")).await;
    let r = b.fetch(&[pin("rot/single", VersionPin::Previous)]).await;
    assert_eq!(r[0].as_ref().unwrap_err().kind, FailureKind::NotFound);
}

#[tokio::test]
async fn disabled_and_destroyed_versions_say_so() {
    let drongo = Drongo::start().await;
    let b = backend(&drongo.endpoint()).await;
    put(&b, "states/s", SecretValue::text(SENTINEL)).await;
    put(&b, "states/s", SecretValue::text(SENTINEL)).await;
    put(&b, "states/s", SecretValue::text("v3")).await;
    assert_eq!(b.disable_version("states/s", 1).await.unwrap(), VersionState::Disabled);
    assert_eq!(b.destroy_version("states/s", 2).await.unwrap(), VersionState::Destroyed);
    let r = b
        .fetch(&[
            pin("states/s", VersionPin::Number(1)),
            pin("states/s", VersionPin::Number(2)),
        ])
        .await;
    let disabled = r[0].as_ref().unwrap_err();
    assert_ne!(disabled.kind, FailureKind::NotFound);
    assert!(
        disabled
            .detail
            .contains("version 1 of GCP secret `states-s` (declared path `states/s`) cannot be read: it is disabled"),
        "{disabled}"
    );
    let destroyed = r[1].as_ref().unwrap_err();
    assert_ne!(destroyed.kind, FailureKind::NotFound);
    assert!(destroyed.detail.contains("it is destroyed"), "{destroyed}");
    let shown = format!("{r:?} {b:?}");
    assert!(!shown.contains(SENTINEL), "{shown}");

    // Enabled again, it reads.
    assert_eq!(b.enable_version("states/s", 1).await.unwrap(), VersionState::Enabled);
    let r = b.fetch(&[pin("states/s", VersionPin::Number(1))]).await;
    assert_eq!(text(&r[0]), SENTINEL);
    // drongo lists versions oldest first (Google: newest first); `versions` orders them newest first.
    let versions = b.versions("states/s").await.unwrap();
    let states: Vec<(String, Vec<String>)> = versions.into_iter().map(|v| (v.id, v.stages)).collect();
    assert_eq!(
        states,
        [
            ("3".to_string(), vec!["current".to_string(), "enabled".to_string()]),
            ("2".to_string(), vec!["destroyed".to_string()]),
            ("1".to_string(), vec!["enabled".to_string()]),
        ]
    );
}

// ---- Throttling ----

/// Accesses throttled past the client's retries (429 `RESOURCE_EXHAUSTED`, as GCP answers over quota): the
/// backend tries them again with jittered backoff while its patience lasts, so the fetch loads every secret
/// once the quota refills; with no patience the same fetch fails those secrets as throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_accesses_wait_for_the_quota_within_the_patience() {
    let drongo = Drongo::start().await;
    let seeder = backend(&drongo.endpoint()).await;
    let requests: Vec<FetchRequest> = (0..25)
        .map(|i| FetchRequest::current(format!("quota/s{i:02}")))
        .collect();
    for (i, r) in requests.iter().enumerate() {
        put(&seeder, &r.path, SecretValue::text(format!("value-{i}"))).await;
    }
    let proxy = Proxy::start(&drongo.endpoint()).await;
    // 10 accesses a second after a burst of 5, for 25 secrets wanted at once.
    let quotas = skm_testing::Quotas::gcp(1.0).with(
        "gcp.access",
        skm_testing::Rate {
            per_second: 10.0,
            burst: 5.0,
        },
    );
    // One attempt per call: no client retry, so what loads is the backend's own patience.
    let build = |patience: Duration| {
        GcpBackend::builder()
            .project(PROJECT)
            .endpoint(proxy.url())
            .max_attempts(1)
            .throttle_patience(patience)
            .build()
    };
    proxy.set_quotas(quotas.clone());
    let patient = build(Duration::from_secs(20)).await.expect("backend");
    let results = patient.fetch(&requests).await;
    for (i, r) in results.iter().enumerate() {
        assert_eq!(text(r), format!("value-{i}"));
    }
    let access = proxy.quota_counts()["gcp.access"];
    println!("patient accesses: {access:?}");
    assert!(access.throttled > 0, "the quota throttled some accesses: {access:?}");
    assert_eq!(access.total - access.throttled, 25, "each secret read once: {access:?}");

    proxy.clear();
    proxy.set_quotas(quotas);
    let impatient = build(Duration::ZERO).await.expect("backend");
    let results = impatient.fetch(&requests).await;
    let throttled = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.kind == FailureKind::Throttled))
        .count();
    assert!(throttled > 0, "without patience the accesses over the burst fail");
    assert_eq!(
        throttled + results.iter().filter(|r| r.is_ok()).count(),
        25,
        "every other access loaded"
    );
}

// ---- Concurrency ----

#[tokio::test]
async fn fifty_secrets_are_fifty_requests_sent_at_once() {
    let drongo = Drongo::start().await;
    let proxy = Proxy::start(&drongo.endpoint()).await;
    let b = backend(&proxy.url()).await;
    let mut requests = Vec::new();
    for i in 0..50 {
        let path = format!("many/s{i:02}");
        put(&b, &path, SecretValue::text(format!("value-{i}"))).await;
        requests.push(FetchRequest::current(path));
    }
    proxy.clear();
    let rtt = Duration::from_millis(20);
    proxy.set_latency(rtt);
    let started = Instant::now();
    let results = b.fetch(&requests).await;
    let elapsed = started.elapsed();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(text(r), format!("value-{i}"));
    }
    assert_eq!(proxy.count(), 50, "{:?}", proxy.counts());
    assert!(proxy
        .requests()
        .iter()
        .all(|r| path_of(r).ends_with("/versions/latest:access")));
    // The default (100 in flight) sends the 50 at once: more than the old default of 32 were in flight, and
    // the 50 took at most two waves of the proxy's 20 ms even on a loaded machine.
    let waves = 50usize.div_ceil(proxy.max_in_flight());
    assert!(
        proxy.max_in_flight() > 32 && waves <= 2,
        "max in flight {} means {waves} round trips",
        proxy.max_in_flight()
    );
    // Wall time is reported, not asserted: drongo serves one request at a time under a global lock, so its
    // processing time (which a loaded machine stretches) adds to the two round trips.
    println!(
        "50 secrets: {} requests, max {} in flight, {waves} round trips of 20 ms, {elapsed:?}",
        proxy.count(),
        proxy.max_in_flight()
    );
}

// ---- Integrity ----

#[tokio::test]
async fn a_payload_that_fails_its_crc32c_is_refused() {
    // drongo sends no `dataCrc32c`; the proxy answers as Google does, with one.
    let drongo = Drongo::start().await;
    let proxy = Proxy::start(&drongo.endpoint()).await;
    let b = backend(&proxy.url()).await;
    let data = b"checked value";
    let good = crc32c(data);
    fn answer(crc: u32) -> Action {
        Action::json(
            200,
            &serde_json::json!({
                "name": "projects/skm-test/secrets/crc/versions/1",
                "payload": { "data": "Y2hlY2tlZCB2YWx1ZQ==", "dataCrc32c": crc.to_string() }
            }),
        )
    }
    proxy.set_rule(move |_| answer(good));
    let r = b.fetch(&[FetchRequest::current("crc")]).await;
    assert_eq!(text(&r[0]), "checked value");
    proxy.set_rule(move |_| answer(good ^ 1));
    let r = b.fetch(&[FetchRequest::current("crc")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(e.detail.contains("does not match its CRC32C"), "{e}");
    assert!(!e.detail.contains("checked value"));
}

// ---- Admin ----

#[tokio::test]
async fn admin_round_trip() {
    let drongo = Drongo::start().await;
    let b = backend(&drongo.endpoint()).await;
    let mut first = PutRequest::new("adm/one", SecretValue::text("v1"));
    first.create_only = true;
    assert_eq!(b.put(first.clone()).await.unwrap(), "1");
    assert_eq!(b.put(first).await.unwrap_err().kind, AdminErrorKind::AlreadyExists);
    assert_eq!(put(&b, "adm/one", SecretValue::text("v2")).await, "2");
    put(&b, "adm/two", SecretValue::text("x")).await;
    put(&b, "other", SecretValue::text("x")).await;
    let listed: Vec<String> = b.list("adm/").await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(listed, ["adm-one", "adm-two"]);
    let versions = b.versions("adm/one").await.unwrap();
    assert_eq!(versions.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["2", "1"]);
    assert!(versions[0].created.is_some());

    // Rollback: version 1's payload becomes version 3.
    assert_eq!(b.rollback("adm/one", 1).await.unwrap(), "3");
    let r = b.fetch(&[FetchRequest::current("adm/one")]).await;
    assert_eq!(text(&r[0]), "v1");
    assert_eq!(b.versions("adm/one").await.unwrap().len(), 3);

    // Delete: no recovery window in GCP; forced delete of a missing secret succeeds.
    let e = b.delete("adm/two", DeleteMode::RecoveryDays(7)).await.unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::Unsupported);
    b.delete("adm/two", DeleteMode::Default).await.unwrap();
    assert_eq!(
        b.delete("adm/two", DeleteMode::Default).await.unwrap_err().kind,
        AdminErrorKind::NotFound
    );
    b.delete("adm/two", DeleteMode::Force).await.unwrap();
    let r = b.fetch(&[FetchRequest::current("adm/two")]).await;
    assert_eq!(r[0].as_ref().unwrap_err().kind, FailureKind::NotFound);
    assert_eq!(b.versions("adm/gone").await.unwrap_err().kind, AdminErrorKind::NotFound);

    // The doctor probe: reachable, anonymous, project from the builder.
    let d = b.doctor().await;
    assert!(d.reachable.is_ok(), "{d}");
    assert_eq!(d.credentials_source, "anonymous (loopback emulator)");
}

#[tokio::test]
async fn conformance() {
    let drongo = Drongo::start().await;
    let b = Arc::new(backend(&drongo.endpoint()).await);
    let closed = format!("http://127.0.0.1:{}", skm_testing::free_port());
    let report = skm_runtime::conformance::Suite::new(b.clone(), "conf")
        .unavailable(Arc::new(backend(&closed).await))
        .skip(
            "list_filters_by_prefix",
            "GCP lists secret ids (`conf-list-a`): `/` → `-` cannot be undone, and drongo drops annotations",
        )
        .run()
        .await;
    // Secret Manager has neither cheap version checks nor check-and-set; drongo enforces no IAM or quota.
    assert_eq!(
        report.unsupported_names(),
        ["current_versions", "check_and_set", "list_filters_by_prefix"],
        "{report:?}"
    );
    assert_eq!(report.not_exercised, ["forbidden", "throttled"], "{report:?}");
    // The list check on ids instead.
    for name in ["a", "b", "c"] {
        put(&b, &format!("conf/list/{name}"), SecretValue::text("x")).await;
    }
    let listed: Vec<String> = b
        .list("conf/list/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(listed, ["conf-list-a", "conf-list-b", "conf-list-c"]);
}

// ---- The README's card example, in a child process with only the two variables set. ----

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
    jwt_secret: SecretString,
    #[secret(path = "database/connection", key = "url", env = "DATABASE_URL")]
    database_url: SecretString,
}

/// Runs only when `SKM_GCP_CHILD` is set, as a child process started by the tests below.
#[tokio::test]
async fn child_process_entry() {
    let Ok(mode) = std::env::var("SKM_GCP_CHILD") else {
        return;
    };
    match mode.as_str() {
        // The README's card example, unchanged.
        "card" => {
            async fn run() -> Result<AppSecrets, skm::Error> {
                let cfg = AppSecrets::load().await?; // at startup
                Ok(cfg)
            }
            let cfg = run().await.unwrap_or_else(|e| panic!("card example failed: {e}"));
            assert_eq!(cfg.jwt_secret.expose_secret(), "jwt-from-google");
            assert_eq!(cfg.database_url.expose_secret(), "postgres://google@db/app");
        }
        // `skm migrate --to gcp` from a .env, the backend built from the two variables alone.
        #[cfg(feature = "cli")]
        "migrate" => {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut io = skm::cli::Io {
                stdin: &mut std::io::empty(),
                stdout: &mut out,
                stderr: &mut err,
                stdin_tty: false,
                stdout_tty: false,
                stderr_tty: false,
            };
            let argv = ["secrets", "migrate", "--from", ".env", "--to", "gcp", "--json"];
            let code = skm::cli::Cli::embedded::<AppSecrets>().execute(argv, &mut io).await;
            let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
            assert_eq!(code, skm::cli::exit::OK, "migrate failed:\n{out}\n{err}");
            assert!(
                !out.contains("migrated-jwt") && !err.contains("migrated-jwt"),
                "a value was shown"
            );
        }
        "no-project" => {
            let e = GcpBackend::from_env().await.expect_err("no project anywhere");
            assert!(
                matches!(&e, skm::Error::Config(c) if c.message().contains("GOOGLE_CLOUD_PROJECT")),
                "{e}"
            );
        }
        "plain-http-elsewhere" => {
            let e = GcpBackend::from_env().await.expect_err("plain http off loopback");
            assert!(
                matches!(&e, skm::Error::Config(c) if c.message().contains("not a loopback")),
                "{e}"
            );
        }
        // A loopback emulator with proxy variables naming a listener: refused before any request, since
        // Google's client would send everything through the proxy.
        "proxied" => {
            let e = GcpBackend::from_env()
                .await
                .expect_err("the proxy would carry the plain-http requests");
            assert!(
                matches!(&e, skm::Error::Config(c) if c.message().contains("NO_PROXY")),
                "{e}"
            );
        }
        // The same with the endpoint in NO_PROXY: the card example loads, directly.
        "proxied-bypassed" => {
            let cfg = AppSecrets::load()
                .await
                .unwrap_or_else(|e| panic!("card example failed: {e}"));
            assert_eq!(cfg.jwt_secret.expose_secret(), "jwt-from-google");
        }
        other => panic!("unknown SKM_GCP_CHILD mode {other}"),
    }
    println!("CHILD-OK {mode}");
}

async fn run_child(mode: &str, env: &[(&str, String)]) {
    let dir = std::env::temp_dir().join(format!("skm-gcp-child-{}-{mode}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["gcp::child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env_clear()
        // No `.env` file, no gcloud configuration and no credentials file can be found from here.
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("SKM_GCP_CHILD", mode)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
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

#[tokio::test]
async fn readme_card_example_loads_from_gcp_with_two_variables() {
    let drongo = Drongo::start().await;
    drongo.google_client(PROJECT, GOOGLE_WRITES, b"").await;
    run_child(
        "card",
        &[
            ("GOOGLE_CLOUD_PROJECT", PROJECT.to_string()),
            ("SKM_GCP_ENDPOINT", drongo.endpoint()),
        ],
    )
    .await;
}

#[tokio::test]
async fn from_env_explains_what_is_missing_or_refused() {
    // The metadata server is asked last; point it at a closed loopback port so it is never really contacted.
    run_child("no-project", &[("GCE_METADATA_HOST", "127.0.0.1:9".to_string())]).await;
    run_child(
        "plain-http-elsewhere",
        &[
            ("GCP_PROJECT_ID", PROJECT.to_string()),
            ("SKM_GCP_ENDPOINT", "http://192.0.2.1:8085".to_string()),
        ],
    )
    .await;
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn migrate_to_gcp_writes_what_googles_client_reads() {
    let drongo = Drongo::start().await;
    let dir = std::env::temp_dir().join(format!("skm-gcp-child-{}-migrate", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        "JWT_SECRET_KEY=migrated-jwt\nDATABASE_URL=postgres://migrated@db/app\n",
    )
    .unwrap();
    run_child(
        "migrate",
        &[
            ("GOOGLE_CLOUD_PROJECT", PROJECT.to_string()),
            ("SKM_GCP_ENDPOINT", drongo.endpoint()),
        ],
    )
    .await;
    let script = r#"
out = {}
for sid in ["auth-jwt", "database-connection"]:
    r = client.access_secret_version(request={"name": f"projects/{project}/secrets/{sid}/versions/latest"})
    out[sid] = json.loads(r.payload.data)
print(json.dumps(out))
"#;
    let out = drongo.google_client(PROJECT, script, b"").await;
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json from python");
    assert_eq!(seen["auth-jwt"], serde_json::json!({"secret": "migrated-jwt"}));
    assert_eq!(
        seen["database-connection"],
        serde_json::json!({"url": "postgres://migrated@db/app"})
    );
}

#[test]
fn detection_selects_gcp_by_project_variable_after_aws_and_vault() {
    use skm::backend::registry;
    use skm_runtime::detect::detect;
    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }
    for vars in [&[("GOOGLE_CLOUD_PROJECT", "p")][..], &[("GCP_PROJECT_ID", "p")][..]] {
        let choice = detect(&env(vars)).unwrap();
        assert_eq!(choice.name(), "gcp");
        assert!(
            choice.reason.starts_with(&format!("{} is set", vars[0].0)),
            "{}",
            choice.reason
        );
    }
    let explicit = detect(&env(&[("SKM_BACKEND", "gcp"), ("VAULT_ADDR", "http://127.0.0.1:8200")])).unwrap();
    assert_eq!(explicit.name(), "gcp");
    // An AWS region comes first in the order, when the `aws` backend is compiled in.
    let both = detect(&env(&[("AWS_REGION", "eu-west-1"), ("GOOGLE_CLOUD_PROJECT", "p")])).unwrap();
    let aws_compiled = registry::find("aws").is_some_and(|d| d.compiled);
    assert_eq!(both.name(), if aws_compiled { "aws" } else { "gcp" });
}

// Issue 25, findings 2 and 3: where requests may go.

/// A loopback TCP listener that counts connections and answers each with `502 Bad Gateway`: a proxy that
/// must see nothing.
async fn counting_listener() -> (String, Arc<std::sync::atomic::AtomicUsize>, tokio::task::JoinHandle<()>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, count, task)
}

#[tokio::test]
async fn a_userinfo_endpoint_is_refused_and_reaches_nobody() {
    let (url, count, task) = counting_listener().await;
    let host = url.trim_start_matches("http://");
    // The host of `http://127.0.0.1:x@HOST` is HOST. (The old prefix check took the port-less form,
    // `http://127.0.0.1:x@evil.example`, for loopback: unit `plain_http_only_on_loopback` in gcp/builder.rs.)
    for endpoint in [format!("http://127.0.0.1:x@{host}"), format!("HTTP://user@{host}")] {
        let e = GcpBackend::builder()
            .project(PROJECT)
            .endpoint(&endpoint)
            .build()
            .await
            .err()
            .unwrap_or_else(|| panic!("`{endpoint}` was accepted"));
        assert!(matches!(e, skm::Error::Config(_)), "{e}");
    }
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 0);
    task.abort();
}

#[tokio::test]
async fn proxy_variables_never_carry_emulator_requests() {
    let drongo = Drongo::start().await;
    drongo.google_client(PROJECT, GOOGLE_WRITES, b"").await;
    let (proxy, count, task) = counting_listener().await;
    let mut env = vec![
        ("GOOGLE_CLOUD_PROJECT", PROJECT.to_string()),
        ("SKM_GCP_ENDPOINT", drongo.endpoint()),
        ("HTTP_PROXY", proxy.clone()),
        ("http_proxy", proxy.clone()),
        ("HTTPS_PROXY", proxy.clone()),
        ("ALL_PROXY", proxy),
    ];
    run_child("proxied", &env).await;
    env.push(("NO_PROXY", "localhost,127.0.0.1,::1".to_string()));
    run_child("proxied-bypassed", &env).await;
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the proxy saw a request"
    );
    task.abort();
}

// Issue 23: no call waits forever, and a refused connection is not retried for long.

#[tokio::test]
async fn a_refused_port_and_a_silent_endpoint_fail_within_the_default_timeouts() {
    let port = skm_testing::free_port();
    let b = backend(&format!("http://127.0.0.1:{port}")).await;
    let started = Instant::now();
    let r = b.fetch(&[FetchRequest::current("app-refused")]).await;
    let took = started.elapsed();
    let e = r[0].as_ref().expect_err("nothing listens");
    assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
    assert!(took < Duration::from_secs(3), "a refused port took {took:?}");
    assert!(e.detail.to_lowercase().contains("refused"), "the root cause: {e}");
    assert!(!e.detail.contains('\n'), "one line: {e}");
    eprintln!("refused port: failed in {took:?}: {e}");

    // Accepts, never answers: the 5 s attempt timeout and the 12 s call limit end it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut streams = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            streams.push(s);
        }
    });
    let b = backend(&format!("http://{addr}")).await;
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), b.fetch(&[FetchRequest::current("app-silent")]))
        .await
        .unwrap_or_else(|_| panic!("still waiting after 60 s"));
    let took = started.elapsed();
    let e = r[0].as_ref().expect_err("no answer");
    assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
    assert!(took < Duration::from_secs(20), "a silent endpoint took {took:?}");
    eprintln!("silent endpoint: failed in {took:?}: {e}");
    held.abort();
}
