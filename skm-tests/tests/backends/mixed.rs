//! Mixed backends: one struct with fields on AWS Secrets Manager (a real moto server) and on Vault (a real
//! OpenBao dev server), routed with `#[secret(backend = "vault")]`, loaded in one concurrent wave.
//!
//! Every test starts its own servers (`skm_testing::Moto`, `skm_testing::Bao`), each behind a counting
//! `skm_testing::Proxy`. The process environment is never changed except `AWS_EC2_METADATA_DISABLED=true`;
//! the README example, which reads the real environment, runs this binary again as a child process with
//! exactly the AWS and Vault variables (see `child_process_entry`).
#![cfg(all(feature = "aws", feature = "vault"))]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use skm::backend::aws::AwsBackend;
use skm::backend::vault::{KvVersion, VaultBackend, VaultBuilder};
use skm::backend::{AdminBackend, FailureKind, MemoryBackend, PutRequest, SecretValue};
use skm::{Error, ExposeSecret, FieldProblem, Layer, SecretBox};
use skm_testing::{Bao, Moto, Proxy};

use crate::support::no_instance_metadata;

async fn aws(endpoint: &str) -> AwsBackend {
    no_instance_metadata();
    AwsBackend::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .static_credentials("test", "test")
        .build()
        .await
        .expect("aws backend")
}

async fn vault(addr: &str, token: &str) -> VaultBackend {
    VaultBuilder::new(addr)
        .token(token)
        .kv_version(KvVersion::V2)
        .build()
        .await
        .expect("vault backend")
}

/// Writes a KV v2 secret as root through the HTTP API (not through skm).
async fn write(bao: &Bao, path: &str, data: serde_json::Value) {
    let (status, body) = bao
        .api("POST", &format!("secret/data/{path}"), json!({ "data": data }))
        .await;
    assert_eq!(status, 200, "writing {path}: {body}");
}

#[derive(Secrets)]
struct Service {
    /// On the default backend (AWS here).
    #[secret(path = "svc/api", key = "key", env = "API_KEY")]
    api_key: SecretString,
    #[secret(path = "svc/jwt", env = "JWT_SECRET")]
    jwt: SecretString,
    /// Two keys of one Vault secret: one request.
    #[secret(path = "svc/db", key = "password", env = "DB_PASSWORD", backend = "vault")]
    db_password: SecretString,
    #[secret(path = "svc/db", key = "port", env = "DB_PORT", backend = "openbao")]
    db_port: SecretBox<u16>,
}

/// Both peers, each behind a counting proxy, holding `Service`'s secrets.
struct Peers {
    _moto: Moto,
    bao: Bao,
    aws_proxy: Proxy,
    vault_proxy: Proxy,
    aws: AwsBackend,
    vault: VaultBackend,
}

async fn peers() -> Peers {
    let moto = Moto::start().await;
    let bao = Bao::start().await;
    let aws_proxy = Proxy::start(&moto.endpoint()).await;
    let vault_proxy = Proxy::start(&bao.addr()).await;
    let aws = aws(&aws_proxy.url()).await;
    aws.put(PutRequest::new("svc/api", SecretValue::map([("key", "api-from-aws")])))
        .await
        .unwrap();
    aws.put(PutRequest::new("svc/jwt", SecretValue::text("jwt-from-aws")))
        .await
        .unwrap();
    write(&bao, "svc/db", json!({ "password": "db-from-vault", "port": "5432" })).await;
    let vault = vault(&vault_proxy.url(), bao.root_token()).await;
    aws_proxy.clear();
    vault_proxy.clear();
    Peers {
        _moto: moto,
        bao,
        aws_proxy,
        vault_proxy,
        aws,
        vault,
    }
}

fn loader(env: &[(&str, &str)]) -> Loader {
    Loader::new()
        .no_dotenv()
        .no_secrets_dir()
        .env_vars(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn load_error(e: Error) -> Vec<skm::FieldError> {
    match e {
        Error::Load(load) => load.fields,
        other => panic!("expected a load error, got {other}"),
    }
}

/// One load, one wave: AWS's two paths in one batch call and Vault's one path in one read, at the same
/// time; each field's provenance names its backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_struct_on_aws_and_vault_loads_in_one_wave() {
    let p = peers().await;
    // Each peer answers after a delay: fetched one after the other, the load would take both delays.
    let delay = Duration::from_millis(1500);
    p.aws_proxy.set_latency(delay);
    p.vault_proxy.set_latency(delay);
    let loader = loader(&[])
        .backend(p.aws.clone())
        .with_backend("vault", p.vault.clone());

    let started = Instant::now();
    let loaded = loader.load_report::<Service>().await.unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    let s = loaded.value;
    assert_eq!(s.api_key.expose_secret(), "api-from-aws");
    assert_eq!(s.jwt.expose_secret(), "jwt-from-aws");
    assert_eq!(s.db_password.expose_secret(), "db-from-vault");
    assert_eq!(*s.db_port.expose_secret(), 5432);

    let aws_counts = p.aws_proxy.counts();
    let vault_counts = p.vault_proxy.counts();
    println!("one load on two backends: {elapsed:?}; aws {aws_counts:?}; vault {vault_counts:?}");
    assert_eq!(
        p.aws_proxy.count_of("secretsmanager.BatchGetSecretValue"),
        1,
        "{aws_counts:?}"
    );
    assert_eq!(p.aws_proxy.count(), 1, "nothing but one batch on AWS: {aws_counts:?}");
    assert_eq!(
        p.vault_proxy.count_of("GET /v1/secret/data/svc/db"),
        1,
        "{vault_counts:?}"
    );
    assert_eq!(
        p.vault_proxy.count(),
        1,
        "nothing but one read on Vault: {vault_counts:?}"
    );
    assert!(
        elapsed < delay * 2 - Duration::from_millis(300),
        "the two backends were not fetched concurrently: {elapsed:?} for two delays of {delay:?}"
    );

    let prov = &loaded.provenance;
    println!("{prov}");
    for (field, backend, location) in [
        ("api_key", "AWS Secrets Manager", "secret svc/api key key"),
        ("jwt", "AWS Secrets Manager", "secret svc/jwt"),
        ("db_password", "Vault", "secret svc/db key password"),
        ("db_port", "Vault", "secret svc/db key port"),
    ] {
        let origin = prov.get(field).unwrap();
        assert_eq!(origin.layer, Some(Layer::Backend), "{field}");
        assert!(origin.source.contains(backend), "{field}: {origin:?}");
        assert_eq!(origin.location, location, "{field}");
        assert!(origin.version.is_some(), "{field}: {origin:?}");
    }
    // The Vault origin names the address it was read from, not AWS's.
    assert!(prov
        .get("db_password")
        .unwrap()
        .source
        .contains(&p.vault_proxy.url()[7..]));
}

/// Vault down: its fields follow the fallback rules one by one (env wins with a warning; without env,
/// one error lists exactly those fields) while the AWS fields load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_second_backend_falls_back_per_field() {
    let p = peers().await;
    let dead = format!("http://127.0.0.1:{}", skm_testing::free_port());
    let down = vault(&dead, "t").await;

    // Every routed field has an env value: the load succeeds, AWS from AWS, Vault's fields from env.
    let env = [("DB_PASSWORD", "db-from-env"), ("DB_PORT", "6543")];
    let loaded = loader(&env)
        .backend(p.aws.clone())
        .with_backend("vault", down.clone())
        .load_report::<Service>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.value.api_key.expose_secret(), "api-from-aws");
    assert_eq!(loaded.value.db_password.expose_secret(), "db-from-env");
    assert_eq!(*loaded.value.db_port.expose_secret(), 6543);
    let prov = &loaded.provenance;
    assert_eq!(prov.get("api_key").unwrap().layer, Some(Layer::Backend));
    assert_eq!(prov.get("db_password").unwrap().layer, Some(Layer::Env));
    assert_eq!(prov.get("db_port").unwrap().layer, Some(Layer::Env));
    assert_eq!(prov.warnings.len(), 2, "{:?}", prov.warnings);
    assert!(
        prov.warnings.iter().all(|w| w.contains("unavailable")),
        "{:?}",
        prov.warnings
    );

    // One routed field without env: one error, naming only it; the others resolve.
    let e = loader(&[("DB_PASSWORD", "db-from-env")])
        .backend(p.aws.clone())
        .with_backend("vault", down.clone())
        .load::<Service>()
        .await
        .map(|_| ())
        .unwrap_err();
    let errors = load_error(e);
    let failed: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(failed, ["db_port"]);
    assert_eq!(errors[0].reason, FieldProblem::Backend(FailureKind::Unavailable));

    // Strict: an outage is an error even where env has the value, for each routed field, and only those.
    let e = loader(&env)
        .backend(p.aws.clone())
        .with_backend("vault", down)
        .strict(true)
        .load::<Service>()
        .await
        .map(|_| ())
        .unwrap_err();
    let errors = load_error(e);
    let failed: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(failed, ["db_password", "db_port"]);

    // Denied access on Vault is a configuration error, not an outage: env does not hide it, unless allowed.
    let denied = vault(&p.bao.addr(), "not-a-token").await;
    let denied_loader = loader(&env).backend(p.aws.clone()).with_backend("vault", denied);
    let errors = load_error(denied_loader.load::<Service>().await.map(|_| ()).unwrap_err());
    assert!(
        errors
            .iter()
            .all(|e| e.reason == FieldProblem::Backend(FailureKind::Forbidden)),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 2);
    let allowed = denied_loader.allow_fallback_on(FailureKind::Forbidden);
    let s = allowed.load::<Service>().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.db_password.expose_secret(), "db-from-env");
    assert_eq!(s.api_key.expose_secret(), "api-from-aws");
}

/// A field routed to a backend nobody configured fails with the others, naming the field, the backend and
/// the signal that would configure it; with no backend at all, routed fields fall through like the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_an_unconfigured_backend_is_a_clear_error() {
    let p = peers().await;
    let env = [("DB_PASSWORD", "db-from-env"), ("DB_PORT", "6543")];
    let e = loader(&env)
        .backend(p.aws.clone())
        .load::<Service>()
        .await
        .map(|_| ())
        .unwrap_err();
    let shown = e.to_string();
    println!("{shown}");
    let errors = load_error(e);
    let failed: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        failed,
        ["db_password", "db_port"],
        "env does not hide a missing backend"
    );
    for needle in [
        "db_password",
        "db_port",
        "backend `vault`",
        "VAULT_ADDR",
        "with_backend",
    ] {
        assert!(shown.contains(needle), "{needle} missing from: {shown}");
    }
    assert!(!shown.contains("db-from-env"));
    assert_eq!(p.vault_proxy.count(), 0);

    // No backend at all (local work): every field, routed or not, comes from env.
    let env = [
        ("API_KEY", "a"),
        ("JWT_SECRET", "j"),
        ("DB_PASSWORD", "d"),
        ("DB_PORT", "1"),
    ];
    let loaded = loader(&env)
        .load_report::<Service>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.value.db_password.expose_secret(), "d");
    assert!(
        loaded.provenance.warnings.is_empty(),
        "{:?}",
        loaded.provenance.warnings
    );
}

/// Hot reload goes through the same pipeline: a change on either backend is picked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_refreshes_both_backends() {
    let p = peers().await;
    let ttl = Duration::from_millis(300);
    let mut watch = loader(&[])
        .backend(p.aws.clone())
        .with_backend("vault", p.vault.clone())
        .watch::<Service>(skm::WatchOptions::ttl(ttl))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(watch.latest().db_password.expose_secret(), "db-from-vault");

    write(&p.bao, "svc/db", json!({ "password": "db-v2", "port": "5432" })).await;
    tokio::time::timeout(ttl * 10, watch.changed())
        .await
        .expect("the Vault change within the TTL")
        .unwrap();
    assert_eq!(watch.latest().db_password.expose_secret(), "db-v2");
    assert_eq!(watch.latest().api_key.expose_secret(), "api-from-aws");

    p.aws
        .put(PutRequest::new("svc/api", SecretValue::map([("key", "api-v2")])))
        .await
        .unwrap();
    tokio::time::timeout(ttl * 10, watch.changed())
        .await
        .expect("the AWS change within the TTL")
        .unwrap();
    assert_eq!(watch.latest().api_key.expose_secret(), "api-v2");
    assert_eq!(watch.latest().db_password.expose_secret(), "db-v2");
}

/// Routing without peers: aliases, a routed backend beside none by default, and what `Debug` shows.
#[tokio::test]
async fn routes_use_canonical_names_and_memory_backends() {
    let aws = MemoryBackend::new().named("aws-memory");
    aws.insert("svc/api", SecretValue::map([("key", "a")]));
    aws.insert("svc/jwt", SecretValue::text("j"));
    let bao = MemoryBackend::new().named("bao-memory");
    bao.insert("svc/db", SecretValue::map([("password", "p"), ("port", "2")]));
    let loader = loader(&[]).backend(aws.clone()).with_backend("OpenBao", bao.clone());
    assert!(format!("{loader:?}").contains("\"vault\""));
    let loaded = loader.load_report::<Service>().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.provenance.get("db_port").unwrap().source, "bao-memory");
    assert_eq!(loaded.provenance.get("jwt").unwrap().source, "aws-memory");
    assert_eq!((aws.fetch_calls(), bao.fetch_calls()), (1, 1), "one call per backend");

    // The backend layer off: no backend is asked, routed or not.
    let env = [
        ("API_KEY", "a"),
        ("JWT_SECRET", "j"),
        ("DB_PASSWORD", "d"),
        ("DB_PORT", "1"),
    ];
    let off = super_loader(&env, &aws, &bao).precedence([Layer::Env]);
    off.load::<Service>().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((aws.fetch_calls(), bao.fetch_calls()), (1, 1), "one call per backend");
}

fn super_loader(env: &[(&str, &str)], aws: &MemoryBackend, bao: &MemoryBackend) -> Loader {
    loader(env).backend(aws.clone()).with_backend("vault", bao.clone())
}

// ---- The README's "Mixed backends" example, run in a child process with only the peers' variables. ----

// README begin
use skm::{Loader, SecretString, Secrets};

#[derive(Secrets)]
struct Checkout {
    // No `backend`: the default backend (AWS, chosen by AWS_REGION).
    #[secret(path = "checkout/stripe", key = "api_key", env = "STRIPE_API_KEY")]
    stripe_key: SecretString,
    // Routed to Vault (configured by VAULT_ADDR and VAULT_TOKEN).
    #[secret(path = "checkout/db", key = "password", env = "DB_PASSWORD", backend = "vault")]
    db_password: SecretString,
}

async fn checkout() -> Result<Checkout, skm::Error> {
    let loaded = Loader::from_env().await?.load_report::<Checkout>().await?;
    println!("{}", loaded.provenance); // stripe_key from AWS, db_password from Vault; no values
    Ok(loaded.value)
}
// README end

/// Runs only when `SKM_MIXED_CHILD` is set, as a child process started by the tests below.
#[tokio::test]
async fn child_process_entry() {
    let Ok(mode) = std::env::var("SKM_MIXED_CHILD") else {
        return;
    };
    match mode.as_str() {
        "readme" => {
            let c = checkout()
                .await
                .unwrap_or_else(|e| panic!("README example failed: {e}"));
            assert_eq!(c.stripe_key.expose_secret(), "sk-from-aws");
            assert_eq!(c.db_password.expose_secret(), "db-from-vault");
        }
        "readme-provenance" => {
            let loaded = Loader::from_env()
                .await
                .unwrap()
                .load_report::<Checkout>()
                .await
                .unwrap();
            assert!(loaded.provenance.get("stripe_key").unwrap().source.contains("AWS"));
            assert!(loaded.provenance.get("db_password").unwrap().source.contains("Vault"));
        }
        other => panic!("unknown SKM_MIXED_CHILD mode {other}"),
    }
    println!("CHILD-OK {mode}");
}

async fn run_child(mode: &str, env: &[(&str, String)]) -> String {
    let dir = std::env::temp_dir().join(format!("skm-mixed-child-{}-{mode}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "mixed::child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        // No `.env` file, no local store and no AWS profile files can be found from here.
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("SKM_MIXED_CHILD", mode)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && stdout.contains(&format!("CHILD-OK {mode}")),
        "child `{mode}` failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    stdout
}

/// The README example, run with `AWS_REGION` and `VAULT_ADDR` both set: AWS is the default backend and
/// Vault, detected beside it, serves the routed field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_example_runs_with_both_backends_detected() {
    no_instance_metadata();
    let moto = Moto::start().await;
    let bao = Bao::start().await;
    aws(&moto.endpoint())
        .await
        .put(PutRequest::new(
            "checkout/stripe",
            SecretValue::map([("api_key", "sk-from-aws")]),
        ))
        .await
        .unwrap();
    write(&bao, "checkout/db", json!({ "password": "db-from-vault" })).await;
    let env = [
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("VAULT_ADDR", bao.addr()),
        ("VAULT_TOKEN", bao.root_token().to_string()),
    ];
    let stdout = run_child("readme", &env).await;
    assert!(!stdout.contains("sk-from-aws") && !stdout.contains("db-from-vault"));
    run_child("readme-provenance", &env).await;
}

/// The README's block is the example above, line for line.
#[test]
fn the_readme_block_is_the_tested_example() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Mixed backends")
        .nth(1)
        .expect("README has the Mixed backends section");
    let block = section.split("```rust\n").nth(1).unwrap().split("```").next().unwrap();
    let source = include_str!("mixed.rs");
    let example = source
        .split("// README begin\n")
        .nth(1)
        .and_then(|s| s.split("// README end").next())
        .expect("the example between the markers");
    assert_eq!(block.trim_end(), example.trim_end());
}
