//! The peers start and speak their protocol, and the proxy records and rewrites what passes through it.
//!
//! These tests need the peers in `.venv` (`./scripts/test` installs them) and fail, never skip, without.

use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use skm_testing::{
    drain_time, quota_operation, venv_bin, Action, Bao, Fault, Moto, OperationCount, Provider, Proxy, Quotas, Rate,
    RecordedRequest,
};

/// What a test client saw: the answer, or the transport error.
type Exchange = Result<(u16, HeaderMap, Bytes), String>;

/// One request on a fresh connection (so a reset or stall affects only this request).
async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: &str) -> Exchange {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let response = client.request(request).await.map_err(|e| format!("{e:?}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
    Ok((parts.status.as_u16(), parts.headers, body))
}

/// A Secrets Manager call the way the AWS SDK makes it (moto checks no signature, only reads the region).
async fn secrets_manager(endpoint: &str, operation: &str, body: Value) -> Exchange {
    let target = format!("secretsmanager.{operation}");
    let headers = [
        ("x-amz-target", target.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/secretsmanager/aws4_request, \
             SignedHeaders=host;x-amz-target, Signature=00",
        ),
    ];
    send(Method::POST, &format!("{endpoint}/"), &headers, &body.to_string()).await
}

fn json_of(exchange: &Exchange) -> Value {
    let (_, _, body) = exchange.as_ref().expect("an answer");
    serde_json::from_slice(body).expect("a JSON body")
}

fn status_of(exchange: &Exchange) -> u16 {
    exchange.as_ref().expect("an answer").0
}

fn port_is_closed(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err()
}

#[test]
fn a_missing_peer_panics_with_the_install_command() {
    let panic = std::panic::catch_unwind(|| venv_bin("no-such-peer")).expect_err("must panic");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(message.starts_with("no-such-peer not found at "), "{message}");
    assert!(message.contains("/bin/no-such-peer"), "{message}");
    assert!(
        message.ends_with(": run ./scripts/test (it installs the test peers into .venv)"),
        "{message}"
    );
}

#[tokio::test]
async fn moto_serves_secrets_manager_resets_and_dies_with_its_handle() {
    let moto = Moto::start().await;
    let endpoint = moto.endpoint();
    assert_eq!(endpoint, format!("http://127.0.0.1:{}", moto.port()));

    let created = secrets_manager(
        &endpoint,
        "CreateSecret",
        json!({"Name": "app/db", "SecretString": "s3cret"}),
    )
    .await;
    assert_eq!(status_of(&created), 200, "{created:?}");
    let read = secrets_manager(&endpoint, "GetSecretValue", json!({"SecretId": "app/db"})).await;
    assert_eq!(json_of(&read)["SecretString"], "s3cret");
    assert_eq!(json_of(&read)["VersionStages"], json!(["AWSCURRENT"]));

    moto.reset().await;
    let gone = secrets_manager(&endpoint, "GetSecretValue", json!({"SecretId": "app/db"})).await;
    // moto answers 404 where AWS answers 400; the code is what matters.
    assert_eq!(json_of(&gone)["__type"], "ResourceNotFoundException", "{gone:?}");

    let port = moto.port();
    drop(moto);
    assert!(port_is_closed(port), "moto still listens after drop");
}

#[tokio::test]
async fn bao_serves_kv_through_the_api_and_the_cli_without_touching_the_users_token() {
    let user_token = std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".vault-token"));
    let before = user_token.as_ref().map(|path| std::fs::read(path).ok());

    let bao = Bao::start().await;
    assert_eq!(bao.addr(), format!("http://127.0.0.1:{}", bao.port()));

    // KV v2 at secret/, through the HTTP API.
    let (status, _) = bao
        .api("POST", "/v1/secret/data/app", json!({"data": {"password": "hunter2"}}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = bao.api("GET", "secret/data/app", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["data"]["password"], "hunter2");
    assert_eq!(body["data"]["metadata"]["version"], 1);
    let (status, _) = bao.api_as("not-a-token", "GET", "secret/data/app", None).await;
    assert_eq!(status, 403);

    // KV v1 mounted with the CLI, written with the CLI, read with the API.
    bao.bao(&["secrets", "enable", "-path=kv1", "-version=1", "kv"]).await;
    bao.bao(&["kv", "put", "kv1/app", "user=svc"]).await;
    let (status, body) = bao.api("GET", "/v1/kv1/app", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user"], "svc");

    // A policy from stdin, and a token limited by it.
    let policy = br#"path "kv1/*" { capabilities = ["read"] }"#;
    bao.bao_with_stdin(&["policy", "write", "kv1-read", "-"], policy).await;
    let output = bao.bao(&["token", "create", "-policy=kv1-read", "-format=json"]).await;
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    let token = created["auth"]["client_token"].as_str().unwrap();
    assert_eq!(bao.api_as(token, "GET", "kv1/app", None).await.0, 200);
    assert_eq!(bao.api_as(token, "GET", "secret/data/app", None).await.0, 403);

    let failed = bao.bao_unchecked(&["kv", "get", "nope/missing"]).await;
    assert!(!failed.status.success());

    let port = bao.port();
    drop(bao);
    assert!(port_is_closed(port), "bao still listens after drop");
    let after = user_token.as_ref().map(|path| std::fs::read(path).ok());
    assert_eq!(before, after, "~/.vault-token changed");
}

#[tokio::test]
async fn the_proxy_counts_aws_operations_in_front_of_moto_and_applies_a_rule() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    let url = proxy.url();

    let created = secrets_manager(&url, "CreateSecret", json!({"Name": "a", "SecretString": "1"})).await;
    assert_eq!(status_of(&created), 200, "{created:?}");
    for _ in 0..2 {
        let read = secrets_manager(&url, "GetSecretValue", json!({"SecretId": "a"})).await;
        assert_eq!(json_of(&read)["SecretString"], "1");
    }
    assert_eq!(proxy.count(), 3);
    assert_eq!(proxy.count_of("secretsmanager.GetSecretValue"), 2);
    assert_eq!(proxy.counts()["secretsmanager.CreateSecret"], 1);
    let first = &proxy.requests()[0];
    assert_eq!((first.method.as_str(), first.path.as_str()), ("POST", "/"));
    assert_eq!(first.json().unwrap()["Name"], "a");

    // Throttle every read; writes still pass.
    proxy.set_rule(|request: &RecordedRequest| match request.target.as_deref() {
        Some("secretsmanager.GetSecretValue") => Action::aws_error(400, "ThrottlingException", "Rate exceeded"),
        _ => Action::Forward,
    });
    let throttled = secrets_manager(&url, "GetSecretValue", json!({"SecretId": "a"})).await;
    assert_eq!(status_of(&throttled), 400);
    assert_eq!(json_of(&throttled)["__type"], "ThrottlingException");
    let (_, headers, _) = throttled.as_ref().unwrap();
    assert_eq!(headers["x-amzn-errortype"], "ThrottlingException");
    let put = secrets_manager(&url, "PutSecretValue", json!({"SecretId": "a", "SecretString": "2"})).await;
    assert_eq!(status_of(&put), 200, "{put:?}");

    // Random faults are worded for AWS: a throttle is a 400 ThrottlingException.
    proxy.clear_rule();
    proxy.set_fault_kinds(&[Fault::Throttle]);
    proxy.set_fault_rate(1.0, 7);
    let faulted = secrets_manager(&url, "GetSecretValue", json!({"SecretId": "a"})).await;
    assert_eq!(status_of(&faulted), 400);
    assert_eq!(
        json_of(&faulted),
        json!({"__type": "ThrottlingException", "message": "Rate exceeded"})
    );
    assert_eq!(proxy.faults_injected(), 1);

    proxy.set_fault_rate(0.0, 0);
    proxy.clear();
    let read = secrets_manager(&url, "GetSecretValue", json!({"SecretId": "a"})).await;
    assert_eq!(json_of(&read)["SecretString"], "2");
    assert_eq!(proxy.count(), 1);
}

#[tokio::test]
async fn the_proxy_counts_vault_operations_and_throttles_them_with_429() {
    let bao = Bao::start().await;
    let proxy = Proxy::start(&bao.addr()).await;
    let read_url = format!("{}/v1/secret/data/app?version=1", proxy.url());
    let token = [("x-vault-token", bao.root_token())];

    bao.api("POST", "secret/data/app", json!({"data": {"k": "v"}})).await;
    let read = send(Method::GET, &read_url, &token, "").await;
    assert_eq!(json_of(&read)["data"]["data"]["k"], "v");
    assert_eq!(proxy.count_of("GET /v1/secret/data/app"), 1);
    assert_eq!(proxy.requests()[0].path, "/v1/secret/data/app?version=1");

    proxy.set_fault_kinds(&[Fault::Throttle]);
    proxy.set_fault_rate(1.0, 1);
    let throttled = send(Method::GET, &read_url, &token, "").await;
    assert_eq!(status_of(&throttled), 429);
    assert!(json_of(&throttled)["errors"][0]
        .as_str()
        .unwrap()
        .contains("rate limit quota exceeded"));
}

/// A proxy in front of a stub target that answers every request with `200 target`.
async fn proxy_in_front_of_a_stub() -> (Proxy, Proxy) {
    let target = Proxy::stub(|_: &RecordedRequest| Action::Respond {
        status: 200,
        headers: vec![("x-from".into(), "target".into())],
        body: Bytes::from_static(b"target"),
    })
    .await;
    let proxy = Proxy::start(&target.url()).await;
    (target, proxy)
}

#[tokio::test]
async fn the_proxy_forwards_responds_delays_resets_and_stalls() {
    let (target, proxy) = proxy_in_front_of_a_stub().await;
    let url = format!("{}/some/path?q=1", proxy.url());

    let forwarded = send(Method::POST, &url, &[], "hello").await.unwrap();
    assert_eq!((forwarded.0, &forwarded.2[..]), (200, &b"target"[..]));
    assert_eq!(forwarded.1["x-from"], "target");
    assert_eq!(target.requests()[0].path, "/some/path?q=1");
    assert_eq!(&target.requests()[0].body[..], b"hello");

    proxy.set_rule(|request: &RecordedRequest| match request.path.as_str() {
        "/respond" => Action::json(418, &json!({"teapot": true})),
        "/delay" => Action::Delay(Duration::from_millis(300)),
        "/reset" => Action::Reset,
        "/stall" => Action::Stall,
        _ => Action::Forward,
    });
    let base = proxy.url();

    let responded = send(Method::GET, &format!("{base}/respond"), &[], "").await;
    assert_eq!(status_of(&responded), 418);
    assert_eq!(json_of(&responded), json!({"teapot": true}));

    let started = Instant::now();
    let delayed = send(Method::GET, &format!("{base}/delay"), &[], "").await;
    assert_eq!(status_of(&delayed), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let reset = send(Method::GET, &format!("{base}/reset"), &[], "").await;
    let error = reset.expect_err("a reset connection gives no answer");
    // A TCP reset (errno 104), not a polite close.
    assert!(error.contains("ConnectionReset"), "{error}");

    let stalled = tokio::time::timeout(
        Duration::from_millis(300),
        send(Method::GET, &format!("{base}/stall"), &[], ""),
    )
    .await;
    assert!(stalled.is_err(), "a stalled request must not be answered");

    assert_eq!(proxy.count(), 5);
    assert_eq!(target.count(), 2, "only forwarded requests reach the target");
}

#[tokio::test]
async fn the_proxy_adds_latency_and_tracks_concurrency() {
    let (_target, proxy) = proxy_in_front_of_a_stub().await;
    proxy.set_latency(Duration::from_millis(400));
    let url = proxy.url();

    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = url.clone();
        requests.spawn(async move { send(Method::GET, &url, &[], "").await });
    }
    let answers = requests.join_all().await;
    let elapsed = started.elapsed();
    assert!(answers.iter().all(|answer| status_of(answer) == 200));
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    // In series the four would take 1.6 s.
    assert!(
        elapsed < Duration::from_millis(1200),
        "latency must not serialize requests: {elapsed:?}"
    );
    assert_eq!(proxy.max_in_flight(), 4);
    assert_eq!(proxy.in_flight(), 0);
    assert_eq!(proxy.round_trips(), 1, "four requests sent at once are one round trip");

    // Three more, each sent after the answer to the one before: three round trips after the first.
    proxy.set_latency(Duration::ZERO);
    for _ in 0..3 {
        assert_eq!(status_of(&send(Method::GET, &url, &[], "").await), 200);
    }
    assert_eq!(proxy.round_trips(), 4);
    proxy.clear();
    assert_eq!(proxy.round_trips(), 0);
    assert_eq!(status_of(&send(Method::GET, &url, &[], "").await), 200);
    assert_eq!(proxy.round_trips(), 1, "clear starts the count again");
}

#[tokio::test]
async fn random_faults_are_reproducible_from_the_seed() {
    async fn statuses(seed: u64) -> (Vec<String>, usize) {
        let (_target, proxy) = proxy_in_front_of_a_stub().await;
        proxy.set_fault_kinds(&[Fault::InternalError, Fault::Unavailable, Fault::Throttle, Fault::Reset]);
        proxy.set_fault_rate(0.5, seed);
        let mut seen = Vec::new();
        for _ in 0..40 {
            seen.push(match send(Method::GET, &proxy.url(), &[], "").await {
                Ok((status, _, _)) => status.to_string(),
                Err(_) => "reset".to_string(),
            });
        }
        (seen, proxy.faults_injected())
    }
    let (first, injected) = statuses(42).await;
    let (again, _) = statuses(42).await;
    let (other, _) = statuses(43).await;
    assert_eq!(first, again);
    assert_ne!(first, other);
    assert!((8..=32).contains(&injected), "about half of 40 requests: {injected}");
    let kinds: std::collections::BTreeSet<&str> = first.iter().map(String::as_str).collect();
    assert_eq!(kinds, ["200", "429", "500", "503", "reset"].into());
}

#[tokio::test]
async fn aws_quotas_throttle_per_operation_as_aws_does_in_front_of_moto() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    // Batch: 2 at once, then 1 per 100 s (none more during the test); Describe: plenty.
    proxy.set_quotas(Quotas::aws(1.0).with(
        "BatchGetSecretValue",
        Rate {
            per_second: 0.01,
            burst: 2.0,
        },
    ));
    let created = secrets_manager(
        &proxy.url(),
        "CreateSecret",
        json!({"Name": "q/a", "SecretString": "x"}),
    )
    .await;
    assert_eq!(status_of(&created), 200, "{created:?}");

    let mut statuses = Vec::new();
    for _ in 0..5 {
        let answer = secrets_manager(&proxy.url(), "BatchGetSecretValue", json!({"SecretIdList": ["q/a"]})).await;
        statuses.push(status_of(&answer));
        if status_of(&answer) == 400 {
            let (_, headers, _) = answer.as_ref().unwrap();
            assert_eq!(headers["content-type"], "application/x-amz-json-1.1");
            assert_eq!(headers["x-amzn-errortype"], "ThrottlingException");
            assert_eq!(
                json_of(&answer),
                json!({"__type": "ThrottlingException", "message": "Rate exceeded"})
            );
        }
    }
    assert_eq!(statuses, [200, 200, 400, 400, 400]);
    // Another operation has its own bucket.
    let described = secrets_manager(&proxy.url(), "DescribeSecret", json!({"SecretId": "q/a"})).await;
    assert_eq!(status_of(&described), 200, "{described:?}");

    let counts = proxy.quota_counts();
    assert_eq!(counts["BatchGetSecretValue"], OperationCount { total: 5, throttled: 3 });
    assert_eq!(counts["DescribeSecret"], OperationCount { total: 1, throttled: 0 });
    // CreateSecret has no quota in the bed, but is counted.
    assert_eq!(counts["CreateSecret"], OperationCount { total: 1, throttled: 0 });
    // Throttled calls never reach moto: moto saw 2 batch calls; the proxy recorded all 5.
    assert_eq!(proxy.count_of("secretsmanager.BatchGetSecretValue"), 5);

    // clear() refills the buckets and zeroes the counters.
    proxy.clear();
    assert!(proxy.quota_counts().is_empty());
    let again = secrets_manager(&proxy.url(), "BatchGetSecretValue", json!({"SecretIdList": ["q/a"]})).await;
    assert_eq!(status_of(&again), 200);
}

#[tokio::test]
async fn a_bucket_refills_at_its_rate() {
    let (_stub, proxy) = proxy_in_front_of_a_stub().await;
    proxy.set_quotas(Quotas::none(Provider::Aws).with(
        "GetSecretValue",
        Rate {
            per_second: 20.0,
            burst: 1.0,
        },
    ));
    let url = proxy.url();
    let get = || secrets_manager(&url, "GetSecretValue", json!({"SecretId": "s"}));
    assert_eq!(status_of(&get().await), 200);
    assert_eq!(status_of(&get().await), 400);
    // One token per 50 ms.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(status_of(&get().await), 200);
    assert_eq!(
        proxy.quota_counts()["GetSecretValue"],
        OperationCount { total: 3, throttled: 1 }
    );
}

#[tokio::test]
async fn gcp_quotas_answer_429_resource_exhausted_per_quota_group() {
    let (_stub, proxy) = proxy_in_front_of_a_stub().await;
    proxy.set_quotas(Quotas::gcp(1.0).with(
        "gcp.read",
        Rate {
            per_second: 0.001,
            burst: 1.0,
        },
    ));
    let base = proxy.url();
    let access = format!("{base}/v1/projects/p/secrets/db/versions/latest:access");
    let read = format!("{base}/v1/projects/p/secrets/db");
    assert_eq!(status_of(&send(Method::GET, &read, &[], "").await), 200);
    let over = send(Method::GET, &read, &[], "").await;
    assert_eq!(status_of(&over), 429);
    let (_, headers, _) = over.as_ref().unwrap();
    assert_eq!(headers["content-type"], "application/json; charset=UTF-8");
    let error = &json_of(&over)["error"];
    assert_eq!(error["code"], 429);
    assert_eq!(error["status"], "RESOURCE_EXHAUSTED");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("Quota exceeded for quota metric 'Read requests'"));
    // Access requests are another group, with 90,000/min.
    for _ in 0..3 {
        assert_eq!(status_of(&send(Method::GET, &access, &[], "").await), 200);
    }
    let counts = proxy.quota_counts();
    assert_eq!(counts["gcp.read"], OperationCount { total: 2, throttled: 1 });
    assert_eq!(counts["gcp.access"], OperationCount { total: 3, throttled: 0 });
}

#[test]
fn quota_operations_and_scaled_defaults() {
    let request = |method: &str, path: &str, target: Option<&str>| RecordedRequest {
        method: method.into(),
        path: path.into(),
        target: target.map(str::to_string),
        headers: HeaderMap::new(),
        body: Bytes::new(),
    };
    let op = |r: RecordedRequest| quota_operation(&r);
    assert_eq!(
        op(request("POST", "/", Some("secretsmanager.DescribeSecret"))).as_deref(),
        Some("DescribeSecret")
    );
    assert_eq!(
        op(request("POST", "/v1/projects/p/secrets/s:addVersion", None)).as_deref(),
        Some("gcp.write")
    );
    assert_eq!(
        op(request("GET", "/v1/projects/p/secrets/s/versions?x=1", None)).as_deref(),
        Some("gcp.read")
    );
    assert_eq!(op(request("GET", "/v1/secret/data/app", None)), None);

    let aws = Quotas::aws(0.5);
    assert_eq!(aws.rate("BatchGetSecretValue"), Some(Rate::per_second(50.0)));
    assert_eq!(aws.rate("GetSecretValue"), Some(Rate::per_second(5_000.0)));
    assert_eq!(aws.rate("DescribeSecret"), Some(Rate::per_second(20_000.0)));
    // Scaled below one request, a bucket still holds one.
    assert_eq!(Quotas::aws(0.001).rate("BatchGetSecretValue").unwrap().burst, 1.0);
    let gcp = Quotas::gcp(1.0).rate("gcp.access").unwrap();
    assert_eq!((gcp.per_second, gcp.burst), (1_500.0, 90_000.0));
    assert_eq!(drain_time(Rate::per_second(100.0), 600), Duration::from_secs(5));
}
