//! Benchmark 8, Azure Key Vault load: 100 secrets on skm-testing's Key Vault test server, latency injected.
//!
//! Key Vault has no batch read: skm's `load()` of the derived 100-field struct sends one `GET` per secret
//! through a bounded fan-out. It is timed against a sequential `GetSecret` loop with the same SDK client.

use std::time::Instant;

use skm::backend::azure::azure_security_keyvault_secrets::models::SetSecretParameters;
use skm::backend::azure::{secret_name, AzureBackend, DEFAULT_CONCURRENCY};
use skm::ExposeSecret;
use skm_testing::KeyVault;

use crate::report::{LoadTable, Section, Target};
use crate::stats::{fmt_ratio, fmt_secs, Samples};
use crate::structs::Aws100;
use crate::Settings;

/// Secrets, one per field of `Aws100`.
pub const SECRETS: usize = 100;
/// A concurrency below the secrets' count, to show what waves cost: ceil(100 / 32) = 4.
const NARROW: usize = 32;

/// The Key Vault name of the secret behind `Aws100`'s field `i` (path `bench/aws/sNNN`), as skm maps it.
fn name(i: usize) -> String {
    secret_name(&format!("bench/aws/s{i:03}")).expect("the benchmark paths are valid Key Vault names")
}

fn value(i: usize) -> String {
    // Not secret: benchmark data of a fixed length, so that a load can be checked by its total length.
    format!("azure-bench-value-{i:03}-0123456789abcdef")
}

fn expected_bytes() -> usize {
    (0..SECRETS).map(|i| value(i).len()).sum()
}

fn backend(kv: &KeyVault, concurrency: Option<usize>) -> AzureBackend {
    let builder = AzureBackend::builder()
        .vault_url(kv.url())
        .authority_host(kv.authority_host())
        .ca_cert(kv.ca_pem_path())
        .client_secret(kv.tenant_id(), kv.client_id(), kv.client_secret());
    match concurrency {
        Some(n) => builder.max_in_flight(n),
        None => builder,
    }
    .build()
    .expect("an Azure backend for the Key Vault test server")
}

/// What the server saw during one approach's timed runs.
#[derive(Debug, Default)]
struct Seen {
    /// Requests of the last run.
    requests: usize,
    /// `GET /secrets/…` (GetSecret) requests of the last run.
    gets: usize,
    /// Requests answered `401` (the bearer challenge), all runs together.
    challenged: usize,
    /// Tokens the token endpoint issued, all runs together.
    tokens: usize,
    /// The most requests in flight at once, over all runs.
    max_in_flight: usize,
}

fn is_get_secret(r: &skm_testing::KeyVaultRequest) -> bool {
    r.method == "GET" && r.path.starts_with("/secrets/")
}

/// Times `f` `runs` times, clearing the server's record before each run.
async fn measure<F, Fut>(kv: &KeyVault, runs: usize, mut f: F) -> (Samples, Seen)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Samples::new();
    let mut seen = Seen::default();
    let tokens = kv.tokens_issued();
    for _ in 0..runs {
        kv.clear_requests();
        let t = Instant::now();
        f().await;
        samples.push_duration(t.elapsed());
        let requests = kv.requests();
        seen.requests = requests.len();
        seen.gets = requests.iter().filter(|r| is_get_secret(r)).count();
        seen.challenged += requests.iter().filter(|r| r.status == 401).count();
        seen.max_in_flight = seen.max_in_flight.max(kv.max_in_flight());
    }
    seen.tokens = kv.tokens_issued() - tokens;
    (samples, seen)
}

/// Runs the Azure Key Vault benchmark.
///
/// # Panics
/// When the Key Vault test server cannot start or an operation fails: the caller reports the section as failed.
pub fn run(settings: &Settings) -> Section {
    crate::block_on(run_async(settings))
}

async fn run_async(settings: &Settings) -> Section {
    let rtt = settings.rtt;
    let rtt_s = rtt.as_secs_f64();
    let (load_runs, loop_runs) = if settings.quick { (3, 1) } else { (11, 3) };

    let kv = KeyVault::start().await;
    let default = backend(&kv, None);
    for i in 0..SECRETS {
        let params = SetSecretParameters {
            value: Some(value(i)),
            ..Default::default()
        };
        default
            .client()
            .set_secret(&name(i), params.try_into().expect("set-secret parameters"), None)
            .await
            .expect("set a benchmark secret on the Key Vault test server");
    }
    let narrow = backend(&kv, Some(NARROW));
    let loader = |b: &AzureBackend| crate::loader_over(b.clone());
    let (default_loader, narrow_loader) = (loader(&default), loader(&narrow));
    let check = |cfg: Aws100| {
        let bytes: usize = cfg.fields().iter().map(|f| f.expose_secret().len()).sum();
        assert_eq!(bytes, expected_bytes(), "skm loaded the wrong values");
    };
    // A fresh backend for the first load (token, challenge): the seeding warmed `default` already.
    let fresh = backend(&kv, None);
    let fresh_loader = loader(&fresh);

    kv.set_latency(rtt);
    // The first load of a fresh backend, timed once for the notes: it fetches a token and meets the challenge.
    let (cold, cold_seen) = measure(&kv, 1, || async {
        check(fresh_loader.load::<Aws100>().await.expect("skm's first load"));
    })
    .await;
    // Warm-up: token cached, challenge known, connections open; every approach gets one.
    check(default_loader.load::<Aws100>().await.expect("skm load"));
    check(narrow_loader.load::<Aws100>().await.expect("skm load, concurrency 32"));
    let client = default.client();
    let get_one = |i: usize| async move {
        let secret = client
            .get_secret(&name(i), None)
            .await
            .expect("GetSecret")
            .into_model()
            .expect("a secret");
        assert_eq!(
            secret.value.as_deref(),
            Some(value(i).as_str()),
            "GetSecret read the wrong value"
        );
    };
    let sequential = || async {
        for i in 0..SECRETS {
            get_one(i).await;
        }
    };
    sequential().await;

    let (skm_load, skm_seen) = measure(&kv, load_runs, || async {
        check(default_loader.load::<Aws100>().await.expect("skm load"));
    })
    .await;
    let (narrow_load, narrow_seen) = measure(&kv, load_runs, || async {
        check(narrow_loader.load::<Aws100>().await.expect("skm load, concurrency 32"));
    })
    .await;
    let (seq, seq_seen) = measure(&kv, loop_runs, sequential).await;
    let (single, single_seen) = measure(&kv, load_runs, || get_one(7)).await;

    kv.set_latency(std::time::Duration::ZERO);
    check(default_loader.load::<Aws100>().await.expect("skm load, no latency"));
    let (bare, bare_seen) = measure(&kv, load_runs, || async {
        check(default_loader.load::<Aws100>().await.expect("skm load, no latency"));
    })
    .await;

    let seq_median = seq.median();
    let mut table = LoadTable::new("speed-up vs sequential loop", seq_median, rtt);
    let mut row = |what: String, s: &Samples, seen: &Seen| {
        let requests = if seen.requests == seen.gets {
            format!("{} × GetSecret", seen.gets)
        } else {
            format!("{} ({} × GetSecret)", seen.requests, seen.gets)
        };
        table.row(what, s, requests);
    };
    row(
        format!("**skm `load()`** of the 100-field struct, defaults (concurrency {DEFAULT_CONCURRENCY})"),
        &skm_load,
        &skm_seen,
    );
    row(
        format!("skm `load()`, `concurrency({NARROW})`"),
        &narrow_load,
        &narrow_seen,
    );
    row(
        "sequential loop: `GetSecret` × 100, same SDK client".into(),
        &seq,
        &seq_seen,
    );
    row(
        "one `GetSecret` (the floor: 1 RTT + server)".into(),
        &single,
        &single_seen,
    );
    row(
        "skm `load()`, defaults, no injected latency (server + client time)".into(),
        &bare,
        &bare_seen,
    );

    let mut section = Section::new(
        "8. Azure Key Vault load (the Key Vault test server, latency injected)",
        table.into_table(),
    );
    section.intro.push(format!(
        "{SECRETS} secrets (`bench-aws-s000`…, the Key Vault names of `Aws100`'s paths `bench/aws/sNNN`) on \
         skm-testing's Key Vault test server (HTTPS with its own CA, HTTP/1.1 only, bearer challenge and token \
         endpoint). The RTT ({} ms) is the server's own `set_latency`: each request, data plane and token \
         endpoint alike, is read, then held {} ms before it is handled and answered (TCP and TLS handshakes \
         are not delayed; the warm-up opens the connections). Every approach is warmed up once (token cached, \
         challenge known, connections open), then timed; requests are the server's count for one run. skm's \
         Azure backend runs with its defaults unless the row says otherwise: one `GET` per secret, at most \
         {DEFAULT_CONCURRENCY} in flight.",
        rtt.as_millis(),
        rtt.as_millis()
    ));

    let waves = |c: usize| SECRETS.div_ceil(c);
    let timed_tokens = skm_seen.tokens + narrow_seen.tokens + seq_seen.tokens + single_seen.tokens + bare_seen.tokens;
    let timed_challenged = skm_seen.challenged
        + narrow_seen.challenged
        + seq_seen.challenged
        + single_seen.challenged
        + bare_seen.challenged;
    section.notes.push(format!(
        "Waves = ceil({SECRETS} / concurrency): {} with the default {DEFAULT_CONCURRENCY}, so the default load \
         cannot take less than {} × the floor; {} with `concurrency({NARROW})`. The floor (one `GetSecret`) is \
         {} = {:.2} RTT.",
        waves(DEFAULT_CONCURRENCY),
        waves(DEFAULT_CONCURRENCY),
        waves(NARROW),
        fmt_secs(single.median()),
        single.median() / rtt_s
    ));
    section.notes.push(format!(
        "Most requests in flight at once: {} in the default load, {} with `concurrency({NARROW})`.",
        skm_seen.max_in_flight, narrow_seen.max_in_flight
    ));
    section.notes.push(format!(
        "Token and challenge: during all timed runs the token endpoint issued {timed_tokens} tokens and {timed_challenged} \
         requests were answered `401`. A warmed backend does not send its first request alone again: the \
         default load takes {:.2} RTT, one wave (a lone first request would add a floor: at least {:.2} RTT). The first load of a fresh backend took {} = {:.2} RTT with {} requests: {} to \
         the token endpoint, {} answered `401` (the bearer challenge), {} × GetSecret (the first one twice: \
         challenged, then with the token), and its connections still to open.",
        skm_load.median() / rtt_s,
        2.0 * single.median() / rtt_s,
        fmt_secs(cold.median()),
        cold.median() / rtt_s,
        cold_seen.requests,
        cold_seen.requests - cold_seen.gets,
        cold_seen.challenged,
        cold_seen.gets
    ));
    section.notes.push(format!(
        "Without injected latency the default load takes {} ({} per secret): what the test server (TLS, \
         HTTP/1.1) and the Azure SDK client (its pipeline and policies per request, JSON) add, on the same \
         2-core machine.",
        fmt_secs(bare.median()),
        fmt_secs(bare.median() / SECRETS as f64)
    ));

    let speedup = seq_median / skm_load.median();
    let per_rtt = skm_load.median() / rtt_s;
    if per_rtt > 2.0 {
        section.notes.push(format!(
            "The wall-time target (≤ 2 RTT) is missed with the defaults: {DEFAULT_CONCURRENCY} requests in \
             flight make {} wave(s), each at least one RTT; the no-latency row is what the server and \
             the client add.",
            waves(DEFAULT_CONCURRENCY)
        ));
    }
    if speedup < 25.0 {
        section.notes.push(format!(
            "The speed-up target (≥ 25×) is missed with the defaults: the sequential loop pays {SECRETS} floors \
             ({} each), the default load {} wave(s) plus the client's time.",
            fmt_secs(single.median()),
            waves(DEFAULT_CONCURRENCY)
        ));
    }
    section.targets.push(Target::new(
        "Azure load: speed-up over the sequential loop",
        "≥ 25×",
        fmt_ratio(speedup),
        speedup >= 25.0,
    ));
    section.targets.push(Target::new(
        "Azure load: wall time in RTTs",
        "≤ 2 RTT",
        format!("{per_rtt:.2} RTT ({})", fmt_secs(skm_load.median())),
        per_rtt <= 2.0,
    ));
    section.targets.push(Target::new(
        format!("Azure load: requests for {SECRETS} secrets"),
        format!("= {SECRETS}"),
        format!("{} ({} × GetSecret)", skm_seen.requests, skm_seen.gets),
        skm_seen.requests == SECRETS && skm_seen.gets == SECRETS,
    ));
    section
}
