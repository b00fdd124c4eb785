//! The AWS Secrets Manager backend against a real moto server (and, for cross-checks, boto3).
//!
//! Every test starts its own moto (`skm_testing::Moto`), so tests share no state. Process environment is
//! never changed except `AWS_EC2_METADATA_DISABLED=true`; tests that need other AWS variables run this
//! binary again as a child process with exactly those variables (see `child_process_entry`).
#![cfg(feature = "aws")]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skm::backend::aws::AwsBackend;
use skm::backend::{
    AdminBackend, AdminErrorKind, Backend, DeleteMode, FailureKind, FetchRequest, PutRequest, SecretValue,
};
use skm::{ExposeSecret, FieldProblem, Loader, SecretBox, SecretString, Secrets, VersionPin};
use skm_testing::{Action, Moto, Proxy};

const SENTINEL: &str = "SENTINEL-aws-5f2c-do-not-leak";

use crate::support::no_instance_metadata;

async fn moto() -> Moto {
    no_instance_metadata();
    Moto::start().await
}

fn builder(endpoint: &str) -> skm::backend::aws::AwsBackendBuilder {
    AwsBackend::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .static_credentials("test", "test")
}

async fn backend(endpoint: &str) -> AwsBackend {
    builder(endpoint).build().await.expect("backend")
}

fn loader(backend: &AwsBackend) -> Loader {
    Loader::new()
        .backend(backend.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

async fn put(backend: &AwsBackend, path: &str, value: SecretValue) -> String {
    backend.put(PutRequest::new(path, value)).await.expect("put")
}

fn text(result: &skm::backend::FetchResult) -> String {
    match &result.as_ref().expect("found").value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

#[derive(Secrets)]
struct Basic {
    #[secret(path = "app/plain")]
    plain: SecretString,
    #[secret(path = "app/db", key = "password")]
    password: SecretString,
    #[secret(path = "app/db", key = "port")]
    port: SecretBox<u16>,
    #[secret(path = "app/keys", key = "a.b")]
    dotted: SecretString,
    #[secret(path = "app/keys", key = "c/d")]
    slashed: SecretString,
    #[secret(path = "app/cert")]
    cert: SecretBox<Vec<u8>>,
}

#[tokio::test]
async fn reads_plain_json_keys_dotted_and_slashed_keys_and_binary() {
    let moto = moto().await;
    let b = backend(&moto.endpoint()).await;
    put(&b, "app/plain", SecretValue::text("plain value")).await;
    put(&b, "app/db", SecretValue::text(r#"{"password":"pw","port":5432}"#)).await;
    // Keys are exact property names: `a.b` is not `a` → `b`, and `c/d` is not a path.
    put(
        &b,
        "app/keys",
        SecretValue::text(r#"{"a.b":"dotted","a":{"b":"nested"},"c/d":"slashed","c":{"d":"nested"}}"#),
    )
    .await;
    put(&b, "app/cert", SecretValue::binary(vec![0, 159, 146, 150, 255])).await;

    let loaded = loader(&b)
        .load_report::<Basic>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s = loaded.value;
    assert_eq!(s.plain.expose_secret(), "plain value");
    assert_eq!(s.password.expose_secret(), "pw");
    assert_eq!(*s.port.expose_secret(), 5432);
    assert_eq!(s.dotted.expose_secret(), "dotted");
    assert_eq!(s.slashed.expose_secret(), "slashed");
    assert_eq!(s.cert.expose_secret(), &vec![0, 159, 146, 150, 255]);
    assert_eq!(
        loaded.provenance.get("password").unwrap().to_string(),
        "AWS Secrets Manager (us-east-1): secret app/db key password"
    );
}

// Only whether it loads matters.
#[allow(dead_code)]
#[derive(Secrets)]
struct Missing {
    #[secret(path = "nope/never")]
    absent: SecretString,
}

// Only whether it loads matters.
#[allow(dead_code)]
#[derive(Secrets)]
struct MissingKey {
    #[secret(path = "app/db", key = "user")]
    user: SecretString,
}

// Only whether it loads matters.
#[allow(dead_code)]
#[derive(Secrets)]
struct NotObject {
    #[secret(path = "app/plain", key = "password")]
    password: SecretString,
}

#[tokio::test]
async fn missing_secret_missing_key_and_key_on_a_non_object() {
    let moto = moto().await;
    let b = backend(&moto.endpoint()).await;
    put(
        &b,
        "app/db",
        SecretValue::text(format!(r#"{{"password":"{SENTINEL}"}}"#)),
    )
    .await;
    put(&b, "app/plain", SecretValue::text(SENTINEL)).await;

    let r = b.fetch(&[FetchRequest::current("nope/never")]).await;
    assert_eq!(
        r[0].as_ref().err().map(|e| e.kind),
        Some(FailureKind::NotFound),
        "{:?}",
        r[0]
    );

    let e = loader(&b).load::<Missing>().await.err().expect("missing secret");
    let field = &e.as_load().unwrap().fields[0];
    assert_eq!(field.reason, FieldProblem::Missing, "{e}");

    let e = loader(&b).load::<MissingKey>().await.err().expect("missing key");
    let field = &e.as_load().unwrap().fields[0];
    assert_eq!(field.reason, FieldProblem::Missing, "{e}");
    assert!(!format!("{e} {e:?}").contains(SENTINEL), "value leaked: {e}");

    let e = loader(&b)
        .load::<NotObject>()
        .await
        .err()
        .expect("key on a plain string");
    let field = &e.as_load().unwrap().fields[0];
    assert!(
        matches!(&field.reason, FieldProblem::Invalid(why) if why.contains("JSON object")),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains(SENTINEL), "value leaked: {e}");
}

#[derive(Secrets)]
struct Rotating {
    #[secret(path = "rot/key")]
    current: SecretString,
    #[secret(path = "rot/key", version_stage = "AWSPREVIOUS")]
    previous: SecretString,
    #[secret(path = "rot/key", version_id = "00000000-0000-4000-8000-000000000001")]
    first: SecretString,
}

#[tokio::test]
async fn version_stage_and_version_id() {
    let moto = moto().await;
    let b = backend(&moto.endpoint()).await;
    // A chosen ClientRequestToken becomes the VersionId, so the declaration can name it.
    b.client()
        .create_secret()
        .name("rot/key")
        .secret_string("one")
        .client_request_token("00000000-0000-4000-8000-000000000001")
        .send()
        .await
        .expect("create");
    put(&b, "rot/key", SecretValue::text("two")).await;
    put(&b, "rot/key", SecretValue::text("three")).await;

    let s = loader(&b).load::<Rotating>().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.current.expose_secret(), "three");
    assert_eq!(s.previous.expose_secret(), "two");
    assert_eq!(s.first.expose_secret(), "one");

    let pinned = b
        .fetch(&[
            FetchRequest {
                path: "rot/key".into(),
                version: VersionPin::Previous,
            },
            FetchRequest {
                path: "rot/key".into(),
                version: VersionPin::id("00000000-0000-4000-8000-00000000dead"),
            },
            FetchRequest {
                path: "rot/key".into(),
                version: VersionPin::Number(2),
            },
        ])
        .await;
    assert_eq!(text(&pinned[0]), "two");
    assert_eq!(
        pinned[1].as_ref().err().map(|e| e.kind),
        Some(FailureKind::NotFound),
        "{:?}",
        pinned[1]
    );
    let e = pinned[2].as_ref().expect_err("numbered versions are not AWS's");
    assert_eq!(e.kind, FailureKind::Invalid);
    assert!(e.detail.contains("version_stage or version_id"), "{e}");
}

#[tokio::test]
async fn batch_matches_names_arns_and_partial_arns_and_deduplicates() {
    let moto = moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    let b = backend(&proxy.url()).await;
    let arn = b
        .client()
        .create_secret()
        .name("by/arn")
        .secret_string("via arn")
        .send()
        .await
        .expect("create")
        .arn
        .expect("arn");
    let partial = arn[..arn.len() - 7].to_string();
    assert!(partial.ends_with(":secret:by/arn"), "{arn}");
    proxy.clear();

    let requests = [
        FetchRequest::current(arn.clone()),
        FetchRequest::current(partial.clone()),
        FetchRequest::current("by/arn"),
        FetchRequest::current("by/arn"),
        FetchRequest::current("by/missing"),
    ];
    let r = b.fetch(&requests).await;
    assert_eq!(r.len(), 5);
    for (i, result) in r.iter().take(4).enumerate() {
        assert_eq!(text(result), "via arn", "request {i}");
        assert!(result.as_ref().unwrap().version.is_some(), "version id reported");
    }
    assert_eq!(r[4].as_ref().err().map(|e| e.kind), Some(FailureKind::NotFound));
    assert_eq!(proxy.count(), 1, "{:?}", proxy.counts());
    let body = proxy.requests()[0].json().expect("json body");
    let ids = body["SecretIdList"].as_array().expect("SecretIdList");
    // The AWS backend keeps the adaptive batch code from the fleet work (issue 18), which still sends identical
    // requests once; the plan already de-duplicates what a load asks for.
    assert_eq!(ids.len(), 4, "identical requests are sent once: {ids:?}");
}

#[derive(Secrets)]
struct Many {
    #[secret(path = "many/s00")]
    s00: SecretString,
    #[secret(path = "many/s01")]
    s01: SecretString,
    #[secret(path = "many/s02")]
    s02: SecretString,
    #[secret(path = "many/s03")]
    s03: SecretString,
    #[secret(path = "many/s04")]
    s04: SecretString,
    #[secret(path = "many/s05")]
    s05: SecretString,
    #[secret(path = "many/s06")]
    s06: SecretString,
    #[secret(path = "many/s07")]
    s07: SecretString,
    #[secret(path = "many/s08")]
    s08: SecretString,
    #[secret(path = "many/s09")]
    s09: SecretString,
    #[secret(path = "many/s10")]
    s10: SecretString,
    #[secret(path = "many/s11")]
    s11: SecretString,
    #[secret(path = "many/s12")]
    s12: SecretString,
    #[secret(path = "many/s13")]
    s13: SecretString,
    #[secret(path = "many/s14")]
    s14: SecretString,
    #[secret(path = "many/s15")]
    s15: SecretString,
    #[secret(path = "many/s16")]
    s16: SecretString,
    #[secret(path = "many/s17")]
    s17: SecretString,
    #[secret(path = "many/s18")]
    s18: SecretString,
    #[secret(path = "many/s19")]
    s19: SecretString,
    #[secret(path = "many/s20")]
    s20: SecretString,
    #[secret(path = "many/s21")]
    s21: SecretString,
    #[secret(path = "many/s22")]
    s22: SecretString,
    #[secret(path = "many/s23")]
    s23: SecretString,
    #[secret(path = "many/s24")]
    s24: SecretString,
    #[secret(path = "many/s25")]
    s25: SecretString,
    #[secret(path = "many/s26")]
    s26: SecretString,
    #[secret(path = "many/s27")]
    s27: SecretString,
    #[secret(path = "many/s28")]
    s28: SecretString,
    #[secret(path = "many/s29")]
    s29: SecretString,
    #[secret(path = "many/s30")]
    s30: SecretString,
    #[secret(path = "many/s31")]
    s31: SecretString,
    #[secret(path = "many/s32")]
    s32: SecretString,
    #[secret(path = "many/s33")]
    s33: SecretString,
    #[secret(path = "many/s34")]
    s34: SecretString,
    #[secret(path = "many/s35")]
    s35: SecretString,
    #[secret(path = "many/s36")]
    s36: SecretString,
    #[secret(path = "many/s37")]
    s37: SecretString,
    #[secret(path = "many/s38")]
    s38: SecretString,
    #[secret(path = "many/s39")]
    s39: SecretString,
    #[secret(path = "many/s40")]
    s40: SecretString,
    #[secret(path = "many/s41")]
    s41: SecretString,
    #[secret(path = "many/s42")]
    s42: SecretString,
    #[secret(path = "many/s43")]
    s43: SecretString,
    #[secret(path = "many/s44")]
    s44: SecretString,
}

async fn put_many(b: &AwsBackend) {
    for i in 0..45 {
        put(b, &format!("many/s{i:02}"), SecretValue::text(format!("value-{i:02}"))).await;
    }
}

fn check_many(m: &Many) {
    let all: [&SecretString; 45] = [
        &m.s00, &m.s01, &m.s02, &m.s03, &m.s04, &m.s05, &m.s06, &m.s07, &m.s08, &m.s09, &m.s10, &m.s11, &m.s12, &m.s13,
        &m.s14, &m.s15, &m.s16, &m.s17, &m.s18, &m.s19, &m.s20, &m.s21, &m.s22, &m.s23, &m.s24, &m.s25, &m.s26, &m.s27,
        &m.s28, &m.s29, &m.s30, &m.s31, &m.s32, &m.s33, &m.s34, &m.s35, &m.s36, &m.s37, &m.s38, &m.s39, &m.s40, &m.s41,
        &m.s42, &m.s43, &m.s44,
    ];
    for (i, value) in all.iter().enumerate() {
        assert_eq!(value.expose_secret(), format!("value-{i:02}"), "field s{i:02}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_five_secrets_cost_three_batch_calls() {
    let moto = moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    let b = backend(&proxy.url()).await;
    put_many(&b).await;
    proxy.clear();

    let started = Instant::now();
    let m = loader(&b).load::<Many>().await.unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    check_many(&m);

    let requests = proxy.requests();
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| r.json().unwrap()["SecretIdList"].as_array().map_or(0, Vec::len))
        .collect();
    println!(
        "45 secrets in one load: {} requests {:?}, SecretIdList sizes {sizes:?}, at most {} in flight, {:.1} ms",
        requests.len(),
        proxy.counts(),
        proxy.max_in_flight(),
        elapsed.as_secs_f64() * 1000.0
    );
    assert_eq!(proxy.count_of("secretsmanager.BatchGetSecretValue"), 3);
    assert_eq!(requests.len(), 3, "nothing but the batches: {:?}", proxy.counts());
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [5, 20, 20], "chunks of at most 20");
    assert!(!b.batch_refused());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_access_denied_falls_back_to_get_secret_value_and_remembers() {
    let moto = moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    let b = backend(&proxy.url()).await;
    put_many(&b).await;
    proxy.clear();
    proxy.set_rule(|r| {
        if r.target.as_deref() == Some("secretsmanager.BatchGetSecretValue") {
            Action::aws_error(
                400,
                "AccessDeniedException",
                "User: arn:aws:iam::123456789012:user/app is not authorized to perform: \
                 secretsmanager:BatchGetSecretValue because no identity-based policy allows it",
            )
        } else {
            Action::Forward
        }
    });

    let started = Instant::now();
    let m = loader(&b).load::<Many>().await.unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    check_many(&m);
    let counts = proxy.counts();
    println!(
        "batch refused, first load: {counts:?}, at most {} in flight, {:.1} ms",
        proxy.max_in_flight(),
        elapsed.as_secs_f64() * 1000.0
    );
    // The three chunks went out together, so each met the refusal once.
    assert_eq!(proxy.count_of("secretsmanager.BatchGetSecretValue"), 3, "{counts:?}");
    assert_eq!(proxy.count_of("secretsmanager.GetSecretValue"), 45, "{counts:?}");
    assert!(b.batch_refused());
    assert!(proxy.max_in_flight() <= 8, "bounded concurrency");

    proxy.clear();
    let started = Instant::now();
    let m = loader(&b).load::<Many>().await.unwrap_or_else(|e| panic!("{e}"));
    check_many(&m);
    println!(
        "batch refused, second load: {:?}, {:.1} ms",
        proxy.counts(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(proxy.count_of("secretsmanager.BatchGetSecretValue"), 0, "remembered");
    assert_eq!(proxy.count_of("secretsmanager.GetSecretValue"), 45);
}

#[derive(Secrets)]
struct WithFallback {
    #[secret(path = "app/plain", env = "APP_PLAIN")]
    plain: SecretString,
}

#[tokio::test]
async fn per_secret_errors_map_to_kinds_and_outages_fall_back_to_env() {
    let moto = moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    let b = backend(&proxy.url()).await;
    put(&b, "app/plain", SecretValue::text("from aws")).await;
    put(&b, "app/other", SecretValue::text("other")).await;
    // As AWS answers when the caller may batch but not read some of the secrets.
    proxy.set_rule(|r| match r.target.as_deref() {
        Some("secretsmanager.BatchGetSecretValue") => Action::json(
            200,
            &serde_json::json!({
                "SecretValues": [],
                "Errors": [
                    {"SecretId": "app/plain", "ErrorCode": "AccessDeniedException",
                     "Message": "not authorized to perform: secretsmanager:GetSecretValue"},
                    {"SecretId": "app/other", "ErrorCode": "DecryptionFailure",
                     "Message": "Secrets Manager can't decrypt the protected secret text using the provided KMS key."},
                    {"SecretId": "app/gone", "ErrorCode": "ResourceNotFoundException",
                     "Message": "Secrets Manager can't find the specified secret."},
                    {"SecretId": "app/odd", "ErrorCode": "InvalidParameterException", "Message": "odd"}
                ]
            }),
        ),
        Some("secretsmanager.GetSecretValue") => {
            Action::aws_error(400, "KMSAccessDeniedException", "Access to KMS is not allowed")
        }
        _ => Action::Forward,
    });
    let r = b
        .fetch(&[
            FetchRequest::current("app/plain"),
            FetchRequest::current("app/other"),
            FetchRequest::current("app/gone"),
            FetchRequest::current("app/odd"),
            FetchRequest::current("app/unanswered"),
            FetchRequest {
                path: "app/plain".into(),
                version: VersionPin::Previous,
            },
        ])
        .await;
    let kinds: Vec<FailureKind> = r.iter().map(|r| r.as_ref().expect_err("an error").kind).collect();
    assert_eq!(
        kinds,
        [
            FailureKind::Forbidden,
            FailureKind::Decryption,
            FailureKind::NotFound,
            FailureKind::Other,
            FailureKind::NotFound,
            FailureKind::Decryption
        ]
    );
    let e = r[0].as_ref().unwrap_err();
    assert!(e.detail.contains("AccessDeniedException"), "{e}");
    assert!(!b.batch_refused(), "a per-secret refusal is not a refused batch");

    // Forbidden is a configuration error, not an outage (issue 17 #7): by default the env var does not cover
    // for it, although it has the value.
    let e = loader(&b)
        .env_vars([("APP_PLAIN", "from env")])
        .load::<WithFallback>()
        .await
        .err()
        .expect("forbidden fails the load by default");
    assert_eq!(
        e.as_load().unwrap().fields[0].reason,
        FieldProblem::Backend(FailureKind::Forbidden),
        "{e}"
    );
    // Allowed explicitly, the env var covers for it, with a warning.
    let loaded = loader(&b)
        .env_vars([("APP_PLAIN", "from env")])
        .allow_fallback_on(FailureKind::Forbidden)
        .load_report::<WithFallback>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.value.plain.expose_secret(), "from env");
    let warnings = loaded.provenance.warnings.join("\n");
    assert!(warnings.contains("access denied"), "{warnings}");
    // Strict mode refuses the fallback even when allowed.
    let e = loader(&b)
        .env_vars([("APP_PLAIN", "from env")])
        .allow_fallback_on(FailureKind::Forbidden)
        .strict(true)
        .load::<WithFallback>()
        .await
        .err()
        .expect("strict");
    assert_eq!(
        e.as_load().unwrap().fields[0].reason,
        FieldProblem::Backend(FailureKind::Forbidden),
        "{e}"
    );
}

#[tokio::test]
async fn a_stalled_endpoint_is_cut_off_by_the_loader_deadline() {
    let moto = moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    let b = backend(&proxy.url()).await;
    proxy.set_rule(|_| Action::Stall);
    let started = Instant::now();
    let loaded = loader(&b)
        .env_vars([("APP_PLAIN", "from env")])
        .deadline(Duration::from_millis(300))
        .load_report::<WithFallback>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(loaded.value.plain.expose_secret(), "from env");
    assert!(
        loaded.provenance.warnings.join("\n").contains("deadline"),
        "{:?}",
        loaded.provenance.warnings
    );
}

#[tokio::test]
async fn throttling_after_retries_is_throttled_and_5xx_is_retried() {
    let moto = moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    // The fixed batch strategy: the SDK's retries are what a throttled batch meets (the adaptive default
    // moves it to single gets instead; see tests/throttle.rs).
    let b = builder(&proxy.url())
        .strategy(skm::backend::aws::FetchStrategy::Batch)
        .max_attempts(2)
        .retry_config(
            skm::backend::aws::aws_sdk_secretsmanager::config::retry::RetryConfig::standard()
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .build()
        .await
        .unwrap();
    put(&b, "app/plain", SecretValue::text("v")).await;
    proxy.clear();
    proxy.set_rule(|r| {
        if r.target.as_deref() == Some("secretsmanager.BatchGetSecretValue") {
            Action::aws_error(400, "ThrottlingException", "Rate exceeded")
        } else {
            Action::Forward
        }
    });
    let r = b.fetch(&[FetchRequest::current("app/plain")]).await;
    let e = r[0].as_ref().expect_err("throttled");
    assert_eq!(e.kind, FailureKind::Throttled, "{e}");
    assert_eq!(
        proxy.count_of("secretsmanager.BatchGetSecretValue"),
        2,
        "max_attempts(2)"
    );

    // One 500, then the real answer: the SDK's retry makes it invisible.
    proxy.clear();
    let failed_once = Arc::new(AtomicUsize::new(0));
    let seen = failed_once.clone();
    proxy.set_rule(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Action::aws_error(500, "InternalServiceError", "boom")
        } else {
            Action::Forward
        }
    });
    let r = b.fetch(&[FetchRequest::current("app/plain")]).await;
    assert_eq!(text(&r[0]), "v");
    assert_eq!(proxy.count(), 2);
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    no_instance_metadata();
    let port = skm_testing::free_port();
    let b = builder(&format!("http://127.0.0.1:{port}"))
        .max_attempts(1)
        .build()
        .await
        .unwrap();
    let r = b
        .fetch(&[
            FetchRequest::current("a"),
            FetchRequest {
                path: "b".into(),
                version: VersionPin::stage("AWSPREVIOUS"),
            },
        ])
        .await;
    for result in &r {
        let e = result.as_ref().expect_err("nothing listens");
        assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
    }
}

#[tokio::test]
async fn conformance() {
    use skm::backend::aws::aws_sdk_secretsmanager::config::retry::RetryConfig;
    use skm_testing::{Quotas, Rate};
    let moto = moto().await;
    // Forbidden: moto does not enforce IAM, so a proxy in front of it answers as AWS does for a denied call.
    let denied = Proxy::start(&moto.endpoint()).await;
    denied.set_rule(|_| {
        Action::aws_error(
            400,
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/app is not authorized to perform: secretsmanager:GetSecretValue",
        )
    });
    // Throttled: AWS's per-operation buckets with no tokens for the read calls, and the SDK's retries bounded.
    let throttling = Proxy::start(&moto.endpoint()).await;
    let empty = Rate {
        per_second: 0.001,
        burst: 0.0,
    };
    throttling.set_quotas(
        Quotas::aws(1.0)
            .with("GetSecretValue", empty)
            .with("BatchGetSecretValue", empty),
    );
    let closed = format!("http://127.0.0.1:{}", skm_testing::free_port());
    let quick = |endpoint: &str| {
        builder(endpoint)
            .max_attempts(2)
            .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(5)))
    };
    let report = skm_runtime::conformance::Suite::new(Arc::new(backend(&moto.endpoint()).await), "awsconformance")
        .forbidden(Arc::new(quick(&denied.url()).build().await.unwrap()))
        .unavailable(Arc::new(quick(&closed).build().await.unwrap()))
        .throttled(Arc::new(quick(&throttling.url()).build().await.unwrap()))
        .run()
        .await;
    // AWS writes are not check-and-set: `expected_version` is refused rather than written unchecked.
    assert_eq!(report.unsupported_names(), ["check_and_set"], "{report:?}");
    assert_eq!(report.not_exercised, Vec::<&str>::new());
    assert!(
        throttling.quota_counts().values().any(|c| c.throttled > 0),
        "the proxy throttled"
    );
}

#[tokio::test]
async fn admin_round_trip() {
    let moto = moto().await;
    let b = backend(&moto.endpoint()).await;
    let mut first = PutRequest::new("adm/db", SecretValue::map([("user", "app")]));
    first.tags = vec![("team".into(), "payments".into())];
    first.description = Some("the app's database".into());
    first.create_only = true;
    let v1 = b.put(first).await.expect("create");
    let described = b
        .client()
        .describe_secret()
        .secret_id("adm/db")
        .send()
        .await
        .expect("describe");
    assert_eq!(described.description(), Some("the app's database"));
    assert_eq!(described.tags()[0].key(), Some("team"));
    assert_eq!(described.tags()[0].value(), Some("payments"));

    let mut again = PutRequest::new("adm/db", SecretValue::text("clobber"));
    again.create_only = true;
    assert_eq!(b.put(again).await.unwrap_err().kind, AdminErrorKind::AlreadyExists);
    let v2 = put(&b, "adm/db", SecretValue::map([("user", "app2")])).await;
    put(&b, "adm/other", SecretValue::binary(vec![1, 2, 3])).await;
    put(&b, "admx", SecretValue::text("not under adm/")).await;

    let versions = b.versions("adm/db").await.expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].id, v2);
    assert!(versions[0].stages.contains(&"AWSCURRENT".to_string()), "{versions:?}");
    assert_eq!(versions[1].id, v1);
    assert!(versions[1].stages.contains(&"AWSPREVIOUS".to_string()), "{versions:?}");
    assert!(versions[0].created.is_some());

    let listed: Vec<String> = b.list("adm/").await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(listed, ["adm/db", "adm/other"]);
    let all: Vec<String> = b.list("").await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(all, ["adm/db", "adm/other", "admx"]);

    // Recoverable delete: unreadable and unlisted, but the name is still taken until it is restored.
    b.delete("adm/db", DeleteMode::RecoveryDays(7)).await.expect("delete");
    let r = b.fetch(&[FetchRequest::current("adm/db")]).await;
    assert_eq!(
        r[0].as_ref().err().map(|e| e.kind),
        Some(FailureKind::NotFound),
        "{:?}",
        r[0]
    );
    let listed: Vec<String> = b.list("adm/").await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(listed, ["adm/other"]);

    b.delete("adm/other", DeleteMode::Force).await.expect("force delete");
    let e = b.delete("adm/other", DeleteMode::Default).await.unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::NotFound, "{e}");
    // As in AWS, forcing the deletion of a secret that does not exist succeeds.
    b.delete("adm/other", DeleteMode::Force)
        .await
        .expect("idempotent force delete");
    // AWS answers ResourceNotFoundException (→ NotFound); moto 5.2.5 fails with a KeyError (HTTP 500).
    let e = b.versions("adm/nothing").await.unwrap_err();
    assert!(
        matches!(e.kind, AdminErrorKind::NotFound | AdminErrorKind::Unavailable),
        "{e}"
    );
}

#[derive(Secrets)]
struct FromBoto {
    #[secret(path = "boto/db", key = "password")]
    password: SecretString,
    #[secret(path = "boto/db", key = "port")]
    port: SecretBox<u16>,
    #[secret(path = "boto/token")]
    token: SecretString,
    #[secret(path = "boto/token", version_stage = "AWSPREVIOUS")]
    old_token: SecretString,
    #[secret(path = "boto/blob")]
    blob: SecretBox<Vec<u8>>,
}

const BOTO_SCRIPT: &str = r#"
import json, os, boto3
sm = boto3.client("secretsmanager", endpoint_url=os.environ["MOTO"], region_name="eu-west-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
sm.create_secret(Name="boto/db", SecretString=json.dumps({"password": "hunter2", "port": 6543}))
sm.create_secret(Name="boto/token", SecretString="token-1")
sm.put_secret_value(SecretId="boto/token", SecretString="token-2")
sm.create_secret(Name="boto/blob", SecretBinary=bytes([0, 1, 2, 254, 255]))
print("written")
"#;

#[tokio::test]
async fn reads_what_boto3_writes() {
    let moto = moto().await;
    let python = skm_testing::venv_bin("python");
    let mut command = Command::new(&python);
    command
        .args(["-c", BOTO_SCRIPT])
        .env("MOTO", moto.endpoint())
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "boto3 failed (is boto3 installed in .venv?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let b = builder(&moto.endpoint()).region("eu-west-1").build().await.unwrap();
    let s = loader(&b).load::<FromBoto>().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.password.expose_secret(), "hunter2");
    assert_eq!(*s.port.expose_secret(), 6543);
    assert_eq!(s.token.expose_secret(), "token-2");
    assert_eq!(s.old_token.expose_secret(), "token-1");
    assert_eq!(s.blob.expose_secret(), &vec![0, 1, 2, 254, 255]);
}

#[tokio::test]
async fn debug_output_never_shows_values() {
    let moto = moto().await;
    let b = backend(&moto.endpoint()).await;
    put(&b, "leak/check", SecretValue::text(SENTINEL)).await;
    let r = b.fetch(&[FetchRequest::current("leak/check")]).await;
    assert_eq!(text(&r[0]), SENTINEL);
    let shown = format!("{r:?} {b:?} {:?}", builder(&moto.endpoint()));
    assert!(!shown.contains(SENTINEL), "{shown}");
    assert!(!shown.contains("\"test\""), "credentials shown: {shown}");
}

// ---- Child processes: the process environment is the input, so each case gets a fresh process. ----

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
    jwt_secret: SecretString,
}

const CARD_VALUE: &str = "card-jwt-from-moto";

/// Runs only when `SKM_AWS_CHILD` is set, as a child process started by the tests below.
#[tokio::test]
async fn child_process_entry() {
    let Ok(mode) = std::env::var("SKM_AWS_CHILD") else {
        return;
    };
    match mode.as_str() {
        // The README's card example, unchanged.
        "card" => {
            async fn run() -> Result<AppSecrets, skm::Error> {
                let cfg = AppSecrets::load().await?;
                Ok(cfg)
            }
            let cfg = run().await.unwrap_or_else(|e| panic!("card example failed: {e}"));
            assert_eq!(cfg.jwt_secret.expose_secret(), CARD_VALUE);
        }
        // An explicit endpoint beats the environment's.
        "builder-endpoint" => {
            let endpoint = std::env::var("CHILD_MOTO").unwrap();
            let b = AwsBackend::builder().endpoint_url(endpoint).build().await.unwrap();
            let s = Loader::new().backend(b).no_dotenv().load::<AppSecrets>().await.unwrap();
            assert_eq!(s.jwt_secret.expose_secret(), CARD_VALUE);
        }
        "no-region" => {
            let e = AwsBackend::from_env().await.expect_err("no region anywhere");
            assert!(
                matches!(&e, skm::Error::Config(m) if m.message().contains("AWS_REGION")),
                "{e}"
            );
        }
        // The card example with proxy variables naming a listener: it must load without the listener.
        "proxied-env" => {
            let cfg = AppSecrets::load()
                .await
                .unwrap_or_else(|e| panic!("load through the env failed: {e}"));
            assert_eq!(cfg.jwt_secret.expose_secret(), CARD_VALUE);
        }
        // The control: with the opt-in, the plain-http request goes to the proxy (which answers 502).
        "proxied-opt-in" => {
            assert!(
                AppSecrets::load().await.is_err(),
                "the proxy answers 502: the load must fail"
            );
        }
        other => panic!("unknown SKM_AWS_CHILD mode {other}"),
    }
    println!("CHILD-OK {mode}");
}

async fn run_child(mode: &str, env: &[(&str, String)]) {
    let dir = std::env::temp_dir().join(format!("skm-aws-child-{}-{mode}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["aws::child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env_clear()
        // No `.env` file and no AWS profile files can be found from here.
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("SKM_AWS_CHILD", mode)
        .env("AWS_EC2_METADATA_DISABLED", "true")
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

async fn moto_with_card_secret() -> Moto {
    let moto = moto().await;
    let b = backend(&moto.endpoint()).await;
    put(&b, "auth/jwt", SecretValue::map([("secret", CARD_VALUE)])).await;
    moto
}

#[tokio::test]
async fn card_example_loads_from_moto_with_only_aws_env_vars() {
    let moto = moto_with_card_secret().await;
    run_child(
        "card",
        &[
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", moto.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ],
    )
    .await;
}

#[tokio::test]
async fn service_specific_endpoint_variable_wins_over_the_general_one() {
    let moto = moto_with_card_secret().await;
    let dead = format!("http://127.0.0.1:{}", skm_testing::free_port());
    run_child(
        "card",
        &[
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", dead),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ],
    )
    .await;
}

#[tokio::test]
async fn builder_endpoint_wins_over_environment_endpoints() {
    let moto = moto_with_card_secret().await;
    let dead = format!("http://127.0.0.1:{}", skm_testing::free_port());
    run_child(
        "builder-endpoint",
        &[
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", dead.clone()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", dead),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("CHILD_MOTO", moto.endpoint()),
        ],
    )
    .await;
}

#[tokio::test]
async fn no_region_is_a_configuration_error() {
    no_instance_metadata();
    run_child("no-region", &[]).await;
}

#[derive(Secrets)]
struct Watched {
    #[secret(path = "watch/jwt", key = "secret")]
    jwt: skm::Rotating<SecretString>,
    #[secret(path = "watch/db", key = "password")]
    db: SecretString,
}

/// Hot reload: a `PutSecretValue` is seen within one short TTL; a tick on unchanged secrets costs one
/// batch per 20 names and no `GetSecretValue` (AWS has no cheaper version probe: one `DescribeSecret` per
/// secret would cost more requests than the batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_a_put_within_one_ttl_and_rotation_keeps_the_previous() {
    let moto = moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    let b = backend(&proxy.url()).await;
    put(&b, "watch/jwt", SecretValue::map([("secret", "jwt-v1")])).await;
    put(&b, "watch/jwt", SecretValue::map([("secret", "jwt-v2")])).await;
    put(&b, "watch/db", SecretValue::map([("password", "db-v1")])).await;

    let ttl = Duration::from_millis(300);
    let mut watch = loader(&b).watch::<Watched>(skm::WatchOptions::ttl(ttl)).await.unwrap();
    assert_eq!(watch.latest().jwt.current().expose_secret(), "jwt-v2");
    assert_eq!(watch.latest().jwt.previous().unwrap().expose_secret(), "jwt-v1");

    // One unchanged tick.
    proxy.clear();
    let report = watch.refresh_now().await.expect("a refresh against moto");
    assert!(report.changed.is_empty(), "{report:?}");
    let counts = proxy.counts();
    // The default strategy checks versions with DescribeSecret (one per secret) and fetches no value.
    assert_eq!(proxy.count_of("secretsmanager.DescribeSecret"), 2, "{counts:?}");
    assert_eq!(proxy.count_of("secretsmanager.BatchGetSecretValue"), 0, "{counts:?}");
    assert_eq!(proxy.count_of("secretsmanager.GetSecretValue"), 0, "{counts:?}");
    assert_eq!(watch.stats().changes, 0);

    // Rotation: the new value arrives within one TTL and the old one becomes `previous`.
    put(&b, "watch/jwt", SecretValue::map([("secret", "jwt-v3")])).await;
    let started = Instant::now();
    tokio::time::timeout(ttl * 3, watch.changed())
        .await
        .expect("change within the TTL")
        .unwrap();
    println!("rotation seen after {:?} (TTL {ttl:?})", started.elapsed());
    let now = watch.get().unwrap();
    assert_eq!(now.jwt.current().expose_secret(), "jwt-v3");
    assert_eq!(now.jwt.previous().unwrap().expose_secret(), "jwt-v2");
    assert_eq!(now.db.expose_secret(), "db-v1");
}

/// Issue 28: `refresh_now` after a `PutSecretValue` returns the new version at once (the TTL is an hour) and
/// names the field that changed, never its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_now_returns_the_new_version_right_after_a_put() {
    let moto = moto().await;
    let b = backend(&moto.endpoint()).await;
    put(&b, "watch/jwt", SecretValue::map([("secret", "SENTINEL-jwt-v1")])).await;
    put(&b, "watch/db", SecretValue::map([("password", "db-v1")])).await;
    let watch = loader(&b)
        .watch::<Watched>(skm::WatchOptions::ttl(Duration::from_secs(3600)))
        .await
        .unwrap();
    put(&b, "watch/jwt", SecretValue::map([("secret", "SENTINEL-jwt-v2")])).await;
    let report = watch.refresh_now().await.expect("a refresh against moto");
    assert_eq!(report.changed, ["jwt"], "{report:?}");
    assert!(!format!("{report:?}").contains("SENTINEL"));
    let now = watch.get().unwrap();
    assert_eq!(now.jwt.current().expose_secret(), "SENTINEL-jwt-v2");
    assert_eq!(now.jwt.previous().unwrap().expose_secret(), "SENTINEL-jwt-v1");
}

/// Stale on error: moto stopped during a refresh keeps the old values and records a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_keeps_old_values_when_the_backend_stops() {
    let moto = moto().await;
    let b = builder(&moto.endpoint()).max_attempts(1).build().await.unwrap();
    put(&b, "watch/jwt", SecretValue::map([("secret", "jwt-v1")])).await;
    put(&b, "watch/db", SecretValue::map([("password", "db-v1")])).await;
    let watch = loader(&b)
        .deadline(Duration::from_secs(5))
        .watch::<Watched>(skm::WatchOptions::ttl(Duration::from_secs(3600)))
        .await
        .unwrap();
    drop(moto);
    watch.request_refresh();
    watch.wait_ticks(1).await;
    let stats = watch.stats();
    assert_eq!(stats.failures, 1, "{stats:?}");
    assert!(stats.last_error.unwrap().contains("unavailable"));
    assert_eq!(watch.get().unwrap().db.expose_secret(), "db-v1");
}

// Issue 25 (findings 2 and 3) and issue 23 (no call waits forever): where requests may go, and how long they
// may take.

/// A TCP listener for the transport tests: it counts connections and, per `answer`, either holds each one
/// open without a byte in reply, or answers `502 Bad Gateway` and closes.
struct Listener {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start(ip: std::net::IpAddr, answer: bool) -> Listener {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {ip}: {e}"));
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                if answer {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        let _ = stream.read(&mut buf).await;
                        let _ = stream
                            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                    });
                } else {
                    // Accepted, never answered, never closed.
                    held.push(stream);
                }
            }
        });
        Listener {
            addr,
            connections,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// This machine's address on its default route: not loopback, and reachable from here.
fn non_loopback_address() -> std::net::IpAddr {
    use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
    // Connecting a UDP socket sends nothing; it only picks the route and so the local address.
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("a UDP socket");
    for target in ["192.0.2.1:9", "10.255.255.254:9", "203.0.113.1:9"] {
        if probe.connect(target).is_ok() {
            if let Ok(SocketAddr::V4(local)) = probe.local_addr() {
                if !local.ip().is_loopback() && !local.ip().is_unspecified() {
                    return (*local.ip()).into();
                }
            }
        }
    }
    panic!("this machine has no non-loopback IPv4 address to listen on; the test needs one (check `ip addr`)");
}

#[tokio::test]
async fn plain_http_to_another_host_is_refused_whatever_the_scheme_case_or_userinfo() {
    no_instance_metadata();
    let remote = Listener::start(non_loopback_address(), true).await;
    let host = remote.addr.to_string();
    for endpoint in [
        format!("HTTP://{host}"),
        format!("Http://{host}/"),
        format!("http://{host}"),
        // The userinfo trick that passed GCP's loopback check: the host is the one after `@`.
        format!("http://127.0.0.1:x@{host}"),
    ] {
        let e = builder(&endpoint)
            .build()
            .await
            .err()
            .unwrap_or_else(|| panic!("`{endpoint}` was accepted"));
        assert!(matches!(e, skm::Error::Config(_)), "{endpoint}: {e}");
        assert!(!e.to_string().contains("x@"), "{e}");
    }
    assert_eq!(remote.connections(), 0, "nothing may reach the remote listener");
}

#[tokio::test]
async fn proxy_variables_never_carry_plain_or_loopback_requests() {
    let moto = moto_with_card_secret().await;
    let proxy = Listener::start(std::net::Ipv4Addr::LOCALHOST.into(), true).await;
    let mut env = vec![
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("HTTP_PROXY", proxy.url()),
        ("http_proxy", proxy.url()),
        ("HTTPS_PROXY", proxy.url()),
        ("ALL_PROXY", proxy.url()),
    ];
    run_child("proxied-env", &env).await;
    assert_eq!(proxy.connections(), 0, "the proxy saw a plain-http request to loopback");
    // The control: opting in sends the same request to the proxy, so the listener does see proxied traffic.
    env.push(("SKM_AWS_PROXY_PLAIN", "1".into()));
    env.push(("AWS_MAX_ATTEMPTS", "1".into()));
    run_child("proxied-opt-in", &env).await;
    assert!(
        proxy.connections() > 0,
        "with SKM_AWS_PROXY_PLAIN=1 the request goes through the proxy"
    );
}

#[tokio::test]
async fn an_endpoint_that_never_answers_fails_within_the_attempt_timeouts() {
    no_instance_metadata();
    let silent = Listener::start(std::net::Ipv4Addr::LOCALHOST.into(), false).await;
    // Defaults only: no timeout, attempt count or deadline set by the test.
    let b = backend(&silent.url()).await;
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), b.fetch(&[FetchRequest::current("app/plain")]))
        .await
        .unwrap_or_else(|_| panic!("still waiting after 60 s"));
    let took = started.elapsed();
    let e = r[0].as_ref().expect_err("no answer");
    assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
    // 12 s for the call with its retries; generous on a noisy machine, far below the 30 s load deadline.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        took >= Duration::from_secs(4),
        "a 5 s attempt timeout cannot end in {took:?}"
    );
    assert!(
        e.detail.to_lowercase().contains("timeout") || e.detail.contains("timed out"),
        "{e}"
    );
    assert!(
        !e.detail.contains('\n') && !e.detail.contains(" { "),
        "one line, no Debug dump: {e}"
    );
    eprintln!("silent endpoint: failed in {took:?}: {e}");

    // Through the loader, the error names the backend.
    let started = Instant::now();
    let err = loader(&b).load::<Basic>().await.err().expect("no answer");
    let text = err.to_string();
    assert!(text.contains("AWS Secrets Manager"), "{text}");
    assert!(!text.contains("backend backend"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(25), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_refused_connection_fails_at_once() {
    no_instance_metadata();
    let port = skm_testing::free_port();
    // The default attempts (5): a refused connection must not use them.
    let b = backend(&format!("http://127.0.0.1:{port}")).await;
    let started = Instant::now();
    let r = b.fetch(&[FetchRequest::current("app/plain")]).await;
    let took = started.elapsed();
    let e = r[0].as_ref().expect_err("nothing listens");
    assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(e.detail.contains("refused"), "the root cause: {e}");
    assert!(
        !e.detail.contains('\n') && !e.detail.contains(" { "),
        "one line, no Debug dump: {e}"
    );
    eprintln!("refused port: failed in {took:?}: {e}");
}
