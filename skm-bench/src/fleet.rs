//! Benchmark 6, fleet start under AWS's quotas: N instances load the same 100 secrets at once.
//!
//! Each instance has its own SDK client, credentials and retry token bucket (its own `RetryPartition`; the
//! SDK otherwise shares one bucket per process), as separate processes would. They load against the
//! quota-faithful test bed: skm-testing's proxy with AWS's per-operation token buckets, scaled by
//! [`QUOTA_FACTOR`] for this machine. The bed answers Secrets Manager's read operations itself (from a table
//! of 100 secrets) because moto serves about 200 requests a second on this machine, far below the rates the
//! quotas allow; the quota check and the throttling answer are the same as in front of moto.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skm::backend::aws::aws_sdk_secretsmanager::config::retry::{RetryConfig, RetryPartition};
use skm::backend::aws::aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use skm::backend::aws::aws_sdk_secretsmanager::{Client, Config};
use skm::backend::aws::{AwsBackend, FetchStrategy};
use skm::Loader;
use skm_testing::{Action, OperationCount, Proxy, Quotas, RecordedRequest};

use crate::report::{Section, Table, Target};
use crate::stats::{fmt_ratio, fmt_secs};
use crate::structs::Aws100;
use crate::Settings;

/// AWS's per-region rates times this: what the test bed enforces (BatchGetSecretValue 10/s,
/// GetSecretValue 1,000/s, DescribeSecret 4,000/s). A bench fleet of N instances meets the quotas as a
/// real fleet of N / `QUOTA_FACTOR` instances meets AWS's.
pub const QUOTA_FACTOR: f64 = 0.1;
/// Secrets per instance (the `Aws100` struct).
const SECRETS: usize = 100;
/// The names are this prefix and three digits (as in the `aws` benchmark, whose struct this reuses).
const PREFIX: &str = "bench/aws/s";
/// Hot reload period for the steady-state figures.
const RELOAD_EVERY: Duration = Duration::from_secs(60);

fn index_of(id: &str) -> Option<usize> {
    id.strip_prefix(PREFIX)?.parse().ok().filter(|i| *i < SECRETS)
}

fn value(i: usize) -> String {
    format!("fleet-bench-value-{i:03}")
}

fn version(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn entry(i: usize) -> Value {
    json!({
        "ARN": format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{PREFIX}{i:03}-AbCdEf"),
        "Name": format!("{PREFIX}{i:03}"),
        "SecretString": value(i),
        "VersionId": version(i),
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": 1_700_000_000.0
    })
}

/// A 200 answer in AWS's JSON protocol.
pub(crate) fn amz_json(body: &Value) -> Action {
    Action::Respond {
        status: 200,
        headers: vec![("content-type".into(), "application/x-amz-json-1.1".into())],
        body: skm_testing::Bytes::from(body.to_string()),
    }
}

/// Secrets Manager's read operations on a fixed table of 100 secrets, in AWS's JSON protocol.
pub(crate) fn serve(request: &RecordedRequest) -> Action {
    let body = request.json().unwrap_or(Value::Null);
    let missing = || {
        Action::aws_error(
            400,
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret.",
        )
    };
    match request.target.as_deref() {
        Some("secretsmanager.GetSecretValue") => match body["SecretId"].as_str().and_then(index_of) {
            Some(i) => amz_json(&entry(i)),
            None => missing(),
        },
        Some("secretsmanager.BatchGetSecretValue") => {
            let ids = body["SecretIdList"].as_array().cloned().unwrap_or_default();
            let mut values = Vec::new();
            let mut errors = Vec::new();
            for id in ids.iter().filter_map(Value::as_str) {
                match index_of(id) {
                    Some(i) => values.push(entry(i)),
                    None => errors.push(json!({"SecretId": id, "ErrorCode": "ResourceNotFoundException",
                                               "Message": "Secrets Manager can't find the specified secret."})),
                }
            }
            amz_json(&json!({ "SecretValues": values, "Errors": errors }))
        }
        Some("secretsmanager.DescribeSecret") => match body["SecretId"].as_str().and_then(index_of) {
            Some(i) => {
                let mut e = entry(i);
                e["VersionIdsToStages"] = json!({ version(i): ["AWSCURRENT"] });
                amz_json(&e)
            }
            None => missing(),
        },
        _ => Action::aws_error(400, "InvalidAction", "the fleet test bed serves only reads"),
    }
}

/// One instance: its own client (connection pool, credentials cache) and retry token bucket.
fn instance(endpoint: &str, n: usize, strategy: FetchStrategy) -> AwsBackend {
    let config = Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .retry_config(RetryConfig::standard().with_max_attempts(skm::backend::aws::DEFAULT_MAX_ATTEMPTS))
        .retry_partition(RetryPartition::new(format!("fleet-instance-{n}")))
        .build();
    AwsBackend::from_client(Client::from_conf(config)).with_strategy(strategy)
}

fn loader(backend: &AwsBackend) -> Loader {
    crate::loader_over(backend.clone())
}

/// Whether `cfg` holds the bed's values.
pub(crate) fn check(cfg: &Aws100) -> bool {
    crate::holds(cfg, value)
}

/// What one fleet start did.
struct Start {
    wall: Duration,
    failed: usize,
    counts: std::collections::BTreeMap<String, OperationCount>,
}

async fn start(proxy: &Proxy, n: usize, strategy: FetchStrategy) -> Start {
    let fleet: Vec<AwsBackend> = (0..n).map(|i| instance(&proxy.url(), i, strategy)).collect();
    proxy.clear();
    let t = Instant::now();
    let mut loads = tokio::task::JoinSet::new();
    for b in fleet {
        loads.spawn(async move { loader(&b).load::<Aws100>().await.map(|cfg| check(&cfg)) });
    }
    let results = loads.join_all().await;
    let wall = t.elapsed();
    let failed = results.iter().filter(|r| !matches!(r, Ok(true))).count();
    Start {
        wall,
        failed,
        counts: proxy.quota_counts(),
    }
}

/// Quota units one hot-reload tick costs, per operation: a `watch` with a short TTL, counted over a few ticks.
async fn reload_tick(proxy: &Proxy, strategy: FetchStrategy) -> Vec<(String, f64)> {
    let b = instance(&proxy.url(), usize::MAX, strategy);
    let ttl = Duration::from_millis(200);
    let watch = loader(&b)
        .watch::<Aws100>(skm::WatchOptions::ttl(ttl))
        .await
        .expect("a watch over the fleet bed");
    // Skip the first tick, then count exactly `ticks` ticks.
    watch.wait_ticks(1).await;
    proxy.clear();
    let ticks: u32 = 4;
    watch.wait_ticks(1 + u64::from(ticks)).await;
    let counts = proxy.quota_counts();
    drop(watch);
    counts
        .into_iter()
        .map(|(op, c)| (op, c.total as f64 / f64::from(ticks)))
        .collect()
}

fn aws_rate(operation: &str) -> f64 {
    Quotas::aws(1.0).rate(operation).map_or(f64::INFINITY, |r| r.per_second)
}

/// Runs the fleet benchmark.
///
/// # Panics
/// When the test bed cannot start.
pub fn run(settings: &Settings) -> Section {
    crate::block_on(run_async(settings))
}

const STRATEGIES: [(&str, FetchStrategy); 3] = [
    ("always batch", FetchStrategy::Batch),
    ("always single gets", FetchStrategy::Single),
    ("**skm default** (adaptive)", FetchStrategy::Adaptive),
];

async fn run_async(settings: &Settings) -> Section {
    let sizes: &[usize] = if settings.quick { &[1, 10] } else { &[1, 10, 100] };
    let proxy = Proxy::stub(serve).await;
    proxy.set_latency(settings.rtt);

    let mut table = Table::new(&[
        "instances (≈ real fleet)",
        "strategy",
        "time until all loaded",
        "vs best fixed",
        "failed loads",
        "BatchGetSecretValue (throttled)",
        "GetSecretValue (throttled)",
    ]);
    let mut targets = Vec::new();
    for &n in sizes {
        let mut runs = Vec::new();
        for (label, strategy) in STRATEGIES {
            // A fresh quota for every start: buckets full, as after a quiet period.
            proxy.set_quotas(Quotas::aws(QUOTA_FACTOR));
            eprintln!("    fleet of {n}, {label}");
            runs.push((label, strategy, start(&proxy, n, strategy).await));
        }
        let best_fixed = runs
            .iter()
            .filter(|(_, s, r)| *s != FetchStrategy::Adaptive && r.failed == 0)
            .map(|(_, _, r)| r.wall.as_secs_f64())
            .fold(f64::INFINITY, f64::min);
        for (label, strategy, r) in &runs {
            let op = |name: &str| {
                let c = r.counts.get(name).copied().unwrap_or_default();
                format!("{} ({})", c.total, c.throttled)
            };
            let ratio = r.wall.as_secs_f64() / best_fixed;
            table.row(vec![
                format!("{n} (≈ {:.0})", n as f64 / QUOTA_FACTOR),
                label.to_string(),
                fmt_secs(r.wall.as_secs_f64()),
                if best_fixed.is_finite() {
                    fmt_ratio(ratio)
                } else {
                    "—".into()
                },
                r.failed.to_string(),
                op("BatchGetSecretValue"),
                op("GetSecretValue"),
            ]);
            if *strategy == FetchStrategy::Adaptive {
                targets.push(Target::new(
                    format!("fleet of {n}: skm default / best fixed strategy, failed loads"),
                    "≤ 1.2×, 0 failed",
                    // With every fixed strategy failing loads there is no time to compare with: say so rather
                    // than print the ratio to an infinite one.
                    if best_fixed.is_finite() {
                        format!("{}, {} failed", fmt_ratio(ratio), r.failed)
                    } else {
                        format!(
                            "no fixed strategy loaded every instance; skm {}, {} failed",
                            fmt_secs(r.wall.as_secs_f64()),
                            r.failed
                        )
                    },
                    ratio <= 1.2 && r.failed == 0,
                ));
            }
        }
    }

    // Steady state: quota share of hot reload, per instance-hour.
    proxy.set_quotas(Quotas::aws(1000.0));
    let mut steady = Vec::new();
    for (label, strategy) in STRATEGIES {
        let per_tick = reload_tick(&proxy, strategy).await;
        let ticks_per_hour = 3600.0 / RELOAD_EVERY.as_secs_f64();
        let calls: Vec<String> = per_tick
            .iter()
            .map(|(op, n)| format!("{:.0} {op}", n * ticks_per_hour))
            .collect();
        // The share of a quota one instance uses: its calls per second over the quota's rate, summed.
        let share: f64 = per_tick
            .iter()
            .map(|(op, n)| n / RELOAD_EVERY.as_secs_f64() / aws_rate(op))
            .sum();
        steady.push((label, calls.join(" + "), share));
    }
    let least = steady.iter().map(|s| s.2).fold(f64::INFINITY, f64::min);

    let mut section = Section::new("6. Fleet start under AWS's quotas", table);
    section.intro.push(format!(
        "N instances, each with its own SDK client and retry token bucket, load the 100-secret struct at the \
         same moment against the quota test bed: AWS's per-region rates × {QUOTA_FACTOR} (BatchGetSecretValue \
         {:.0}/s, GetSecretValue {:.0}/s, DescribeSecret {:.0}/s, each with one second of burst), so N bench \
         instances meet the quotas as ≈ N / {QUOTA_FACTOR} real ones do. Over quota the bed answers 400 \
         `ThrottlingException` as AWS does; the SDK's standard retry (5 attempts, backoff from 1 s with jitter) \
         applies to every strategy. Each request also waits the {} ms RTT. Counts are requests (of which \
         throttled).",
        100.0 * QUOTA_FACTOR,
        10_000.0 * QUOTA_FACTOR,
        40_000.0 * QUOTA_FACTOR,
        settings.rtt.as_millis()
    ));
    let mut notes = String::from(
        "Steady state, hot reload of 100 secrets every 60 s, per instance: calls per hour and the share of the \
         region's quotas one instance uses (calls per second / quota per second, summed over operations): ",
    );
    for (label, calls, share) in &steady {
        notes.push_str(&format!("{label}: {calls} = {:.5} % of the quotas; ", share * 100.0));
    }
    section.notes.push(notes);
    if let Some((_, _, share)) = steady.iter().find(|s| s.0.contains("default")) {
        targets.push(Target::new(
            "hot reload: skm default's quota share per instance is the least",
            "fewest among the strategies",
            format!("{:.5} % (least {:.5} %)", share * 100.0, least * 100.0),
            *share <= least,
        ));
    }
    section.targets = targets;
    section
}
