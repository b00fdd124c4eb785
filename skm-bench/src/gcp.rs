//! Benchmark 7, Google Cloud Secret Manager load: 100 secrets on drongo, behind the latency proxy.
//!
//! skm's `load()` of the same derived 100-field struct as the AWS benchmark (paths `bench/aws/sNNN`, which the
//! GCP backend maps to the secret ids `bench-aws-sNNN`), against a sequential `AccessSecretVersion` loop with
//! the same Google client. Secret Manager has no batch read: one request per secret.
//!
//! drongo runs as skm-testing starts it for the tests, with Nagle's algorithm off (see `skm_testing::Drongo`:
//! stock, it stalls every kept-alive answer about 40 ms, which Google's servers do not). A stub behind the same
//! proxy, answering at once, separates skm's own time from drongo's.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

use skm::backend::gcp::GcpBackend;
use skm::backend::{AdminBackend, PutRequest, SecretValue};
use skm::{ExposeSecret, Loader};
use skm_testing::{Action, Drongo, Proxy, RecordedRequest};

use crate::report::{LoadTable, Section, Target};
use crate::stats::{fmt_ratio, fmt_secs, Samples};
use crate::structs::Aws100;
use crate::Settings;

/// Secrets, one per field of `Aws100`.
pub const SECRETS: usize = 100;
/// A concurrency below the secrets' count, to show what waves cost: ceil(100 / 32) = 4.
const NARROW: usize = 32;
/// Any project id works on drongo.
pub(crate) const PROJECT: &str = "skm-bench";

fn path(i: usize) -> String {
    format!("bench/aws/s{i:03}")
}

pub(crate) fn value(i: usize) -> String {
    // Not secret: benchmark data of a fixed length, so that a load can be checked by its total length.
    format!("gcp-bench-value-{i:03}-0123456789abcdef")
}

fn expected_bytes() -> usize {
    (0..SECRETS).map(|i| value(i).len()).sum()
}

async fn backend(endpoint: &str, concurrency: Option<usize>) -> GcpBackend {
    let mut builder = GcpBackend::builder().project(PROJECT).endpoint(endpoint);
    if let Some(n) = concurrency {
        builder = builder.max_in_flight(n);
    }
    builder.build().await.expect("a GCP backend for drongo")
}

fn loader(b: &GcpBackend) -> Loader {
    crate::loader_over(b.clone())
}

fn check(cfg: Aws100) {
    let bytes: usize = cfg.fields().iter().map(|f| f.expose_secret().len()).sum();
    assert_eq!(bytes, expected_bytes(), "skm loaded the wrong values");
}

/// `AccessSecretVersion` of `latest` for secret `i`, with the backend's Google client; returns the value's
/// length.
async fn access(b: &GcpBackend, i: usize) -> usize {
    let name = b.secret_name(&path(i)).expect("a valid secret name");
    let answer = b
        .client()
        .access_secret_version()
        .set_name(name.version("latest"))
        .send()
        .await
        .expect("AccessSecretVersion through the proxy");
    let data = answer.payload.expect("a payload").data;
    assert_eq!(data.as_ref(), value(i).as_bytes(), "the access read the wrong value");
    data.len()
}

/// Secret Manager's `AccessSecretVersion` for the benchmark's secrets, answered at once: the stub behind the
/// proxy that leaves only the RTT and skm's own time.
pub(crate) fn serve(request: &RecordedRequest) -> Action {
    // The Google client adds a query (`?$alt=json;enum-encoding=int`).
    let path = request.path.split('?').next().unwrap_or_default();
    let secret = path
        .strip_prefix(&format!("/v1/projects/{PROJECT}/secrets/bench-aws-s"))
        .and_then(|rest| rest.strip_suffix("/versions/latest:access"))
        .and_then(|digits| digits.parse::<usize>().ok())
        .filter(|i| *i < SECRETS);
    match (request.method.as_str(), secret) {
        ("GET", Some(i)) => Action::json(
            200,
            &json!({
                "name": format!("projects/{PROJECT}/secrets/bench-aws-s{i:03}/versions/1"),
                "payload": { "data": base64::engine::general_purpose::STANDARD.encode(value(i)) },
            }),
        ),
        _ => Action::json(
            404,
            &json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "the stub serves only the benchmark's secrets"}}),
        ),
    }
}

/// The figures for one drongo.
struct Figures {
    /// skm `load()` with the defaults, with `max_in_flight(NARROW)`, and straight to drongo (defaults): the
    /// times, and (requests, most in flight) as the proxy counted them (`None` without the proxy).
    loads: Vec<(Samples, Option<(usize, usize)>)>,
    sequential: Samples,
    seq_requests: usize,
    single: Samples,
    single_requests: usize,
}

/// Seeds the secrets on the drongo at `endpoint`, puts the proxy in front of it, and times every approach.
async fn measure(endpoint: &str, rtt: Duration, runs: usize, seq_runs: usize) -> Figures {
    let direct = backend(endpoint, None).await;
    for i in 0..SECRETS {
        direct
            .put(PutRequest::new(path(i), SecretValue::text(value(i))))
            .await
            .expect("create a benchmark secret on drongo");
    }
    let proxy = Proxy::start(endpoint).await;
    proxy.set_latency(rtt);
    // Built before timing; every approach is warmed up once (connections open).
    let default = backend(&proxy.url(), None).await;
    let narrow = backend(&proxy.url(), Some(NARROW)).await;

    let mut loads = Vec::new();
    for (b, through_proxy) in [(&default, true), (&narrow, true), (&direct, false)] {
        let l = loader(b);
        check(l.load::<Aws100>().await.expect("skm load (warm-up)"));
        let mut samples = Samples::new();
        let mut counts = None;
        for _ in 0..runs {
            proxy.clear();
            let t = Instant::now();
            check(l.load::<Aws100>().await.expect("skm load"));
            samples.push_duration(t.elapsed());
            if through_proxy {
                counts = Some((proxy.count(), proxy.max_in_flight()));
            }
        }
        loads.push((samples, counts));
    }

    // The sequential loop: the default backend's Google client, one `AccessSecretVersion` at a time.
    access(&default, 0).await;
    let mut sequential = Samples::new();
    let mut seq_requests = 0;
    for _ in 0..seq_runs {
        proxy.clear();
        let t = Instant::now();
        let mut bytes = 0;
        for i in 0..SECRETS {
            bytes += access(&default, i).await;
        }
        sequential.push_duration(t.elapsed());
        assert_eq!(bytes, expected_bytes(), "the sequential loop read the wrong values");
        seq_requests = proxy.count();
    }
    let mut single = Samples::new();
    let mut single_requests = 0;
    for _ in 0..runs {
        proxy.clear();
        let t = Instant::now();
        access(&default, 7).await;
        single.push_duration(t.elapsed());
        single_requests = proxy.count();
    }
    Figures {
        loads,
        sequential,
        seq_requests,
        single,
        single_requests,
    }
}

/// `1 wave`, `4 waves`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Runs the GCP benchmark.
///
/// # Panics
/// When drongo is not installed or an operation fails: the caller reports the section as failed.
pub fn run(settings: &Settings) -> Section {
    crate::block_on(run_async(settings))
}

async fn run_async(settings: &Settings) -> Section {
    let rtt = settings.rtt;
    let rtt_s = rtt.as_secs_f64();
    let (runs, seq_runs) = if settings.quick { (3, 1) } else { (11, 3) };

    let drongo = Drongo::start().await;
    let f = measure(&drongo.endpoint(), rtt, runs, seq_runs).await;

    // The default load through the same proxy to a stub that answers at once: the RTT and skm's own time.
    let stub = Proxy::stub(serve).await;
    stub.set_latency(rtt);
    let on_stub = loader(&backend(&stub.url(), None).await);
    check(
        on_stub
            .load::<Aws100>()
            .await
            .expect("skm load from the stub (warm-up)"),
    );
    let mut stubbed = Samples::new();
    let mut stub_requests = 0;
    for _ in 0..runs {
        stub.clear();
        let t = Instant::now();
        check(on_stub.load::<Aws100>().await.expect("skm load from the stub"));
        stubbed.push_duration(t.elapsed());
        stub_requests = stub.count();
    }

    let seq_median = f.sequential.median();
    let mut table = LoadTable::new("speed-up vs sequential loop", seq_median, rtt);
    let mut row = |what: String, s: &Samples, requests: String| table.row(what, s, requests);
    let counted = |c: &Option<(usize, usize)>| {
        let (r, m) = c.expect("counted by the proxy");
        format!("{r} (max {m} in flight)")
    };
    let waves = |c: &Option<(usize, usize)>| SECRETS.div_ceil(c.map_or(1, |(_, m)| m.max(1)));
    let (default_load, default_counts) = &f.loads[0];
    let (requests, in_flight) = default_counts.expect("counted by the proxy");
    row(
        format!(
            "**skm `load()`** with the backend's defaults ({})",
            plural(waves(default_counts), "wave")
        ),
        default_load,
        counted(default_counts),
    );
    row(
        format!(
            "skm `load()`, `max_in_flight({NARROW})` ({})",
            plural(waves(&f.loads[1].1), "wave")
        ),
        &f.loads[1].0,
        counted(&f.loads[1].1),
    );
    row(
        format!("sequential loop: `AccessSecretVersion` × {SECRETS}, same Google client"),
        &f.sequential,
        f.seq_requests.to_string(),
    );
    row(
        "one `AccessSecretVersion` (the floor: 1 RTT + drongo)".into(),
        &f.single,
        f.single_requests.to_string(),
    );
    row(
        "skm `load()` straight to drongo, no proxy, defaults (drongo + client time)".into(),
        &f.loads[2].0,
        "— (no proxy)".into(),
    );
    row(
        "skm `load()` through the proxy to a stub that answers at once (no drongo), defaults".into(),
        &stubbed,
        stub_requests.to_string(),
    );

    let mut section = Section::new(
        "7. Google Cloud Secret Manager load (drongo behind the latency proxy)",
        table.into_table(),
    );
    section.intro.push(format!(
        "{SECRETS} secrets (`bench-aws-s000` … `bench-aws-s099`: the AWS benchmark's struct, whose paths the GCP \
         backend maps `/` → `-`) on a drongo server (the Secret Manager REST emulator, started as the tests start \
         it: with Nagle's algorithm off, since stock it holds every kept-alive answer about 40 ms), reached \
         through the skm-testing proxy adding {} ms per request (the RTT). Secret Manager has no batch read, so \
         skm sends one `AccessSecretVersion` per secret, concurrently up to the backend's `max_concurrency`. \
         Backends are built before timing; every approach is warmed up once (connections open); requests are \
         the proxy's count for one run.",
        rtt.as_millis()
    ));
    section.notes.push(format!(
        "Waves = ceil({SECRETS} / concurrency): at most {in_flight} requests were in flight with the defaults, \
         so the load took {}; with `max_in_flight({NARROW})` it takes {} round trips at best.",
        plural(waves(default_counts), "wave"),
        waves(&f.loads[1].1)
    ));
    section.notes.push(format!(
        "What drongo adds: straight to drongo, no proxy, the default load takes {} for {SECRETS} requests \
         (drongo is one Python process and serves them largely one after another), one access through the \
         proxy {} = {:.2} RTT. Through the same proxy to a stub that answers at once, the same load takes {} = \
         {:.2} RTT: the RTT and skm's own time.",
        fmt_secs(f.loads[2].0.median()),
        fmt_secs(f.single.median()),
        f.single.median() / rtt_s,
        fmt_secs(stubbed.median()),
        stubbed.median() / rtt_s
    ));

    let speedup = seq_median / default_load.median();
    let per_rtt = default_load.median() / rtt_s;
    section.targets.push(Target::new(
        "GCP load: speed-up over the sequential loop",
        "≥ 25×",
        fmt_ratio(speedup),
        speedup >= 25.0,
    ));
    section.targets.push(Target::new(
        "GCP load: wall time in RTTs",
        "≤ 2 RTT",
        format!("{per_rtt:.2} RTT ({})", fmt_secs(default_load.median())),
        per_rtt <= 2.0,
    ));
    section.targets.push(Target::new(
        format!("GCP load: requests for {SECRETS} secrets"),
        format!("= {SECRETS}"),
        requests.to_string(),
        requests == SECRETS,
    ));
    section
}
