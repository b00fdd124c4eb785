//! `ref+` references in an app's TOML (`skm::figment::refs`) resolved from real peers, each written by a
//! third-party client: Vault (an OpenBao dev server, `bao kv put`), Parameter Store (moto, boto3) and a SOPS
//! file (the `sops` tool), in one wave. The references are written as vals writes them
//! (`ref+vault://secret/db#url`, mount first) and as skm declares paths (`ref+openbao://svc/db#port`).
#![cfg(all(feature = "vault", feature = "ssm", feature = "sops"))]

use std::time::{Duration, Instant};

use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Deserialize;
use skm::backend::sops::SopsBackend;
use skm::backend::ssm::SsmBackend;
use skm::backend::vault::{KvVersion, VaultBuilder};
use skm::figment::refs;
use skm::Loader;
use skm_testing::{AgeKey, Bao, Moto, Proxy, Sops};

use crate::support::no_instance_metadata;

const DB_URL: &str = "SENTINEL-refs-postgres://app:pw@db/app";
const API_KEY: &str = "SENTINEL-refs-api-key-51c0";
const TOKEN: &str = "SENTINEL-refs-token-e2a9";
const STRIPE: &str = "SENTINEL-refs-stripe-0b7d";

const TOML: &str = r#"
name = "app"
port = 8080
# vals's form: the KV mount, then the path.
database_url = "ref+vault://secret/svc/db#url"
# skm's declaration form of the same secret: one read for both.
database_port = "ref+openbao://svc/db#port"
api_key = "ref+ssm:///svc/api#key"
token = "ref+ssm://svc/token"
stripe = "ref+sops://app.yaml#stripe.key"
# vals's nested key: the same value of the same file, one read.
stripe_nested = "ref+sops://app.yaml#/stripe/key"
"#;

const SEED_SSM: &str = r#"
import json, os, boto3
ssm = boto3.client("ssm", endpoint_url=os.environ["MOTO"], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
ssm.put_parameter(Name="/svc/api", Type="SecureString",
                  Value=json.dumps({"key": "SENTINEL-refs-api-key-51c0"}))
ssm.put_parameter(Name="/svc/token", Type="SecureString", Value="SENTINEL-refs-token-e2a9")
print("written")
"#;

/// A TOML string as a figment source, all in the default profile.
struct Toml(&'static str);

impl Provider for Toml {
    fn metadata(&self) -> Metadata {
        Metadata::named("TOML file")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict: Dict = toml::from_str(self.0).map_err(|e| figment::Error::from(e.to_string()))?;
        Ok(Profile::Default.collect(dict))
    }
}

#[derive(Debug, Deserialize)]
struct Config {
    name: String,
    port: u16,
    database_url: String,
    database_port: u16,
    api_key: String,
    token: String,
    stripe: String,
    stripe_nested: String,
}

#[derive(Debug, Deserialize)]
struct WrongType {
    #[allow(dead_code)]
    api_key: u32,
}

fn assert_no_value(what: &str, text: &str) {
    assert!(!text.contains("SENTINEL"), "a value leaked into {what}: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toml_loads_references_from_vault_parameter_store_and_sops_in_one_wave() {
    no_instance_metadata();
    // Vault, written by the bao CLI.
    let bao = Bao::start().await;
    let url = format!("url={DB_URL}");
    bao.bao(&["kv", "put", "secret/svc/db", &url, "port=5432"]).await;
    // Parameter Store, written by boto3.
    let moto = Moto::start().await;
    assert!(crate::ssm::boto3(&moto, SEED_SSM).await.contains("written"));
    // A SOPS file, written by the sops tool.
    let dir = tempfile::tempdir().unwrap();
    let key = AgeKey::generate();
    let key_file = key.write(&dir.path().join("key.txt"));
    let plain = format!("stripe:\n  key: {STRIPE}\n");
    Sops::locate().encrypt(&dir.path().join("secrets"), "app.yaml", &plain, &key.recipient, &[]);

    let vault_proxy = Proxy::start(&bao.addr()).await;
    let ssm_proxy = Proxy::start(&moto.endpoint()).await;
    let vault = VaultBuilder::new(vault_proxy.url())
        .token(bao.root_token())
        .kv_version(KvVersion::V2)
        .build()
        .await
        .unwrap();
    let ssm = SsmBackend::builder()
        .region("us-east-1")
        .endpoint_url(ssm_proxy.url())
        .static_credentials("test", "test")
        .build()
        .await
        .unwrap();
    let sops = SopsBackend::from_lookup(&|_| None)
        .unwrap()
        .in_dir(dir.path().join("secrets"))
        .age_key_file(key_file);
    let loader = Loader::new()
        .no_dotenv()
        .no_secrets_dir()
        .env_vars(Vec::<(String, String)>::new())
        .with_backend("vault", vault)
        .with_backend("ssm", ssm)
        .with_backend("sops", sops);
    vault_proxy.clear();
    ssm_proxy.clear();
    // Each peer answers after a delay: asked one after the other, the resolution would take both.
    let delay = Duration::from_millis(1500);
    vault_proxy.set_latency(delay);
    ssm_proxy.set_latency(delay);

    let figment = Figment::from(Toml(TOML));
    let started = Instant::now();
    let resolved = refs::resolve(&figment, &loader).await.unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    let config: Config = resolved.extract_lossy().unwrap();
    assert_eq!((config.name.as_str(), config.port), ("app", 8080));
    assert_eq!((config.database_url.as_str(), config.database_port), (DB_URL, 5432));
    assert_eq!(config.api_key, API_KEY);
    assert_eq!(config.token, TOKEN);
    assert_eq!(config.stripe, STRIPE);
    assert_eq!(config.stripe_nested, STRIPE);

    // One wave: one read of the Vault path (both forms name it), one GetParameters for both parameters, at
    // the same time.
    println!(
        "resolved in {elapsed:?}; vault {:?}; ssm {:?}",
        vault_proxy.counts(),
        ssm_proxy.counts()
    );
    assert_eq!(
        vault_proxy.count_of("GET /v1/secret/data/svc/db"),
        1,
        "{:?}",
        vault_proxy.counts()
    );
    assert_eq!(vault_proxy.count(), 1, "{:?}", vault_proxy.counts());
    assert_eq!(
        ssm_proxy.count_of("AmazonSSM.GetParameters"),
        1,
        "{:?}",
        ssm_proxy.counts()
    );
    assert_eq!(ssm_proxy.count(), 1, "{:?}", ssm_proxy.counts());
    assert!(
        elapsed < delay * 2 - Duration::from_millis(300),
        "the backends were not asked concurrently: {elapsed:?} for two delays of {delay:?}"
    );

    let origin = |key: &str| resolved.provenance().get(key).unwrap().to_string();
    assert_eq!(origin("database_url"), "vault: secret svc/db key url");
    assert_eq!(origin("database_port"), "vault: secret svc/db key port");
    assert_eq!(origin("api_key"), "ssm: secret /svc/api key key");
    assert_eq!(origin("stripe"), "sops: file app.yaml key stripe.key");
    assert_eq!(origin("stripe_nested"), "sops: file app.yaml key stripe/key");

    // Values never reach figment's Debug, Resolved's, the provenance's, or an extraction error's.
    assert_no_value("the figment's Debug", &format!("{figment:?} {figment:#?}"));
    assert_no_value("Resolved's Debug", &format!("{resolved:?} {resolved:#?}"));
    assert_no_value("the provenance", &format!("{:?}", resolved.provenance()));
    let e = resolved.extract::<WrongType>().unwrap_err();
    let text = format!("{e}\n{e:?}\n{e:#?}");
    assert_no_value("a type error", &text);
    assert!(text.contains(refs::HIDDEN), "{text}");

    // A missing parameter and a missing Vault key are reported together, by key and reference.
    let broken = Figment::from(Toml(
        "a = \"ref+ssm:///svc/gone\"\nb = \"ref+vault://secret/svc/db#nope\"\nc = \"ref+sops://app.yaml#stripe.key\"\n",
    ));
    let e = refs::resolve(&broken, &loader).await.unwrap_err();
    let text = format!("{e}\n{e:?}");
    assert_no_value("a failed resolution", &text);
    for expected in ["ref+ssm:///svc/gone", "ref+vault://secret/svc/db#nope", "2 of 3"] {
        assert!(text.contains(expected), "{expected}: {text}");
    }

    // A pinned version (vals's `?version=`) beside the current one: the bao CLI writes version 2.
    bao.bao(&["kv", "put", "secret/svc/db", "url=SENTINEL-refs-url-v2", "port=5433"])
        .await;
    let pinned = Figment::from(Toml(
        "now = \"ref+vault://secret/svc/db#url\"\nthen = \"ref+vault://secret/svc/db?version=1#url\"\n\
         api = \"ref+ssm:///svc/api?version=1#key\"\n",
    ));
    vault_proxy.clear();
    let resolved = refs::resolve(&pinned, &loader).await.unwrap_or_else(|e| panic!("{e}"));
    let [now, then, api]: [String; 3] = ["now", "then", "api"].map(|k| resolved.extract_inner(k).unwrap());
    assert_eq!(
        (now.as_str(), then.as_str(), api.as_str()),
        ("SENTINEL-refs-url-v2", DB_URL, API_KEY)
    );
    assert_eq!(resolved.provenance().get("then").unwrap().version.as_deref(), Some("1"));
    assert_eq!(vault_proxy.count(), 2, "{:?}", vault_proxy.counts());
}
