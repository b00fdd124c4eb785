//! Benchmark 2, Vault load: 50 paths on OpenBao, behind the latency proxy.

use std::time::Instant;

use serde_json::json;
use skm::backend::vault::VaultBackend;
use skm::backend::{Backend, FetchRequest};
use skm::{ExposeSecret, Loader};
use skm_testing::{Bao, Proxy};

use crate::report::{LoadTable, Section, Target};
use crate::stats::{fmt_secs, Samples};
use crate::structs::Vault50;
use crate::Settings;

/// Paths, one key each (the `Vault50` struct has one field per path).
pub const PATHS: usize = 50;

fn path(i: usize) -> String {
    format!("bench/vault/p{i:02}")
}

fn value(i: usize) -> String {
    // Not secret: benchmark data of a fixed length, so that a load can be checked by its total length.
    format!("vault-bench-value-{i:02}-0123456789abcdef")
}

fn expected_bytes() -> usize {
    (0..PATHS).map(|i| value(i).len()).sum()
}

async fn backend(addr: &str, token: &str, concurrency: Option<usize>) -> VaultBackend {
    let mut builder = VaultBackend::builder(addr).token(token);
    if let Some(n) = concurrency {
        builder = builder.max_in_flight(n);
    }
    builder.build().await.expect("a Vault backend for OpenBao")
}

fn loader(b: &VaultBackend) -> Loader {
    crate::loader_over(b.clone())
}

/// The length of the `value` key of one read (a Vault secret is a JSON map).
fn value_len(result: skm::backend::FetchResult) -> usize {
    let payload = result.expect("a read");
    let skm::backend::SecretValue::Text(text) = payload.value else {
        panic!("a Vault secret is a JSON map");
    };
    let map: serde_json::Value = serde_json::from_str(text.expose_secret()).expect("a JSON map");
    map["value"].as_str().map_or(0, str::len)
}

fn check(cfg: Vault50) {
    let bytes: usize = cfg.fields().iter().map(|f| f.expose_secret().len()).sum();
    assert_eq!(bytes, expected_bytes(), "skm loaded the wrong values");
}

/// Runs the Vault benchmark.
///
/// # Panics
/// When OpenBao is not installed or an operation fails: the caller reports the section as failed.
pub fn run(settings: &Settings) -> Section {
    crate::block_on(run_async(settings))
}

async fn run_async(settings: &Settings) -> Section {
    let rtt = settings.rtt;
    let rtt_s = rtt.as_secs_f64();
    let (runs, seq_runs) = if settings.quick { (3, 1) } else { (11, 3) };

    let bao = Bao::start().await;
    for i in 0..PATHS {
        let (status, body) = bao
            .api(
                "POST",
                &format!("/v1/secret/data/{}", path(i)),
                json!({ "data": { "value": value(i) } }),
            )
            .await;
        assert!(status == 200 || status == 204, "writing {}: {status} {body}", path(i));
    }

    let proxy = Proxy::start(&bao.addr()).await;
    proxy.set_latency(rtt);
    // Built before timing: the token lookup and KV-version detection happen once per process, at start-up.
    let default = backend(&proxy.url(), bao.root_token(), None).await;
    let wide = backend(&proxy.url(), bao.root_token(), Some(PATHS)).await;
    let direct = backend(&bao.addr(), bao.root_token(), None).await;

    let mut timed = Vec::new();
    for (what, b, through_proxy) in [
        (
            "**skm `load()`**, default concurrency (64 reads in flight)",
            &default,
            true,
        ),
        ("skm `load()`, `concurrency(50)`", &wide, true),
        (
            "skm `load()` straight to OpenBao, no proxy (server + client time)",
            &direct,
            false,
        ),
    ] {
        let l = loader(b);
        check(l.load::<Vault50>().await.expect("skm load (warm-up)"));
        let mut samples = Samples::new();
        let mut requests = 0;
        let mut in_flight = 0;
        for _ in 0..runs {
            proxy.clear();
            let t = Instant::now();
            check(l.load::<Vault50>().await.expect("skm load"));
            samples.push_duration(t.elapsed());
            if through_proxy {
                requests = proxy.count();
                in_flight = proxy.max_in_flight();
            }
        }
        timed.push((what, samples, through_proxy.then_some((requests, in_flight))));
    }

    // What a hand-written client does at best: the 50 reads sent at once, each its own task reading one path
    // with the same client, no loader in between. skm's load and these alternate, run by run, so that the
    // machine's drift hits both alike; skm's time over this row's is what the loader itself costs.
    let by_hand = || {
        let b = default.clone();
        async move {
            let mut reads = tokio::task::JoinSet::new();
            for i in 0..PATHS {
                let b = b.clone();
                reads.spawn(async move { value_len(b.fetch(&[FetchRequest::current(path(i))]).await.remove(0)) });
            }
            let bytes: usize = reads.join_all().await.into_iter().sum();
            assert_eq!(bytes, expected_bytes(), "the hand-written reads read the wrong values");
        }
    };
    by_hand().await;
    let default_loader = loader(&default);
    let (mut paired, mut hand) = (Samples::new(), Samples::new());
    let mut hand_requests = 0;
    for _ in 0..runs {
        let t = Instant::now();
        check(default_loader.load::<Vault50>().await.expect("skm load"));
        paired.push_duration(t.elapsed());
        proxy.clear();
        let t = Instant::now();
        by_hand().await;
        hand.push_duration(t.elapsed());
        hand_requests = proxy.count();
    }

    // The naive loop: the same backend and client, one path at a time.
    let mut sequential = Samples::new();
    let mut seq_requests = 0;
    for _ in 0..seq_runs {
        proxy.clear();
        let t = Instant::now();
        let mut bytes = 0;
        for i in 0..PATHS {
            bytes += value_len(default.fetch(&[FetchRequest::current(path(i))]).await.remove(0));
        }
        sequential.push_duration(t.elapsed());
        assert_eq!(bytes, expected_bytes(), "the sequential loop read the wrong values");
        seq_requests = proxy.count();
    }
    let mut single = Samples::new();
    for _ in 0..runs {
        proxy.clear();
        let t = Instant::now();
        let result = default.fetch(&[FetchRequest::current(path(7))]).await.remove(0);
        single.push_duration(t.elapsed());
        result.expect("one read");
    }

    let seq_median = sequential.median();
    let mut table = LoadTable::new("speed-up vs sequential", seq_median, rtt);
    for (what, s, counts) in &timed {
        let requests = counts.map_or("— (no proxy)".into(), |(r, f)| format!("{r} (max {f} in flight)"));
        table.row(*what, s, requests);
    }
    for (what, s, requests) in [
        (
            "hand-written: the 50 reads sent at once, 50 tasks on the same client (no loader)",
            &hand,
            hand_requests,
        ),
        (
            "sequential loop: one read at a time, same client",
            &sequential,
            seq_requests,
        ),
        ("one read (the floor: 1 RTT + OpenBao)", &single, 1),
    ] {
        table.row(what, s, requests.to_string());
    }

    let mut section = Section::new("2. Vault load (OpenBao behind the latency proxy)", table.into_table());
    section.intro.push(format!(
        "{PATHS} KV v2 paths (one key each) on an OpenBao dev server, through the same proxy adding {} ms per \
         request. Vault has no batch read, so skm reads each path once, concurrently. The backend is built \
         before timing (token lookup and KV-version detection happen once, at start-up); each load is warmed \
         up once.",
        rtt.as_millis()
    ));
    let (_, default_load, default_counts) = &timed[0];
    let (requests, in_flight) = default_counts.unwrap_or_default();
    let waves = PATHS.div_ceil(in_flight.max(1));
    section.notes.push(format!(
        "With at most {in_flight} reads in flight, {PATHS} paths take ceil({PATHS}/{in_flight}) = {waves} round \
         trips at best; `concurrency(50)` shows what one wave costs."
    ));
    let over_hand = paired.median() / hand.median();
    section.notes.push(format!(
        "skm against the hand-written reads, run by run alternately on the same client: {} vs {}, {over_hand:.2}×. \
         Beyond the RTT, both wait for OpenBao to serve {PATHS} reads on this 2-core machine (the no-proxy row).",
        fmt_secs(paired.median()),
        fmt_secs(hand.median())
    ));
    section.targets.push(Target::new(
        "Vault load: skm / the same reads sent by hand (same client, alternate runs)",
        "≤ 1.1×",
        format!("{over_hand:.2}×"),
        over_hand <= 1.1,
    ));
    let per_rtt = default_load.median() / rtt_s;
    section.targets.push(Target::new(
        "Vault load: wall time in RTTs (default configuration)",
        "≤ 2 RTT",
        format!("{per_rtt:.2} RTT ({})", fmt_secs(default_load.median())),
        per_rtt <= 2.0,
    ));
    let (_, wide_load, _) = &timed[1];
    let wide_rtt = wide_load.median() / rtt_s;
    section.targets.push(Target::new(
        "Vault load: wall time in RTTs with `concurrency(50)`",
        "≤ 2 RTT",
        format!("{wide_rtt:.2} RTT ({})", fmt_secs(wide_load.median())),
        wide_rtt <= 2.0,
    ));
    section.targets.push(Target::new(
        format!("Vault load: requests for {PATHS} paths"),
        format!("= {PATHS}"),
        requests.to_string(),
        requests == PATHS,
    ));
    section
}
