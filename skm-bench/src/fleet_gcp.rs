//! Benchmark 9, fleet start under Google Cloud's quotas: N instances load the same 100 secrets at once.
//!
//! Each instance is its own [`GcpBackend`] (own Google client, connection pool, retry throttler), as separate
//! processes would be, against skm-testing's proxy with Secret Manager's per-project token buckets scaled by
//! [`QUOTA_FACTOR`], in front of the section-7 stub (drongo serves too few requests a second to meet the
//! quota). The largest fleet is 50: 100 instances × 100 HTTP/1.1 connections, both ends in one process, would
//! need 20,000 sockets, this machine's hard limit on open files.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use skm::backend::gcp::{GcpBackend, DEFAULT_MAX_ATTEMPTS, DEFAULT_THROTTLE_PATIENCE};
use skm::Loader;
use skm_testing::{OperationCount, Proxy, Quotas};

use crate::gcp::{serve, value, PROJECT, SECRETS};
use crate::report::{Section, Table, Target};
use crate::stats::fmt_secs;
use crate::structs::Aws100;
use crate::Settings;

/// Secret Manager's per-project rates times this: what the test bed enforces (access 75/s with a burst of
/// 4,500, other reads 0.5/s with a burst of 30). A bench fleet of N instances meets the quotas as a real fleet
/// of N / `QUOTA_FACTOR` instances meets Google's: 50 bench instances × 100 secrets = 5,000 accesses at once,
/// over the 4,500 burst, as 1,000 real instances send 100,000 against 90,000 a minute. The excess drains in
/// the same time at any factor (excess / rate does not depend on it), so the times are the real fleet's.
pub const QUOTA_FACTOR: f64 = 0.05;
/// Hot reload period for the steady-state figures.
const RELOAD_EVERY: Duration = Duration::from_secs(60);
/// The latency while an instance opens its connections before a start.
const WARM_LATENCY: Duration = Duration::from_millis(60);

/// One instance: its own Google client; `patience` is the builder's `throttle_patience` (`None`: the default).
async fn instance(endpoint: &str, patience: Option<Duration>) -> GcpBackend {
    let mut builder = GcpBackend::builder().project(PROJECT).endpoint(endpoint);
    if let Some(p) = patience {
        builder = builder.throttle_patience(p);
    }
    builder.build().await.expect("a GCP backend for the fleet bed")
}

fn loader(backend: &GcpBackend) -> Loader {
    crate::loader_over(backend.clone())
}

/// The kernel's count of connections dropped because a listening socket's accept queue was full (machine-wide;
/// `None` off Linux). A dropped SYN is sent again after 1 s, 3 s, ...: a bed artefact when it happens.
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut rows = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (rows.next()?, rows.next()?);
    let at = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Whether every field holds the bed's value.
fn check(cfg: &Aws100) -> bool {
    crate::holds(cfg, value)
}

/// What one fleet start did.
struct Start {
    /// Until every load returned (loaded or failed).
    wall: Duration,
    /// Loads that returned an error.
    errors: usize,
    /// Loads that returned wrong values.
    wrong: usize,
    /// The slowest successful load.
    slowest: Option<Duration>,
    /// Secrets the failed loads missed: (throttled, other).
    missed: [usize; 2],
    /// SYNs the bed's listener dropped during the start (machine-wide count).
    dropped: Option<u64>,
    counts: BTreeMap<String, OperationCount>,
}

impl Start {
    fn failed(&self) -> usize {
        self.errors + self.wrong
    }
}

async fn start(proxy: &Proxy, rtt: Duration, quotas: &Quotas, n: usize, patience: Option<Duration>) -> Start {
    let mut fleet = Vec::with_capacity(n);
    for _ in 0..n {
        fleet.push(instance(&proxy.url(), patience).await);
    }
    // Each instance opens its connections before the start, one instance at a time, without quotas, with a
    // latency long enough that all its requests are in flight together (one connection each): a service's
    // connections open as it starts, spread over its start-up, not 5,000 handshakes in one instant on 2 cores.
    proxy.clear_quotas();
    proxy.set_latency(WARM_LATENCY);
    for b in &fleet {
        let cfg = loader(b).load::<Aws100>().await.expect("a warm-up load");
        assert!(check(&cfg), "a warm-up load read wrong values");
    }
    proxy.set_latency(rtt);
    // Fresh quotas (buckets full, as after a quiet period) and counts.
    proxy.set_quotas(quotas.clone());
    proxy.clear();
    let before = listen_overflows();
    let t = Instant::now();
    let mut loads = tokio::task::JoinSet::new();
    for b in fleet {
        loads.spawn(async move {
            let r = loader(&b).load::<Aws100>().await.map(|cfg| check(&cfg));
            (r, t.elapsed())
        });
    }
    let results = loads.join_all().await;
    let mut s = Start {
        wall: t.elapsed(),
        errors: 0,
        wrong: 0,
        slowest: None,
        missed: [0, 0],
        dropped: listen_overflows().zip(before).map(|(a, b)| a - b),
        counts: proxy.quota_counts(),
    };
    for (r, took) in results {
        match r {
            Ok(true) => s.slowest = s.slowest.max(Some(took)),
            Ok(false) => s.wrong += 1,
            Err(e) => {
                s.errors += 1;
                // One line per secret the load missed: "  - field `s020` (path `...`): throttled".
                for line in e.to_string().lines().filter(|l| l.trim_start().starts_with("- field")) {
                    s.missed[usize::from(!line.ends_with(": throttled"))] += 1;
                }
            }
        }
    }
    s
}

/// Quota units one hot-reload tick costs, per quota group: a `watch` with a short TTL, counted over a few ticks.
async fn reload_tick(proxy: &Proxy) -> Vec<(String, f64)> {
    let b = instance(&proxy.url(), None).await;
    let watch = loader(&b)
        .watch::<Aws100>(skm::WatchOptions::ttl(Duration::from_millis(200)))
        .await
        .expect("a watch over the fleet bed");
    // Skip the first tick, then count exactly `ticks` ticks.
    watch.wait_ticks(1).await;
    proxy.clear();
    let ticks: u32 = 4;
    watch.wait_ticks(1 + u64::from(ticks)).await;
    let counts = proxy.quota_counts();
    assert!(check(&watch.latest()), "the watch holds wrong values");
    counts
        .into_iter()
        .map(|(op, c)| (op, c.total as f64 / f64::from(ticks)))
        .collect()
}

/// Runs the GCP fleet benchmark.
///
/// # Panics
/// When the test bed cannot start or a backend cannot be built.
pub fn run(settings: &Settings) -> Section {
    crate::block_on(run_async(settings))
}

async fn run_async(settings: &Settings) -> Section {
    let sizes: &[usize] = if settings.quick { &[1, 10] } else { &[1, 10, 50] };
    let largest = *sizes.last().expect("fleet sizes");
    let proxy = Proxy::stub(serve).await;
    proxy.set_latency(settings.rtt);
    let scaled = Quotas::gcp(QUOTA_FACTOR);
    let access = scaled.rate("gcp.access").expect("an access quota");

    let mut runs: Vec<(usize, Option<Duration>, Start)> = Vec::new();
    for &n in sizes {
        eprintln!("    fleet of {n}, defaults");
        runs.push((n, None, start(&proxy, settings.rtt, &scaled, n, None).await));
    }
    // The largest fleet again with the client's retries alone: what the patience is for.
    eprintln!("    fleet of {largest}, throttle_patience(0)");
    let impatient = start(&proxy, settings.rtt, &scaled, largest, Some(Duration::ZERO)).await;
    runs.push((largest, Some(Duration::ZERO), impatient));

    let mut table = Table::new(&[
        "instances (≈ real fleet)",
        "retries",
        "time until all returned",
        "slowest successful load",
        "failed loads",
        "access requests (throttled)",
        "other reads (throttled)",
    ]);
    for (n, patience, s) in &runs {
        let op = |name: &str| {
            let c = s.counts.get(name).copied().unwrap_or_default();
            format!("{} ({})", c.total, c.throttled)
        };
        table.row(vec![
            format!("{n} (≈ {:.0})", *n as f64 / QUOTA_FACTOR),
            match patience {
                None => format!(
                    "**skm default** ({DEFAULT_MAX_ATTEMPTS} attempts, then up to {} s of patience)",
                    DEFAULT_THROTTLE_PATIENCE.as_secs()
                ),
                Some(_) => format!("`throttle_patience(0)`: the client's {DEFAULT_MAX_ATTEMPTS} attempts only"),
            },
            fmt_secs(s.wall.as_secs_f64()),
            s.slowest.map_or("—".into(), |t| fmt_secs(t.as_secs_f64())),
            s.failed().to_string(),
            op("gcp.access"),
            op("gcp.read"),
        ]);
    }

    // Steady state: quota share of hot reload, per instance-hour, at Google's real quotas (none is reached).
    proxy.set_quotas(Quotas::gcp(1.0));
    let per_tick = reload_tick(&proxy).await;
    let per_minute = 60.0 / RELOAD_EVERY.as_secs_f64();
    // Per group: a tick's requests, an instance-hour's, and the share of Google's per-minute quota they use; the
    // fleet fits while the largest share stays under 100 %.
    let mut steady = Vec::new();
    let mut worst: f64 = 0.0;
    for (op, c) in &per_tick {
        let quota = Quotas::gcp(1.0).rate(op).map_or(f64::INFINITY, |r| r.per_second * 60.0);
        worst = worst.max(c * per_minute / quota);
        steady.push(format!(
            "{c:.0} `{op}` a tick, {:.0} an hour, {:.3} % of the `{op}` quota",
            c * per_minute * 60.0,
            c * per_minute / quota * 100.0
        ));
    }

    let mut section = Section::new("9. Fleet start under Google Cloud's quotas", table);
    let read = scaled.rate("gcp.read").expect("a read quota");
    section.intro.push(format!(
        "N instances, each its own `GcpBackend` (own Google client), load the 100-secret struct at the same \
         moment against the quota test bed: Secret Manager's per-project quotas × {QUOTA_FACTOR} (access \
         {:.0}/s with a burst of {:.0}, other reads {:.1}/s with a burst of {:.0}; Google: 90,000 and 600 a \
         minute, a minute's worth of burst), so N bench instances meet the quotas as ≈ N / {QUOTA_FACTOR} real \
         ones do, in the same time. Over quota the bed answers 429 `RESOURCE_EXHAUSTED` as Google does; the \
         Google client retries it ({DEFAULT_MAX_ATTEMPTS} attempts by default, backoff from 100 ms doubling to \
         at most 5 s, full jitter), then the backend tries a still-throttled access again with jittered \
         backoff for up to {} s (`throttle_patience`). The bed is section 7's stub behind the proxy ({} ms RTT per request): \
         drongo serves about 1,000–3,000 requests a second here, too few to meet the quota. Before each \
         start every instance opens its 100 connections (one instance at a time, so that the times are the \
         quota's, not thousands of handshakes at one instant on 2 cores; the bed listens with a 4,096-deep \
         accept queue, and the dropped-SYN count below checks that none was lost), then the buckets are filled. Counts are requests (of which throttled); every loaded value is \
         checked. 50 instances is the largest fleet: 100 would need 20,000 sockets in one process (100 \
         connections each, both ends), this machine's limit.",
        access.per_second,
        access.burst,
        read.per_second,
        read.burst,
        DEFAULT_THROTTLE_PATIENCE.as_secs(),
        settings.rtt.as_millis()
    ));
    let dropped: Option<u64> = runs.iter().map(|r| r.2.dropped).sum();
    section.notes.push(format!(
        "SYNs dropped by full accept queues on this machine during the timed starts: {}.",
        dropped.map_or("not measured (no /proc/net/netstat)".into(), |d| d.to_string())
    ));
    if let Some((n, _, s)) = runs.iter().find(|r| r.1.is_some()) {
        let over = (n * SECRETS) as f64 - access.burst;
        let drain = fmt_secs(over / access.per_second);
        let patient = runs.iter().find(|r| r.0 == *n && r.1.is_none()).map(|r| &r.2);
        section.notes.push(format!(
            "At {n} instances {} accesses arrive at once against a burst of {:.0}; the {over:.0} over it drain at \
             {:.0}/s, in {drain} at best (a real fleet of ≈ {:.0} meets the same {drain} with Google's 90,000 \
             and 1,500/s). The client's {DEFAULT_MAX_ATTEMPTS} attempts wait at most 0.1 + 0.2 + 0.4 + 0.8 = \
             1.5 s in all, so with them alone (`throttle_patience(0)`) requests give up before the quota \
             refills: {} failed loads, {} secrets missed as throttled ({} for other reasons, {} loads with wrong \
             values). With the default patience the same start {}.",
            n * SECRETS,
            access.burst,
            access.per_second,
            *n as f64 / QUOTA_FACTOR,
            s.failed(),
            s.missed[0],
            s.missed[1],
            s.wrong,
            match patient {
                Some(p) if p.failed() == 0 => format!(
                    "loads every instance, the last after {}",
                    fmt_secs(p.wall.as_secs_f64())
                ),
                Some(p) => format!("still fails {} loads", p.failed()),
                None => "was not run".into(),
            }
        ));
    }
    let fits = if worst > 0.0 { 1.0 / worst } else { f64::INFINITY };
    section.notes.push(format!(
        "Steady state, hot reload of {SECRETS} secrets every {} s, per instance (measured with a `watch`, TTL \
         200 ms, over 4 ticks, at Google's real quotas): {}; ≈ {fits:.0} instances fit in the quota at that \
         rate. The backend never reads metadata, so hot reload spends none of the 600/min `gcp.read` quota.",
        RELOAD_EVERY.as_secs(),
        steady.join("; ")
    ));

    let defaults = runs.iter().filter(|r| r.1.is_none());
    let failed: Vec<String> = defaults.clone().map(|r| format!("{}/{}", r.2.failed(), r.0)).collect();
    let all_default: usize = defaults.map(|r| r.2.failed()).sum();
    section.targets.push(Target::new(
        "GCP fleet: failed loads",
        "0 failed",
        format!(
            "{all_default} failed with the defaults ({} instances)",
            failed.join(", ")
        ),
        all_default == 0,
    ));
    section
}
