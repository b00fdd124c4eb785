//! Fault injection: `skm_testing::Proxy` between the backend and moto / OpenBao answers a share of requests
//! with HTTP 500, 503, throttling (AWS `ThrottlingException`, Vault 429), a connection reset or a stall.
//!
//! - At 30 % faults, 200 loads in a row: at least 99 % succeed with the backends' default retry policy
//!   (attempt counts as shipped; the tests only shorten the backoff delays to keep the wall time down, and
//!   give each attempt a timeout so that a stalled request becomes a retryable failure).
//! - At 100 % faults: each load fails within the loader's deadline, with an error that names the backend and
//!   the reason.
//! - Never a partially filled struct: a load that loses one path fails as a whole, and its error carries
//!   none of the values that were fetched.

use std::time::{Duration, Instant};

use skm::{ExposeSecret, Loader, SecretString, Secrets};
use skm_testing::{Fault, Proxy};

use crate::needles::SENTINEL;

const LOADS: usize = 200;
const RATE: f64 = 0.3;
/// At least 99 % of the loads succeed.
const MIN_OK: usize = LOADS * 99 / 100;

#[derive(Secrets)]
struct App {
    #[secret(path = "fault/app", key = "user")]
    user: SecretString,
    #[secret(path = "fault/app", key = "password")]
    password: SecretString,
}

/// Two paths: one may fail while the other is fetched.
#[derive(Secrets, Debug)]
#[allow(dead_code)] // Never successfully loaded in the partial test; fields are read through Debug.
struct TwoPaths {
    #[secret(path = "fault/app", key = "password")]
    fetched: SecretString,
    #[secret(path = "fault/other", key = "k")]
    lost: SecretString,
}

fn seed() -> u64 {
    std::env::var("SKM_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026)
}

fn loader() -> Loader {
    Loader::new().no_dotenv().env_vars(Vec::<(String, String)>::new())
}

struct Run {
    ok: usize,
    failures: Vec<String>,
    elapsed: Duration,
    slowest: Duration,
}

/// `LOADS` loads in a row through `proxy` at `RATE` faults; every success must hold the right values.
async fn run(proxy: &Proxy, loader: &Loader) -> Run {
    proxy.clear();
    proxy.set_fault_kinds(&Fault::ALL);
    proxy.set_fault_rate(RATE, seed());
    let started = Instant::now();
    let mut run = Run {
        ok: 0,
        failures: Vec::new(),
        elapsed: Duration::ZERO,
        slowest: Duration::ZERO,
    };
    for _ in 0..LOADS {
        let one = Instant::now();
        match loader.load::<App>().await {
            Ok(app) => {
                assert_eq!(app.user.expose_secret(), "app");
                assert_eq!(app.password.expose_secret(), SENTINEL);
                run.ok += 1;
            }
            Err(e) => {
                assert!(!format!("{e:?}").contains(SENTINEL));
                run.failures.push(e.to_string());
            }
        }
        run.slowest = run.slowest.max(one.elapsed());
    }
    run.elapsed = started.elapsed();
    proxy.set_fault_rate(0.0, 0);
    run
}

fn report(backend: &str, proxy: &Proxy, run: &Run, settings: &str) {
    let requests = proxy.count();
    println!(
        "faults, {backend}: {LOADS} loads at {:.0} % faults (500, 503, throttling, reset, stall; seed {:#x}), {settings}: \
         {} succeeded ({:.1} %), {} failed; {} requests, {} faults injected ({:.1} % of requests); {:.1} s, slowest \
         load {} ms",
        RATE * 100.0,
        seed(),
        run.ok,
        run.ok as f64 * 100.0 / LOADS as f64,
        run.failures.len(),
        requests,
        proxy.faults_injected(),
        proxy.faults_injected() as f64 * 100.0 / requests.max(1) as f64,
        run.elapsed.as_secs_f64(),
        run.slowest.as_millis()
    );
    for f in run.failures.iter().take(3) {
        println!("  a failed load: {}", f.replace('\n', "\n    "));
    }
    assert!(
        run.ok >= MIN_OK,
        "{backend}: only {}/{LOADS} loads succeeded at {:.0} % faults; first failure: {:?}",
        run.ok,
        RATE * 100.0,
        run.failures.first()
    );
}

/// At 100 % of one fault kind (then of all), a load fails within `deadline` and its error names the backend
/// and the reason.
async fn total_outage(proxy: &Proxy, loader: &Loader, backend_name: &str, deadline: Duration) -> Vec<String> {
    let loader = loader.clone().deadline(deadline);
    let mut lines = Vec::new();
    let all: &[Fault] = &Fault::ALL;
    let kinds: Vec<(&str, &[Fault])> = vec![
        ("500", &[Fault::InternalError]),
        ("503", &[Fault::Unavailable]),
        ("throttling", &[Fault::Throttle]),
        ("reset", &[Fault::Reset]),
        ("stall", &[Fault::Stall]),
        ("all kinds", all),
    ];
    for (name, kinds) in kinds {
        proxy.clear();
        proxy.set_fault_kinds(kinds);
        proxy.set_fault_rate(1.0, seed());
        let started = Instant::now();
        let result = loader.load::<App>().await;
        let took = started.elapsed();
        let e = match result {
            Ok(_) => panic!("{backend_name}, 100 % {name}: the load succeeded"),
            Err(e) => e,
        };
        let text = e.to_string();
        assert!(
            took <= deadline + Duration::from_millis(500),
            "{backend_name}, 100 % {name}: failed after {took:?}, past the {deadline:?} deadline"
        );
        assert!(
            text.contains(backend_name),
            "{name}: the error does not name the backend:\n{text}"
        );
        let reasons = ["backend unavailable", "throttled", "deadline"];
        assert!(
            reasons.iter().any(|r| text.contains(r)),
            "{name}: the error gives no reason:\n{text}"
        );
        assert!(!format!("{e:?}").contains(SENTINEL));
        let reason = text
            .lines()
            .find(|l| l.contains(backend_name))
            .unwrap_or_default()
            .trim()
            .to_string();
        lines.push(format!(
            "100 % {name}: failed in {} ms ({} requests): {reason}",
            took.as_millis(),
            proxy.count()
        ));
    }
    proxy.set_fault_rate(0.0, 0);
    proxy.set_fault_kinds(&Fault::ALL);
    lines
}

/// A load that fetched one path and lost the other is an error, and the error holds nothing fetched.
fn assert_all_or_nothing(result: Result<TwoPaths, skm::Error>, backend: &str) -> String {
    let e = match result {
        Ok(v) => panic!("{backend}: a load with a lost path returned a struct: {v:?}"),
        Err(e) => e,
    };
    let load = e
        .as_load()
        .unwrap_or_else(|| panic!("{backend}: not a load error: {e}"));
    let failed: Vec<&str> = load.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(failed, ["lost"], "{backend}: {e}");
    assert_eq!(load.declared, 2);
    let debug = format!("{e:?} {e}");
    assert!(
        !debug.contains(SENTINEL),
        "{backend}: the error carries a fetched value: {debug}"
    );
    e.to_string().lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_partial_load_is_an_error_without_values_memory() {
    use skm::backend::{FailureKind, FetchError, MemoryBackend, SecretValue};
    let backend = MemoryBackend::new();
    backend.insert("fault/app", SecretValue::map([("password", SENTINEL)]));
    backend.insert("fault/other", SecretValue::map([("k", "v")]));
    backend.fail_path("fault/other", FetchError::new(FailureKind::Unavailable, "injected"));
    let r = loader().backend(backend).load::<TwoPaths>().await;
    let first = assert_all_or_nothing(r, "memory");
    println!("partial load, memory: {first}");
}

#[cfg(feature = "aws")]
mod aws {
    use super::*;
    use skm::backend::aws::aws_sdk_secretsmanager::config::retry::RetryConfig;
    use skm::backend::aws::aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
    use skm::backend::aws::{AwsBackend, DEFAULT_MAX_ATTEMPTS};
    use skm::backend::{AdminBackend, PutRequest, SecretValue};
    use skm_testing::Moto;

    fn builder(endpoint: &str) -> skm::backend::aws::AwsBackendBuilder {
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        AwsBackend::builder()
            .region("us-east-1")
            .endpoint_url(endpoint)
            .static_credentials("test", "test")
    }

    /// The default policy (standard mode, `DEFAULT_MAX_ATTEMPTS` attempts, exponential backoff with full
    /// jitter) with shorter delays, and a per-attempt timeout that turns a stall into a retryable timeout.
    fn faulty(endpoint: &str) -> skm::backend::aws::AwsBackendBuilder {
        builder(endpoint)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(DEFAULT_MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(20))
                    .with_max_backoff(Duration::from_millis(200)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(500))
                    .build(),
            )
    }

    async fn seeded() -> (Moto, Proxy) {
        let moto = Moto::start().await;
        let direct = builder(&moto.endpoint()).build().await.unwrap();
        for (path, value) in [
            ("fault/app", SecretValue::map([("user", "app"), ("password", SENTINEL)])),
            ("fault/other", SecretValue::map([("k", "v")])),
        ] {
            direct.put(PutRequest::new(path, value)).await.unwrap();
        }
        let proxy = Proxy::start(&moto.endpoint()).await;
        (moto, proxy)
    }

    /// The policy a backend gets when nothing is configured.
    #[tokio::test]
    async fn the_default_policy_has_five_attempts_aws() {
        let backend = builder("http://127.0.0.1:1").build().await.unwrap();
        let retry = backend
            .client()
            .config()
            .retry_config()
            .cloned()
            .expect("a retry policy");
        assert_eq!(retry.max_attempts(), DEFAULT_MAX_ATTEMPTS);
        assert_eq!(retry, RetryConfig::standard().with_max_attempts(DEFAULT_MAX_ATTEMPTS));
        // What the builder is told wins.
        let told = builder("http://127.0.0.1:1").max_attempts(2).build().await.unwrap();
        assert_eq!(told.client().config().retry_config().unwrap().max_attempts(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thirty_percent_faults_aws() {
        let (_moto, proxy) = seeded().await;
        let backend = faulty(&proxy.url()).build().await.unwrap();
        let loader = loader().backend(backend).deadline(Duration::from_secs(20));
        let run = run(&proxy, &loader).await;
        report(
            "AWS (moto)",
            &proxy,
            &run,
            "standard retry mode with the default 5 attempts, backoff 20-200 ms (instead of 1-20 s), attempt timeout 500 ms",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn total_outage_aws() {
        let (_moto, proxy) = seeded().await;
        let backend = faulty(&proxy.url()).build().await.unwrap();
        let lines = total_outage(
            &proxy,
            &loader().backend(backend),
            "AWS Secrets Manager",
            Duration::from_secs(3),
        )
        .await;
        for l in lines {
            println!("faults, AWS: {l}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partial_load_is_an_error_without_values_aws() {
        let (_moto, proxy) = seeded().await;
        let backend = faulty(&proxy.url()).build().await.unwrap();
        // Both paths come in one BatchGetSecretValue: answer it as AWS does when one secret of the batch
        // fails, with the value of `fault/app` and an error entry for `fault/other`.
        let app = serde_json::json!({ "user": "app", "password": SENTINEL }).to_string();
        proxy.set_rule(move |request| {
            if request.target.as_deref() != Some("secretsmanager.BatchGetSecretValue") {
                return skm_testing::Action::Forward;
            }
            skm_testing::Action::json(
                200,
                &serde_json::json!({
                    "SecretValues": [{
                        "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:fault/app-AbCdEf",
                        "Name": "fault/app",
                        "SecretString": app,
                        "VersionId": "00000000-0000-0000-0000-000000000001",
                        "VersionStages": ["AWSCURRENT"]
                    }],
                    "Errors": [{
                        "SecretId": "fault/other",
                        "ErrorCode": "InternalServiceError",
                        "Message": "injected by the proxy"
                    }]
                }),
            )
        });
        let r = loader().backend(backend).load::<TwoPaths>().await;
        println!("partial load, AWS: {}", assert_all_or_nothing(r, "AWS"));
        assert_eq!(
            proxy.count_of("secretsmanager.BatchGetSecretValue"),
            1,
            "{:?}",
            proxy.counts()
        );
    }
}

#[cfg(feature = "vault")]
mod vault {
    use super::*;
    use serde_json::json;
    use skm::backend::vault::VaultBuilder;
    use skm_testing::{Action, Bao};

    async fn seeded() -> (Bao, Proxy) {
        let bao = Bao::start().await;
        for (path, data) in [
            ("fault/app", json!({ "user": "app", "password": SENTINEL })),
            ("fault/other", json!({ "k": "v" })),
        ] {
            let (status, body) = bao
                .api("POST", &format!("secret/data/{path}"), json!({ "data": data }))
                .await;
            assert_eq!(status, 200, "{body}");
        }
        let proxy = Proxy::start(&bao.addr()).await;
        (bao, proxy)
    }

    /// The default retry policy; a per-request timeout so that a stalled request ends.
    async fn backend(bao: &Bao, proxy: &Proxy) -> skm::backend::vault::VaultBackend {
        VaultBuilder::new(proxy.url())
            .token(bao.root_token())
            .kv_version(skm::backend::vault::KvVersion::V2)
            .timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thirty_percent_faults_vault() {
        let (bao, proxy) = seeded().await;
        let backend = backend(&bao, &proxy).await;
        let loader = loader().backend(backend).deadline(Duration::from_secs(20));
        let run = run(&proxy, &loader).await;
        report(
            "Vault (OpenBao)",
            &proxy,
            &run,
            "the default 4 retries (5 attempts, 100-800 ms backoff with jitter), request timeout 500 ms",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn total_outage_vault() {
        let (bao, proxy) = seeded().await;
        let backend = backend(&bao, &proxy).await;
        let lines = total_outage(&proxy, &loader().backend(backend), "Vault", Duration::from_secs(3)).await;
        for l in lines {
            println!("faults, Vault: {l}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partial_load_is_an_error_without_values_vault() {
        let (bao, proxy) = seeded().await;
        let backend = backend(&bao, &proxy).await;
        proxy.set_rule(|request| {
            if request.path.contains("fault/other") {
                Action::vault_error(503, "Vault is sealed")
            } else {
                Action::Forward
            }
        });
        let r = loader().backend(backend).load::<TwoPaths>().await;
        println!("partial load, Vault: {}", assert_all_or_nothing(r, "Vault"));
        assert!(
            proxy.count_of("GET /v1/secret/data/fault/app") >= 1,
            "{:?}",
            proxy.counts()
        );
    }
}
