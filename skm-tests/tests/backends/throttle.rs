//! Loads against the quota-faithful test bed (skm-testing's proxy with AWS's per-operation token buckets):
//! what a fleet meets at deploy time. Not timed: these tests check outcomes and request counts only.
//!
//! The AWS SDK retries `ThrottlingException` itself (standard mode: up to `max_attempts` attempts, backoff
//! from 1 s doubling to 20 s, with jitter); these tests shorten the backoff to keep them fast and bound the
//! attempts, so what they see past the SDK's retries is skm's own behaviour.
#![cfg(feature = "aws")]

use std::time::Duration;

use skm::backend::aws::aws_sdk_secretsmanager::config::retry::{RetryConfig, RetryPartition};
use skm::backend::aws::{AwsBackend, FetchStrategy};
use skm::backend::{AdminBackend, FailureKind, PutRequest, SecretValue};
use skm::{ExposeSecret, FieldProblem, Loader, SecretString, Secrets, WatchOptions};
use skm_testing::{Moto, OperationCount, Proxy, Quotas, Rate};

/// Secrets in [`Fleet`]: two `BatchGetSecretValue` chunks (20 + 5).
const SECRETS: usize = 25;

use crate::support::no_instance_metadata;

#[derive(Secrets)]
struct Fleet {
    #[secret(path = "fleet/s00")]
    s00: SecretString,
    #[secret(path = "fleet/s01")]
    s01: SecretString,
    #[secret(path = "fleet/s02")]
    s02: SecretString,
    #[secret(path = "fleet/s03")]
    s03: SecretString,
    #[secret(path = "fleet/s04")]
    s04: SecretString,
    #[secret(path = "fleet/s05")]
    s05: SecretString,
    #[secret(path = "fleet/s06")]
    s06: SecretString,
    #[secret(path = "fleet/s07")]
    s07: SecretString,
    #[secret(path = "fleet/s08")]
    s08: SecretString,
    #[secret(path = "fleet/s09")]
    s09: SecretString,
    #[secret(path = "fleet/s10")]
    s10: SecretString,
    #[secret(path = "fleet/s11")]
    s11: SecretString,
    #[secret(path = "fleet/s12")]
    s12: SecretString,
    #[secret(path = "fleet/s13")]
    s13: SecretString,
    #[secret(path = "fleet/s14")]
    s14: SecretString,
    #[secret(path = "fleet/s15")]
    s15: SecretString,
    #[secret(path = "fleet/s16")]
    s16: SecretString,
    #[secret(path = "fleet/s17")]
    s17: SecretString,
    #[secret(path = "fleet/s18")]
    s18: SecretString,
    #[secret(path = "fleet/s19")]
    s19: SecretString,
    #[secret(path = "fleet/s20")]
    s20: SecretString,
    #[secret(path = "fleet/s21")]
    s21: SecretString,
    #[secret(path = "fleet/s22")]
    s22: SecretString,
    #[secret(path = "fleet/s23")]
    s23: SecretString,
    #[secret(path = "fleet/s24")]
    s24: SecretString,
}

fn values(t: &Fleet) -> Vec<String> {
    let all: [&SecretString; SECRETS] = [
        &t.s00, &t.s01, &t.s02, &t.s03, &t.s04, &t.s05, &t.s06, &t.s07, &t.s08, &t.s09, &t.s10, &t.s11, &t.s12, &t.s13,
        &t.s14, &t.s15, &t.s16, &t.s17, &t.s18, &t.s19, &t.s20, &t.s21, &t.s22, &t.s23, &t.s24,
    ];
    all.iter().map(|v| v.expose_secret().to_string()).collect()
}

fn expected() -> Vec<String> {
    (0..SECRETS).map(|i| format!("fleet-value-{i:02}")).collect()
}

/// One instance: its own client, credentials and connection pool, as a separate process would have.
/// A number per backend, for its own retry partition.
fn next_partition() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

async fn instance(endpoint: &str, attempts: u32) -> AwsBackend {
    AwsBackend::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .static_credentials("test", "test")
        .max_attempts(attempts)
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(5)))
        // Its own retry token bucket: the other tests of this binary retry against the same service and
        // region, and the SDK's shared bucket could refuse the retries these tests count.
        .retry_partition(RetryPartition::new(format!("skm-throttle-test-{}", next_partition())))
        // These quotas never refill within a test: a short patience keeps the over-quota loads quick.
        .throttle_patience(Duration::from_millis(300))
        .build()
        .await
        .expect("an AWS backend")
}

fn loader(backend: &AwsBackend) -> Loader {
    Loader::new()
        .backend(backend.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

async fn seeded_moto() -> Moto {
    no_instance_metadata();
    let moto = Moto::start().await;
    let admin = instance(&moto.endpoint(), 1).await;
    for i in 0..SECRETS {
        admin
            .put(PutRequest::new(
                format!("fleet/s{i:02}"),
                SecretValue::text(format!("fleet-value-{i:02}")),
            ))
            .await
            .expect("put");
    }
    moto
}

/// A quota far too small for the fleet: every instance either loads everything or fails with an error that
/// names each field it could not load, all of them throttled; never a struct with some fields missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_over_quota_gets_whole_structs_or_errors_naming_the_throttled_fields() {
    let moto = seeded_moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    // 3 batch calls and 10 single gets for 12 instances that want 24 batch calls; no refill in the test.
    proxy.set_quotas(
        Quotas::aws(1.0)
            .with(
                "BatchGetSecretValue",
                Rate {
                    per_second: 0.001,
                    burst: 3.0,
                },
            )
            .with(
                "GetSecretValue",
                Rate {
                    per_second: 0.001,
                    burst: 10.0,
                },
            ),
    );
    let mut fleet = Vec::new();
    for _ in 0..12 {
        fleet.push(instance(&proxy.url(), 2).await);
    }
    // All start at once, as a deploy starts them.
    let mut loads = tokio::task::JoinSet::new();
    for b in fleet {
        loads.spawn(async move { loader(&b).load::<Fleet>().await });
    }
    let results = loads.join_all().await;

    let (mut loaded, mut failed) = (0, 0);
    for result in results {
        match result {
            Ok(t) => {
                assert_eq!(values(&t), expected(), "a loaded struct is whole");
                loaded += 1;
            }
            Err(e) => {
                let load = e.as_load().unwrap_or_else(|| panic!("a load error, not {e}"));
                assert_eq!(load.declared, SECRETS);
                assert!(!load.fields.is_empty(), "{e}");
                for field in &load.fields {
                    assert_eq!(field.reason, FieldProblem::Backend(FailureKind::Throttled), "{e}");
                    assert!(field.path.as_deref().is_some_and(|p| p.starts_with("fleet/s")), "{e}");
                }
                failed += 1;
            }
        }
    }
    let counts = proxy.quota_counts();
    let batch = counts.get("BatchGetSecretValue").copied().unwrap_or_default();
    println!("over quota: {loaded} loaded, {failed} failed; {counts:?}");
    assert_eq!(loaded + failed, 12);
    assert!(failed > 0, "the quota is too small for every instance: {counts:?}");
    assert!(batch.throttled > 0, "{counts:?}");
    // Throttled calls never reached moto: at most the burst got through.
    assert!(batch.total - batch.throttled <= 3, "{batch:?}");
}

/// Single gets throttled past the SDK's retries: the adaptive strategy waits for the quota to refill (jittered
/// backoff, up to its patience) and loads; with no patience the same load fails, naming the throttled fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_single_gets_wait_for_the_quota_within_the_patience() {
    let moto = seeded_moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    // No batch calls at all; single gets at 10 a second after a burst of 5, for 25 secrets.
    let quotas = Quotas::aws(1.0)
        .with(
            "BatchGetSecretValue",
            Rate {
                per_second: 0.001,
                burst: 0.0,
            },
        )
        .with(
            "GetSecretValue",
            Rate {
                per_second: 10.0,
                burst: 5.0,
            },
        );
    proxy.set_quotas(quotas.clone());
    // One attempt per call: no SDK retry, so what loads is skm's own patience.
    let patient = instance(&proxy.url(), 1)
        .await
        .with_throttle_patience(Duration::from_secs(20));
    let t = loader(&patient).load::<Fleet>().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(values(&t), expected());
    let singles = proxy.quota_counts()["GetSecretValue"];
    println!("patient single gets: {singles:?}");
    assert!(singles.throttled > 0, "the quota throttled some calls: {singles:?}");
    assert_eq!(singles.total - singles.throttled, SECRETS, "each secret read once");

    proxy.clear();
    proxy.set_quotas(quotas);
    let impatient = instance(&proxy.url(), 1).await.with_throttle_patience(Duration::ZERO);
    let Err(e) = loader(&impatient).load::<Fleet>().await else {
        panic!("without patience the throttled single gets fail");
    };
    let load = e.as_load().expect("a load error");
    assert!(!load.fields.is_empty());
    for field in &load.fields {
        assert_eq!(field.reason, FieldProblem::Backend(FailureKind::Throttled), "{e}");
    }
}

/// The default (adaptive) strategy: a throttled batch moves its ids to `GetSecretValue` at once (no SDK
/// retry on the batch call), the load succeeds, and batching pauses for the next load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_batch_falls_back_to_single_gets_and_the_load_succeeds() {
    let moto = seeded_moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    // One batch call, then none: the second chunk is throttled.
    proxy.set_quotas(Quotas::aws(1.0).with(
        "BatchGetSecretValue",
        Rate {
            per_second: 0.001,
            burst: 1.0,
        },
    ));
    let b = instance(&proxy.url(), 5).await;
    assert_eq!(b.strategy(), FetchStrategy::Adaptive);

    let t = loader(&b).load::<Fleet>().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(values(&t), expected());
    let counts = proxy.quota_counts();
    println!("throttled batch: {counts:?}");
    // Two chunks (20 + 5): one answered, one throttled once and not retried; its ids read one by one.
    assert_eq!(counts["BatchGetSecretValue"], OperationCount { total: 2, throttled: 1 });
    let singles = counts["GetSecretValue"];
    assert!(singles.total == 5 || singles.total == 20, "{counts:?}");
    assert_eq!(singles.throttled, 0);
    assert!(b.batch_paused());

    // While paused, the next load goes straight to single gets.
    proxy.clear();
    let t = loader(&b).load::<Fleet>().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(values(&t), expected());
    let counts = proxy.quota_counts();
    assert!(!counts.contains_key("BatchGetSecretValue"), "{counts:?}");
    assert_eq!(counts["GetSecretValue"].total, SECRETS);

    // A fixed batch strategy retries the throttled batch through the SDK instead, and fails when the
    // quota never refills within its attempts.
    proxy.clear();
    let fixed = instance(&proxy.url(), 2).await.with_strategy(FetchStrategy::Batch);
    let Err(e) = loader(&fixed).load::<Fleet>().await else {
        panic!("the batch quota is spent: the load must fail");
    };
    let counts = proxy.quota_counts();
    assert!(!counts.contains_key("GetSecretValue"), "{counts:?}");
    // The bucket was refilled by clear(): one chunk is answered, the other is throttled twice (2 attempts).
    assert_eq!(
        counts["BatchGetSecretValue"],
        OperationCount { total: 3, throttled: 2 },
        "{counts:?}"
    );
    let failed = e.as_load().map_or(0, |l| l.fields.len());
    assert!(
        failed == 5 || failed == 20,
        "the throttled chunk's fields, all of them: {e}"
    );
}

/// Hot reload under the default strategy checks versions with `DescribeSecret` (the 40,000/s quota) and
/// refetches only what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_checks_versions_with_describe_secret_and_refetches_only_changes() {
    let moto = seeded_moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    proxy.set_quotas(Quotas::aws(1.0));
    let b = instance(&proxy.url(), 5).await;
    let watch = loader(&b)
        .watch::<Fleet>(WatchOptions::ttl(Duration::from_millis(150)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    watch.wait_ticks(1).await;
    proxy.clear();
    watch.wait_ticks(2).await;
    let counts = proxy.quota_counts();
    assert_eq!(
        counts["DescribeSecret"].total, SECRETS,
        "one check per secret per tick: {counts:?}"
    );
    assert!(
        !counts.contains_key("BatchGetSecretValue"),
        "no value fetched: {counts:?}"
    );
    assert!(!counts.contains_key("GetSecretValue"), "no value fetched: {counts:?}");

    let admin = instance(&moto.endpoint(), 1).await;
    admin
        .put(PutRequest::new(
            "fleet/s07",
            SecretValue::text("fleet-value-07-rotated"),
        ))
        .await
        .expect("put");
    proxy.clear();
    let ticks = watch.stats().ticks;
    watch.wait_ticks(ticks + 2).await;
    assert_eq!(
        watch.with(|t| t.s07.expose_secret().to_string()),
        "fleet-value-07-rotated"
    );
    let counts = proxy.quota_counts();
    let fetched = counts.get("BatchGetSecretValue").map_or(0, |c| c.total);
    assert_eq!(fetched, 1, "only the changed secret is fetched: {counts:?}");
}
