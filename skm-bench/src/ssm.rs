//! Benchmark 10, Parameter Store load: the same 100-field struct as benchmark 1, read from 100 SSM parameters
//! on moto behind the latency proxy, beside the same struct read from AWS Secrets Manager in the same run.
//!
//! The struct is benchmark 1's `Aws100` (paths `bench/aws/sNNN`): the SSM backend reads them as the parameters
//! `/bench/aws/sNNN` (its leading-slash rule), so one declaration serves both stores.

use std::time::Instant;

use serde_json::{json, Value};
use skm::backend::aws::AwsBackend;
use skm::backend::ssm::SsmBackend;
use skm::backend::{AdminBackend, PutRequest, SecretValue};
use skm_testing::{Action, Moto, Proxy, RecordedRequest};

use crate::report::{LoadTable, Section, Target};
use crate::stats::{fmt_ratio, fmt_secs, Samples};
use crate::structs::Aws100;
use crate::Settings;

/// Parameters, one per field of `Aws100`.
pub const PARAMETERS: usize = 100;
/// `GetParameters` takes at most this many names (AWS's limit, which moto enforces).
const BATCH: usize = 10;

fn path(i: usize) -> String {
    format!("bench/aws/s{i:03}")
}

fn value(i: usize) -> String {
    // Not secret: benchmark data of a fixed length, so that a load can be checked by its total length.
    format!("ssm-bench-value-{i:03}-0123456789abcdef")
}

fn expected_bytes() -> usize {
    (0..PARAMETERS).map(|i| value(i).len()).sum()
}

/// Parameter Store's `GetParameters` on the benchmark's 100 parameters, answered at once: the load's wall
/// time through the proxy without moto's own service time.
fn serve(request: &RecordedRequest) -> Action {
    if request.target.as_deref() != Some("AmazonSSM.GetParameters") {
        return Action::aws_error(400, "InvalidAction", "the stub serves GetParameters only");
    }
    let body = request.json().unwrap_or(Value::Null);
    let (mut found, mut invalid) = (Vec::new(), Vec::new());
    for name in body["Names"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let index = name
            .strip_prefix("/bench/aws/s")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&i| i < PARAMETERS);
        match index {
            Some(i) => found.push(json!({
                "Name": name, "Type": "SecureString", "Value": value(i), "Version": 1, "DataType": "text",
                "LastModifiedDate": 1_764_000_000.0,
                "ARN": format!("arn:aws:ssm:us-east-1:123456789012:parameter{name}"),
            })),
            None => invalid.push(name.to_string()),
        }
    }
    crate::fleet::amz_json(&json!({ "Parameters": found, "InvalidParameters": invalid }))
}

async fn ssm(endpoint: &str) -> SsmBackend {
    SsmBackend::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .static_credentials("test", "test")
        .build()
        .await
        .expect("an SSM backend for moto")
}

async fn secrets_manager(endpoint: &str) -> AwsBackend {
    AwsBackend::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .static_credentials("test", "test")
        .build()
        .await
        .expect("an AWS backend for moto")
}

/// Runs the Parameter Store benchmark.
///
/// # Panics
/// When moto is not installed or an operation fails: the caller reports the section as failed.
pub fn run(settings: &Settings) -> Section {
    crate::block_on(run_async(settings))
}

async fn run_async(settings: &Settings) -> Section {
    let rtt = settings.rtt;
    let (load_runs, naive_runs) = if settings.quick { (3, 1) } else { (11, 5) };

    let moto = Moto::start().await;
    let direct_ssm = ssm(&moto.endpoint()).await;
    let direct_sm = secrets_manager(&moto.endpoint()).await;
    for i in 0..PARAMETERS {
        let value = SecretValue::Text(value(i).into());
        direct_ssm
            .put(PutRequest::new(path(i), value.clone()))
            .await
            .expect("put a benchmark parameter on moto");
        direct_sm
            .put(PutRequest::new(path(i), value))
            .await
            .expect("put a benchmark secret on moto");
    }

    let proxy = Proxy::start(&moto.endpoint()).await;
    proxy.set_latency(rtt);
    let via_ssm = ssm(&proxy.url()).await;
    let via_sm = secrets_manager(&proxy.url()).await;
    let ssm_loader = crate::loader_over(via_ssm.clone());
    let sm_loader = crate::loader_over(via_sm);
    let check = |cfg: Aws100| {
        use skm::ExposeSecret;
        let bytes: usize = cfg.fields().iter().map(|f| f.expose_secret().len()).sum();
        assert_eq!(bytes, expected_bytes(), "skm loaded the wrong values");
    };
    // Warm-up: credentials resolved, connections open, as in a service's second load.
    check(
        ssm_loader
            .load::<Aws100>()
            .await
            .expect("skm load from Parameter Store"),
    );
    check(sm_loader.load::<Aws100>().await.expect("skm load from Secrets Manager"));

    let client = via_ssm.client().clone();
    let get_one = |i: usize| {
        let client = client.clone();
        async move {
            let out = client
                .get_parameter()
                .name(format!("/{}", path(i)))
                .with_decryption(true)
                .send()
                .await
                .expect("GetParameter through the proxy");
            let got = out.parameter().and_then(|p| p.value()).map(str::len);
            assert_eq!(got, Some(value(i).len()));
        }
    };
    get_one(0).await;

    // The best a hand-written client can do against this peer: the ten batches of 10 names sent at once on
    // the same client, no skm in between. skm's time over this one is what skm itself costs.
    let by_hand = || {
        let client = client.clone();
        async move {
            let mut batches = tokio::task::JoinSet::new();
            for first in (0..PARAMETERS).step_by(BATCH) {
                let names: Vec<String> = (first..(first + BATCH).min(PARAMETERS))
                    .map(|i| format!("/{}", path(i)))
                    .collect();
                batches.spawn(
                    client
                        .get_parameters()
                        .set_names(Some(names))
                        .with_decryption(true)
                        .send(),
                );
            }
            let mut bytes = 0;
            while let Some(joined) = batches.join_next().await {
                let out = joined.expect("a batch task").expect("GetParameters through the proxy");
                bytes += out
                    .parameters()
                    .iter()
                    .filter_map(|p| p.value())
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

    // The two stores alternate, run by run, so that the machine's drift hits both alike.
    let (mut ssm_load, mut sm_load, mut hand) = (Samples::new(), Samples::new(), Samples::new());
    let (mut ssm_requests, mut sm_requests, mut ssm_calls, mut max_in_flight) = (0, 0, 0, 0);
    // The deepest chain of requests each sent after the answer to the one before, over all runs.
    let (mut ssm_trips, mut sm_trips, mut hand_trips) = (0, 0, 0);
    for _ in 0..load_runs {
        proxy.clear();
        let t = Instant::now();
        check(
            ssm_loader
                .load::<Aws100>()
                .await
                .expect("skm load from Parameter Store"),
        );
        ssm_load.push_duration(t.elapsed());
        ssm_requests = proxy.count();
        ssm_calls = proxy.count_of("AmazonSSM.GetParameters");
        max_in_flight = max_in_flight.max(proxy.max_in_flight());
        ssm_trips = ssm_trips.max(proxy.round_trips());

        proxy.clear();
        let t = Instant::now();
        check(sm_loader.load::<Aws100>().await.expect("skm load from Secrets Manager"));
        sm_load.push_duration(t.elapsed());
        sm_requests = proxy.count();
        sm_trips = sm_trips.max(proxy.round_trips());

        proxy.clear();
        let t = Instant::now();
        by_hand().await;
        hand.push_duration(t.elapsed());
        hand_trips = hand_trips.max(proxy.round_trips());
    }
    let mut naive = Samples::new();
    let mut naive_requests = 0;
    for _ in 0..naive_runs {
        proxy.clear();
        let t = Instant::now();
        for i in 0..PARAMETERS {
            get_one(i).await;
        }
        naive.push_duration(t.elapsed());
        naive_requests = proxy.count();
    }
    let mut single = Samples::new();
    for _ in 0..load_runs {
        let t = Instant::now();
        get_one(7).await;
        single.push_duration(t.elapsed());
    }

    // The same load through the same proxy to a stub that answers at once.
    let stub = Proxy::stub(serve).await;
    stub.set_latency(rtt);
    let stub_loader = crate::loader_over(ssm(&stub.url()).await);
    check(stub_loader.load::<Aws100>().await.expect("skm load from the SSM stub"));
    let mut on_stub = Samples::new();
    let (mut stub_requests, mut stub_trips) = (0, 0);
    for _ in 0..load_runs {
        stub.clear();
        let t = Instant::now();
        check(stub_loader.load::<Aws100>().await.expect("skm load from the SSM stub"));
        on_stub.push_duration(t.elapsed());
        stub_requests = stub.count();
        stub_trips = stub_trips.max(stub.round_trips());
    }

    let rtt_s = rtt.as_secs_f64();
    let mut table = LoadTable::new("speed-up vs naive loop", naive.median(), rtt);
    table.row(
        "**skm `load()`** from Parameter Store (`ssm`)",
        &ssm_load,
        format!("{ssm_requests} ({ssm_calls} × GetParameters) in {}", trips(ssm_trips)),
    );
    table.row(
        "hand-written: the 10 batches of 10 names sent at once, same SDK client (no skm)",
        &hand,
        format!("{} in {}", PARAMETERS.div_ceil(BATCH), trips(hand_trips)),
    );
    table.row(
        "skm `load()` of the same struct from Secrets Manager (`aws`), alternate runs",
        &sm_load,
        format!("{sm_requests} in {}", trips(sm_trips)),
    );
    table.row(
        "naive loop: `GetParameter` × 100, same SDK client",
        &naive,
        naive_requests.to_string(),
    );
    table.row("one `GetParameter` (the floor: 1 RTT + moto)", &single, "1".to_string());
    table.row(
        "skm `load()` through the proxy to a stub that answers at once (no moto)",
        &on_stub,
        format!("{stub_requests} in {}", trips(stub_trips)),
    );

    let title = "10. AWS Systems Manager Parameter Store load (moto behind the latency proxy)";
    let mut section = Section::new(title, table.into_table());
    section.intro.push(format!(
        "The 100-field struct of benchmark 1, read from {PARAMETERS} `SecureString` parameters \
         (`/bench/aws/s000`...) on a moto server through the skm-testing proxy, which adds {} ms before each \
         request (the RTT); the same struct from Secrets Manager on the same moto, run by run alternately. \
         Every approach is warmed up once, then timed; requests are the proxy's count for one run, and \
         round trips the longest chain of requests each sent after the answer to the one before (the \
         proxy's `round_trips`, the most over all runs): what the RTT multiplies. The SSM backend runs with \
         its defaults (10 names per `GetParameters`, at most 10 requests in flight).",
        rtt.as_millis()
    ));
    section.notes.push(format!(
        "Most requests in flight at once during the Parameter Store load: {max_in_flight}. Parameter Store / \
         Secrets Manager, same struct, same run: {} vs {}, {:.2}× (10 names per request instead of 20, so \
         twice the requests, sent at once).",
        fmt_secs(ssm_load.median()),
        fmt_secs(sm_load.median()),
        ssm_load.median() / sm_load.median()
    ));

    section.notes.push(format!(
        "skm against the hand-written batches, run by run alternately on the same client: {} vs {}, {:.2}×. \
         Ten requests sent at once are the best any client can do here: what the load takes beyond one RTT \
         is moto serving the ten calls one after another (one call alone: {}).",
        fmt_secs(ssm_load.median()),
        fmt_secs(hand.median()),
        ssm_load.median() / hand.median(),
        fmt_secs(single.median())
    ));
    section.notes.push(format!(
        "Through the same proxy to a stub that answers `GetParameters` at once (this benchmark's, the same 100 \
         values) the same load takes {} = {:.2} RTT: the wall time skm's requests cost when the store serves \
         them side by side, as Parameter Store does and moto does not.",
        fmt_secs(on_stub.median()),
        on_stub.median() / rtt_s
    ));
    let over_hand = ssm_load.median() / hand.median();
    section.targets.push(Target::new(
        "SSM load: skm / the same batches sent by hand (same client, alternate runs)",
        "≤ 1.1×",
        format!("{over_hand:.2}×"),
        over_hand <= 1.1,
    ));

    let speedup = naive.median() / ssm_load.median();
    section.targets.push(Target::new(
        "SSM load: speed-up over the sequential loop",
        "≥ 25×",
        fmt_ratio(speedup),
        speedup >= 25.0,
    ));
    section.targets.push(Target::new(
        "SSM load: round trips in sequence (the proxy's count)",
        "≤ 2",
        ssm_trips.to_string(),
        (1..=2).contains(&ssm_trips),
    ));
    let stub_rtt = on_stub.median() / rtt_s;
    section.targets.push(Target::new(
        "SSM load through the proxy to a stub that answers at once: wall time in RTTs",
        "≤ 2 RTT",
        format!("{stub_rtt:.2} RTT ({})", fmt_secs(on_stub.median())),
        stub_rtt <= 2.0,
    ));
    // The wall time counts moto's serial service time too (see the notes), which no client can overlap.
    let per_rtt = ssm_load.median() / rtt_s;
    section.targets.push(Target::new(
        "SSM load from moto: wall time in RTTs",
        "≤ 2 RTT",
        format!("{per_rtt:.2} RTT ({})", fmt_secs(ssm_load.median())),
        per_rtt <= 2.0,
    ));
    let expected = PARAMETERS.div_ceil(BATCH);
    section.targets.push(Target::new(
        format!("SSM load: requests for {PARAMETERS} parameters"),
        format!("= ceil({PARAMETERS}/{BATCH}) = {expected}"),
        ssm_requests.to_string(),
        ssm_requests == expected,
    ));
    section
}

/// `1 round trip`, `2 round trips`.
fn trips(n: usize) -> String {
    format!("{n} round trip{}", if n == 1 { "" } else { "s" })
}
