//! Benchmark 1, AWS load: 100 secrets under 100 names on moto, behind the latency proxy.
//!
//! skm's `load()` of a derived 100-field struct, against a naive sequential `GetSecretValue` loop with the same
//! SDK client, and against the seeds' approach: a Python boto3 loop.

use std::time::Instant;

use skm::backend::aws::AwsBackend;
use skm_testing::{Moto, Proxy};

use crate::report::{LoadTable, Section, Target};
use crate::stats::{fmt_ratio, fmt_secs, Samples};
use crate::structs::Aws100;
use crate::Settings;

/// Secrets, one per name (the `Aws100` struct has one field per secret).
pub const SECRETS: usize = 100;
/// The names are this prefix and three digits.
const PREFIX: &str = "bench/aws/s";
/// `BatchGetSecretValue` takes at most this many ids.
const BATCH: usize = 20;

fn name(i: usize) -> String {
    format!("{PREFIX}{i:03}")
}

fn value(i: usize) -> String {
    // Not secret: benchmark data of a fixed length, so that a load can be checked by its total length.
    format!("aws-bench-value-{i:03}-0123456789abcdef")
}

fn expected_bytes() -> usize {
    (0..SECRETS).map(|i| value(i).len()).sum()
}

async fn backend(endpoint: &str) -> AwsBackend {
    AwsBackend::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .static_credentials("test", "test")
        .build()
        .await
        .expect("an AWS backend for moto")
}

/// Times `f` `runs` times, clearing the proxy's counters before each run; returns the times and the request
/// count of the last run.
async fn measure<F, Fut>(proxy: Option<&Proxy>, runs: usize, mut f: F) -> (Samples, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Samples::new();
    let mut requests = 0;
    for _ in 0..runs {
        if let Some(p) = proxy {
            p.clear();
        }
        let t = Instant::now();
        f().await;
        samples.push_duration(t.elapsed());
        requests = proxy.map_or(0, Proxy::count);
    }
    (samples, requests)
}

/// What one run of the Python script reported, and how long its process took.
struct PythonRun {
    loop_seconds: f64,
    process_seconds: f64,
}

async fn python_run(endpoint: &str) -> Result<PythonRun, String> {
    let python = skm_testing::venv_bin("python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/boto3_loop.py");
    let t = Instant::now();
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .arg(endpoint)
        .arg(PREFIX)
        .arg(SECRETS.to_string())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let process_seconds = t.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(format!(
            "the boto3 loop failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "the boto3 loop printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    let bytes = report["bytes"].as_u64().unwrap_or(0) as usize;
    if bytes != expected_bytes() {
        return Err(format!(
            "the boto3 loop read {bytes} bytes, expected {}",
            expected_bytes()
        ));
    }
    Ok(PythonRun {
        loop_seconds: report["loop_seconds"]
            .as_f64()
            .ok_or("no loop_seconds from the boto3 loop")?,
        process_seconds,
    })
}

/// Runs the AWS benchmark.
///
/// # Panics
/// When moto is not installed or an operation fails: the caller reports the section as failed.
pub fn run(settings: &Settings) -> Section {
    crate::block_on(run_async(settings))
}

async fn run_async(settings: &Settings) -> Section {
    let rtt = settings.rtt;
    let (load_runs, naive_runs, python_runs) = if settings.quick { (3, 1, 1) } else { (11, 5, 3) };

    let moto = Moto::start().await;
    let direct = backend(&moto.endpoint()).await;
    for i in 0..SECRETS {
        direct
            .client()
            .create_secret()
            .name(name(i))
            .secret_string(value(i))
            .send()
            .await
            .expect("create a benchmark secret on moto");
    }

    let proxy = Proxy::start(&moto.endpoint()).await;
    proxy.set_latency(rtt);
    let via_proxy = backend(&proxy.url()).await;
    let loader = |b: &AwsBackend| crate::loader_over(b.clone());
    let proxied_loader = loader(&via_proxy);
    let direct_loader = loader(&direct);
    let check = |cfg: Aws100| {
        use skm::ExposeSecret;
        let bytes: usize = cfg.fields().iter().map(|f| f.expose_secret().len()).sum();
        assert_eq!(bytes, expected_bytes(), "skm loaded the wrong values");
    };

    // Warm-up: credentials resolved, connections open, as in a service's second load; every approach gets one.
    check(
        proxied_loader
            .load::<Aws100>()
            .await
            .expect("skm load through the proxy"),
    );
    check(direct_loader.load::<Aws100>().await.expect("skm load from moto"));
    let client = via_proxy.client().clone();
    let get_one = |i: usize| {
        let client = client.clone();
        async move {
            let out = client
                .get_secret_value()
                .secret_id(name(i))
                .send()
                .await
                .expect("GetSecretValue through the proxy");
            assert_eq!(out.secret_string(), Some(value(i).as_str()));
        }
    };
    get_one(0).await;

    // What a hand-written client that knows the API's limits does at best: the five batches of 20 ids sent
    // at once on the same client, no skm in between. Against this peer nothing can be faster, so skm's
    // wall time over this one is what skm itself costs.
    let by_hand = || {
        let client = client.clone();
        async move {
            let mut batches = tokio::task::JoinSet::new();
            for first in (0..SECRETS).step_by(BATCH) {
                let ids: Vec<String> = (first..(first + BATCH).min(SECRETS)).map(name).collect();
                let call = client.batch_get_secret_value().set_secret_id_list(Some(ids)).send();
                batches.spawn(call);
            }
            let mut bytes = 0;
            while let Some(joined) = batches.join_next().await {
                let out = joined
                    .expect("a batch task")
                    .expect("BatchGetSecretValue through the proxy");
                bytes += out
                    .secret_values()
                    .iter()
                    .filter_map(|v| v.secret_string())
                    .map(str::len)
                    .sum::<usize>();
            }
            assert_eq!(
                bytes,
                expected_bytes(),
                "the hand-written batches read the wrong values"
            );
        }
    };
    by_hand().await;

    // skm and the hand-written batches alternate, run by run, so that the machine's drift hits both alike.
    let mut skm_load = Samples::new();
    let mut hand = Samples::new();
    let (mut skm_requests, mut hand_requests) = (0, 0);
    let (mut batch_calls, mut max_in_flight) = (0, 0);
    for _ in 0..load_runs {
        let (s, r) = measure(Some(&proxy), 1, || async {
            check(
                proxied_loader
                    .load::<Aws100>()
                    .await
                    .expect("skm load through the proxy"),
            );
        })
        .await;
        skm_load.extend(&s);
        skm_requests = r;
        batch_calls = proxy.count_of("secretsmanager.BatchGetSecretValue");
        max_in_flight = max_in_flight.max(proxy.max_in_flight());
        let (h, r) = measure(Some(&proxy), 1, by_hand).await;
        hand.extend(&h);
        hand_requests = r;
    }
    let (naive, naive_requests) = measure(Some(&proxy), naive_runs, || async {
        for i in 0..SECRETS {
            get_one(i).await;
        }
    })
    .await;
    let (single, single_requests) = measure(Some(&proxy), load_runs, || get_one(7)).await;
    let (skm_direct, _) = measure(None, load_runs, || async {
        check(direct_loader.load::<Aws100>().await.expect("skm load from moto"));
    })
    .await;

    // The same load through the same proxy to a peer that answers at once (the fleet benchmark's table of
    // 100 secrets, without quotas): the wall time without moto's own service time.
    let stub = Proxy::stub(crate::fleet::serve).await;
    stub.set_latency(rtt);
    let stub_loader = loader(&backend(&stub.url()).await);
    let stub_check = |cfg: Aws100| assert!(crate::fleet::check(&cfg), "skm loaded the wrong values from the stub");
    stub_check(stub_loader.load::<Aws100>().await.expect("skm load from the stub"));
    let (skm_stub, stub_requests) = measure(Some(&stub), load_runs, || async {
        stub_check(stub_loader.load::<Aws100>().await.expect("skm load from the stub"));
    })
    .await;

    let mut py_loop = Samples::new();
    let mut py_process = Samples::new();
    let mut py_requests = 0;
    let mut py_error = None;
    for _ in 0..python_runs {
        proxy.clear();
        match python_run(&proxy.url()).await {
            Ok(r) => {
                py_loop.push(r.loop_seconds);
                py_process.push(r.process_seconds);
                py_requests = proxy.count();
            }
            Err(e) => {
                py_error = Some(e);
                break;
            }
        }
    }

    let naive_median = naive.median();
    let rtt_s = rtt.as_secs_f64();
    let mut table = LoadTable::new("speed-up vs naive loop", naive_median, rtt);
    let mut row = |what: &str, s: &Samples, requests: String| table.row(what, s, requests);
    row(
        "**skm `load()`** of the 100-field struct",
        &skm_load,
        format!("{skm_requests} ({batch_calls} × BatchGetSecretValue)"),
    );
    row(
        "hand-written: the 5 batches of 20 ids sent at once, same SDK client (no skm)",
        &hand,
        format!("{hand_requests}"),
    );
    row(
        "naive loop: `GetSecretValue` × 100, same SDK client",
        &naive,
        naive_requests.to_string(),
    );
    if !py_loop.is_empty() {
        row(
            "seeds' approach: Python boto3 loop (loop only)",
            &py_loop,
            py_requests.to_string(),
        );
        row(
            "seeds' approach: Python boto3 loop (whole process)",
            &py_process,
            py_requests.to_string(),
        );
    }
    row(
        "one `GetSecretValue` (the floor: 1 RTT + moto)",
        &single,
        single_requests.to_string(),
    );
    row(
        "skm `load()` straight to moto, no proxy (moto + client time)",
        &skm_direct,
        "— (no proxy)".into(),
    );
    row(
        "skm `load()` through the proxy to a stub that answers at once (no moto)",
        &skm_stub,
        stub_requests.to_string(),
    );

    let mut section = Section::new("1. AWS load (moto behind the latency proxy)", table.into_table());
    section.intro.push(format!(
        "{SECRETS} secrets under {SECRETS} names on a moto server, reached through the skm-testing proxy, which \
         adds {} ms before forwarding each request (the injected round-trip time, RTT). Every approach is \
         warmed up once (credentials resolved, connections open), then timed; requests are the proxy's count \
         for one run. skm's AWS backend runs with its defaults (20 ids per `BatchGetSecretValue`, at most 8 \
         requests in flight).",
        rtt.as_millis()
    ));
    if let Some(e) = &py_error {
        section.notes.push(format!("The Python boto3 loop could not run: {e}"));
    }
    section.notes.push(format!(
        "Most requests in flight at once during skm's load: {max_in_flight}. The floor (one request) is {} = \
         {:.2} RTT: what moto and the client add to the injected {} ms.",
        fmt_secs(single.median()),
        single.median() / rtt_s,
        rtt.as_millis()
    ));
    section.notes.push(format!(
        "Against moto the load's wall time is the RTT plus moto's own time to serve the batches, which the \
         no-proxy row measures ({}); through the same proxy to a stub that answers at once (skm-testing's, \
         the fleet benchmark's table of {SECRETS} secrets) the same load takes {} = {:.2} RTT.",
        fmt_secs(skm_direct.median()),
        fmt_secs(skm_stub.median()),
        skm_stub.median() / rtt_s
    ));

    section.notes.push(format!(
        "skm against the hand-written batches, run by run alternately on the same client: {} vs {}, {:.2}×. \
         Sending the same five requests at once is the best any client can do against this peer: whatever \
         the load takes beyond the RTT and that row's remainder is moto serving five requests, which it does \
         one after another.",
        fmt_secs(skm_load.median()),
        fmt_secs(hand.median()),
        skm_load.median() / hand.median()
    ));

    let over_hand = skm_load.median() / hand.median();
    section.targets.push(Target::new(
        "AWS load: skm / the same batches sent by hand (same client, alternate runs)",
        "≤ 1.1×",
        format!("{over_hand:.2}×"),
        over_hand <= 1.1,
    ));
    let speedup = naive_median / skm_load.median();
    let expected_requests = SECRETS.div_ceil(BATCH);
    section.targets.push(Target::new(
        "AWS load: speed-up over the sequential loop",
        "≥ 25×",
        fmt_ratio(speedup),
        speedup >= 25.0,
    ));
    let per_rtt = skm_load.median() / rtt_s;
    section.targets.push(Target::new(
        "AWS load: wall time in RTTs",
        "≤ 2 RTT",
        format!("{per_rtt:.2} RTT ({})", fmt_secs(skm_load.median())),
        per_rtt <= 2.0,
    ));
    section.targets.push(Target::new(
        format!("AWS load: requests for {SECRETS} names"),
        format!("= ceil({SECRETS}/{BATCH}) = {expected_requests}"),
        skm_requests.to_string(),
        skm_requests == expected_requests,
    ));
    section
}
