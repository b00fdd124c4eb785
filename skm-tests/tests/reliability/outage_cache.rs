//! Starting during an outage (issue 28): the offline cache against moto. One load with the backend up
//! writes the cache; then moto is stopped and 200 loads in a row must all start from the cache with exactly
//! the values moto held (0 wrong values), each with its warning; the store directory holds no plaintext.
//! The same loads with `Loader::strict(true)` all fail (the cache is never used in strict mode).

use std::time::{Duration, Instant};

use skm::backend::aws::AwsBackend;
use skm::backend::{AdminBackend, PutRequest, SecretValue};
use skm::{ExposeSecret, Loader, SecretString, Secrets};
use skm_testing::Moto;

use crate::needles::SENTINEL;

const LOADS: usize = 200;

#[derive(Secrets)]
struct App {
    #[secret(path = "cache/app", key = "user")]
    user: SecretString,
    #[secret(path = "cache/app", key = "password")]
    password: SecretString,
    #[secret(path = "cache/token")]
    token: SecretString,
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn bytes_under(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                all.extend(std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_loads_start_from_the_cache_while_moto_is_stopped() {
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let moto = Moto::start().await;
    let backend = AwsBackend::builder()
        .region("us-east-1")
        .endpoint_url(moto.endpoint())
        .static_credentials("test", "test")
        .build()
        .await
        .unwrap();
    let password = format!("{SENTINEL}-password");
    let token = format!("{SENTINEL}-token");
    backend
        .put(PutRequest::new(
            "cache/app",
            SecretValue::map([("user", "app"), ("password", password.as_str())]),
        ))
        .await
        .unwrap();
    backend
        .put(PutRequest::new("cache/token", SecretValue::text(token.clone())))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join(".skm");
    let loader = Loader::new()
        .backend(backend)
        .no_dotenv()
        .env_vars([
            ("SKM_LOCAL_PATH", store.display().to_string()),
            ("SKM_LOCAL_KEY", "3c".repeat(32)),
        ])
        .deadline(Duration::from_secs(10))
        .offline_cache(Duration::from_secs(24 * 3600));
    let up = loader.load_report::<App>().await.expect("the load with moto up");
    assert!(up.warnings().is_empty(), "{:?}", up.warnings());

    drop(moto);
    let started = Instant::now();
    let (mut served, mut wrong, mut warned, mut failed) = (0, 0, 0, Vec::new());
    for _ in 0..LOADS {
        match loader.load_report::<App>().await {
            Ok(loaded) => {
                served += 1;
                let v = &loaded.value;
                if v.user.expose_secret() != "app"
                    || v.password.expose_secret() != password
                    || v.token.expose_secret() != token
                {
                    wrong += 1;
                }
                if loaded.warnings().iter().any(|w| w.contains("offline cache")) {
                    warned += 1;
                }
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    let elapsed = started.elapsed();
    let mut strict_failed = 0;
    for _ in 0..20 {
        if loader.clone().strict(true).load::<App>().await.is_err() {
            strict_failed += 1;
        }
    }
    let stored = bytes_under(&store);
    let plaintext = [password.as_str(), token.as_str(), SENTINEL]
        .iter()
        .filter(|s| contains(&stored, s))
        .count();
    println!(
        "outage at startup, AWS (moto stopped): {LOADS} loads with the offline cache: {served} served from the \
         cache, {wrong} with a wrong value, {warned} with the cache warning, {} failed; {:.1} s ({:.1} ms per \
         load); strict mode: {strict_failed}/20 failed; {} bytes stored under the store directory, {plaintext} \
         plaintext sightings",
        failed.len(),
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / LOADS as f64,
        stored.len()
    );
    assert_eq!(served, LOADS, "first failure: {:?}", failed.first());
    assert_eq!(wrong, 0);
    assert_eq!(warned, LOADS);
    assert_eq!(strict_failed, 20);
    assert_eq!(plaintext, 0);
}
