//! The Azure Key Vault backend against skm-testing's Key Vault server, with Microsoft's Python client
//! (`azure-keyvault-secrets`, `azure-identity`) writing what skm reads and reading what skm writes.
//!
//! Every test starts its own server. Process environment is never changed except `IDENTITY_ENDPOINT` /
//! `IDENTITY_HEADER`, which point the managed-identity step at a closed loopback port so that no test can
//! reach the instance-metadata address; tests that need other variables run this binary again as a child
//! process with exactly those variables (see `child_process_entry`).
#![cfg(feature = "azure")]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use skm::backend::azure::azure_core::time::OffsetDateTime;
use skm::backend::azure::azure_security_keyvault_secrets::models::{
    SecretAttributes, SecretClientUpdateSecretPropertiesOptions, SetSecretParameters, UpdateSecretPropertiesParameters,
};
use skm::backend::azure::{AzureBackend, AzureBackendBuilder};
use skm::backend::{
    AdminBackend, AdminErrorKind, Backend, DeleteMode, FailureKind, FetchRequest, PutRequest, SecretValue,
};
use skm::{ExposeSecret, FieldProblem, Loader, Rotating, SecretBox, SecretString, Secrets, VersionPin};
use skm_testing::{venv_bin, KeyVault, Proxy};

const SENTINEL: &str = "SENTINEL-azure-7d1e-do-not-leak";

use crate::support::no_instance_metadata;

async fn kv() -> KeyVault {
    no_instance_metadata();
    KeyVault::start().await
}

fn builder(kv: &KeyVault) -> AzureBackendBuilder {
    AzureBackend::builder()
        .vault_url(kv.url())
        .authority_host(kv.authority_host())
        .ca_cert(kv.ca_pem_path())
        .client_secret(kv.tenant_id(), kv.client_id(), kv.client_secret())
}

fn backend(kv: &KeyVault) -> AzureBackend {
    builder(kv).build().expect("backend")
}

fn loader(b: &AzureBackend) -> Loader {
    Loader::new()
        .backend(b.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

fn text(result: &skm::backend::FetchResult) -> String {
    match &result.as_ref().expect("found").value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

/// Runs Python with `client` (Microsoft's `SecretClient` for this server) defined, then `code`; returns stdout.
async fn python(kv: &KeyVault, code: &str) -> String {
    let prelude = r#"
import os, datetime
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient
url, ca = os.environ["KV_URL"], os.environ["KV_CA"]
cred = ClientSecretCredential(os.environ["KV_TENANT"], os.environ["KV_CLIENT"], os.environ["KV_SECRET"],
                              authority=url, disable_instance_discovery=True, connection_verify=ca)
client = SecretClient(url, cred, verify_challenge_resource=False, connection_verify=ca)
"#;
    let mut command = Command::new(venv_bin("python"));
    command
        .arg("-c")
        .arg(format!("{prelude}\n{code}"))
        .env("KV_URL", kv.url())
        .env("KV_TENANT", kv.tenant_id())
        .env("KV_CLIENT", kv.client_id())
        .env("KV_SECRET", kv.client_secret())
        .env("KV_CA", kv.ca_pem_path());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn conformance() {
    let kv = kv().await;
    let report = skm_runtime::conformance::run_all(Arc::new(backend(&kv)), "conformance").await;
    eprintln!("{report:?}");
    // Key Vault has no cheap version check and no check-and-set; the test server enforces no RBAC or quota.
    assert_eq!(
        report.unsupported_names(),
        ["current_versions", "check_and_set"],
        "{report:?}"
    );
}

#[derive(Secrets)]
struct Written {
    #[secret(path = "auth/jwt", key = "secret")]
    jwt: SecretString,
    #[secret(path = "database/connection", key = "port")]
    port: SecretBox<u16>,
    #[secret(path = "plain/value")]
    plain: SecretString,
}

#[tokio::test]
async fn microsofts_client_writes_and_skm_reads() {
    let kv = kv().await;
    python(
        &kv,
        r#"
client.set_secret("auth-jwt", '{"secret": "from-python"}', content_type="application/json")
client.set_secret("database-connection", '{"url": "postgres://x", "port": 5432}')
client.set_secret("plain-value", "plain from python")
"#,
    )
    .await;
    let b = backend(&kv);
    let loaded = loader(&b)
        .load_report::<Written>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.value.jwt.expose_secret(), "from-python");
    assert_eq!(*loaded.value.port.expose_secret(), 5432);
    assert_eq!(loaded.value.plain.expose_secret(), "plain from python");
    // Provenance names the vault, the mapped name next to the declared path, and the version read.
    let origin = loaded.provenance.get("jwt").unwrap();
    let version = origin.version.clone().expect("a version");
    assert_eq!(
        origin.to_string(),
        format!(
            "Azure Key Vault {}: secret auth-jwt (path auth/jwt) version {version} key secret",
            kv.url()
        )
    );
    let origin = loaded.provenance.get("plain").unwrap();
    assert_eq!(
        origin.location,
        format!(
            "secret plain-value (path plain/value) version {}",
            origin.version.as_deref().unwrap()
        )
    );
}

#[tokio::test]
async fn skm_writes_and_microsofts_client_reads() {
    let kv = kv().await;
    let b = backend(&kv);
    let mut put = PutRequest::new("auth/jwt", SecretValue::map([("secret", "from-skm")]));
    put.tags = vec![("team".into(), "payments".into())];
    put.description = Some("JWT signing key".into());
    b.put(put).await.expect("put");
    b.put(PutRequest::new("bin/cert", SecretValue::binary(vec![0, 1, 254, 255])))
        .await
        .expect("put binary");
    let out = python(
        &kv,
        r#"
import json, base64
s = client.get_secret("auth-jwt")
print(json.loads(s.value)["secret"], s.properties.content_type, s.properties.tags["team"], s.properties.tags["description"], s.properties.tags["skm-path"])
b = client.get_secret("bin-cert")
print(list(base64.b64decode(b.value)), b.properties.content_type)
"#,
    )
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from-skm application/json payments JWT signing key auth/jwt");
    assert_eq!(lines[1], "[0, 1, 254, 255] application/octet-stream; encoding=base64");
    // And skm reads its binary back as bytes.
    let r = b.fetch(&[FetchRequest::current("bin/cert")]).await;
    assert!(
        matches!(&r[0].as_ref().unwrap().value, SecretValue::Binary(v) if v.expose_secret() == &vec![0, 1, 254, 255])
    );
}

// Only whether it loads matters.
#[allow(dead_code)]
#[derive(Secrets)]
struct Colliding {
    #[secret(path = "auth/jwt")]
    a: SecretString,
    #[secret(path = "auth-jwt")]
    b: SecretString,
    #[secret(path = "db/main_password")]
    c: SecretString,
}

#[tokio::test]
async fn names_map_slashes_and_refuse_collisions_and_bad_characters() {
    let kv = kv().await;
    let b = backend(&kv);
    b.put(PutRequest::new("auth/jwt", SecretValue::text(SENTINEL)))
        .await
        .unwrap();
    assert_eq!(kv.secret_names(), vec!["auth-jwt".to_string()]);
    let e = loader(&b)
        .load::<Colliding>()
        .await
        .err()
        .expect("collision and bad name");
    let text = format!("{e}");
    assert!(
        text.contains("paths `auth-jwt` and `auth/jwt` map to the same Azure Key Vault secret name `auth-jwt`"),
        "{text}"
    );
    assert!(text.contains("db/main_password") && text.contains("`_`"), "{text}");
    assert!(!format!("{e} {e:?}").contains(SENTINEL), "value leaked: {e}");
    assert_eq!(e.as_load().unwrap().fields.len(), 3, "{e}");
    // No request was made for a bad or colliding name.
    assert_eq!(kv.count_of("GET /secrets/auth-jwt/"), 0);
    let e = b.put(PutRequest::new("a.b", SecretValue::text("x"))).await.unwrap_err();
    assert!(e.detail.contains("`.`"), "{e}");
}

#[derive(Secrets)]
struct Keys {
    #[secret(path = "rot/key")]
    keys: Rotating<SecretString>,
}

#[tokio::test]
async fn version_pins_and_rotating_skip_disabled_versions() {
    let kv = kv().await;
    let b = backend(&kv);
    let v1 = b
        .put(PutRequest::new("rot/key", SecretValue::text("one")))
        .await
        .unwrap();
    kv.advance_clock(Duration::from_secs(10));
    let v2 = b
        .put(PutRequest::new("rot/key", SecretValue::text("two")))
        .await
        .unwrap();
    kv.advance_clock(Duration::from_secs(10));
    b.put(PutRequest::new("rot/key", SecretValue::text("three")))
        .await
        .unwrap();

    let pin = |id: &str| FetchRequest {
        path: "rot/key".into(),
        version: VersionPin::id(id.to_string()),
    };
    let r = b.fetch(&[pin(&v1), FetchRequest::current("rot/key")]).await;
    assert_eq!(text(&r[0]), "one");
    assert_eq!(text(&r[1]), "three");
    assert_eq!(r[0].as_ref().unwrap().version.as_deref(), Some(v1.as_str()));

    let keys = loader(&b).load::<Keys>().await.unwrap_or_else(|e| panic!("{e}")).keys;
    assert_eq!(keys.current().expose_secret(), "three");
    assert_eq!(keys.previous().unwrap().expose_secret(), "two");

    // Disable v2: the previous becomes v1, the newest *enabled* version before the current one.
    let params: UpdateSecretPropertiesParameters = UpdateSecretPropertiesParameters {
        secret_attributes: Some(SecretAttributes {
            enabled: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    b.client()
        .update_secret_properties(
            "rot-key",
            params.try_into().unwrap(),
            Some(SecretClientUpdateSecretPropertiesOptions {
                secret_version: Some(v2.clone()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let keys = loader(&b).load::<Keys>().await.unwrap_or_else(|e| panic!("{e}")).keys;
    assert_eq!(keys.previous().unwrap().expose_secret(), "one");

    // A pinned disabled version is an error that says so; staging labels do not exist in Key Vault.
    let r = b
        .fetch(&[
            pin(&v2),
            FetchRequest {
                path: "rot/key".into(),
                version: VersionPin::stage("AWSPREVIOUS"),
            },
        ])
        .await;
    let e = r[0].as_ref().unwrap_err();
    assert!(e.kind == FailureKind::Invalid && e.detail.contains("disabled"), "{e}");
    assert_eq!(r[1].as_ref().unwrap_err().kind, FailureKind::Invalid);
}

// Only whether it loads matters.
#[allow(dead_code)]
#[derive(Secrets)]
struct One {
    #[secret(path = "app/key", env = "APP_KEY")]
    key: SecretString,
}

async fn set_with(b: &AzureBackend, name: &str, attributes: SecretAttributes) {
    let params = SetSecretParameters {
        value: Some(SENTINEL.into()),
        secret_attributes: Some(attributes),
        ..Default::default()
    };
    b.client()
        .set_secret(name, params.try_into().unwrap(), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn disabled_secret_is_an_error_that_says_so_and_does_not_fall_back() {
    let kv = kv().await;
    let b = backend(&kv);
    set_with(
        &b,
        "app-key",
        SecretAttributes {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .await;
    let e = loader(&b)
        .env_vars([("APP_KEY", "from-env")])
        .load::<One>()
        .await
        .err()
        .expect("a disabled secret must not load, nor fall back to env");
    assert!(format!("{e}").contains("disabled"), "{e}");
    assert!(
        format!("{e}").contains("app/key") && format!("{e}").contains("app-key"),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains(SENTINEL));
}

#[tokio::test]
async fn expired_not_yet_valid_and_expiring_soon() {
    let kv = kv().await;
    let b = backend(&kv);
    let now = OffsetDateTime::now_utc();
    set_with(
        &b,
        "old",
        SecretAttributes {
            expires: Some(now - time_days(1)),
            ..Default::default()
        },
    )
    .await;
    set_with(
        &b,
        "later",
        SecretAttributes {
            not_before: Some(now + time_days(3)),
            ..Default::default()
        },
    )
    .await;
    set_with(
        &b,
        "soon",
        SecretAttributes {
            expires: Some(now + time_days(2)),
            ..Default::default()
        },
    )
    .await;
    set_with(
        &b,
        "fine",
        SecretAttributes {
            expires: Some(now + time_days(30)),
            ..Default::default()
        },
    )
    .await;

    let (logs, _guard) = skm_testing::logs::capture();
    let r = b
        .fetch(&[
            FetchRequest::current("old"),
            FetchRequest::current("later"),
            FetchRequest::current("soon"),
            FetchRequest::current("fine"),
        ])
        .await;
    let year = (now.year()).to_string();
    let old = r[0].as_ref().unwrap_err();
    assert!(
        old.kind == FailureKind::Invalid && old.detail.contains("expired on") && old.detail.contains(&year),
        "{old}"
    );
    let later = r[1].as_ref().unwrap_err();
    assert!(
        later.detail.contains("not valid before") && later.detail.contains(&year),
        "{later}"
    );
    assert_eq!(text(&r[2]), SENTINEL);
    assert_eq!(text(&r[3]), SENTINEL);
    let logs = logs.text();
    assert!(
        logs.contains("secret `soon` (Key Vault name `soon`) expires on"),
        "{logs}"
    );
    assert!(logs.contains("expiring_soon"), "no audit event: {logs}");
    assert!(!logs.contains("`fine`"), "{logs}");
    assert!(!logs.contains(SENTINEL), "value leaked to the log");
}

#[derive(Secrets)]
struct Expiring {
    #[secret(path = "app/soon")]
    soon: SecretString,
    #[secret(path = "app/fine", key = "k")]
    fine: SecretString,
}

#[tokio::test]
async fn provenance_shows_the_mapped_name_and_an_expiry_within_seven_days() {
    let kv = kv().await;
    let b = backend(&kv);
    let now = OffsetDateTime::now_utc();
    let soon = now + time_days(2);
    set_with(
        &b,
        "app-soon",
        SecretAttributes {
            expires: Some(soon),
            ..Default::default()
        },
    )
    .await;
    let params = SetSecretParameters {
        value: Some(format!("{{\"k\": \"{SENTINEL}\"}}")),
        secret_attributes: Some(SecretAttributes {
            expires: Some(now + time_days(30)),
            ..Default::default()
        }),
        ..Default::default()
    };
    b.client()
        .set_secret("app-fine", params.try_into().unwrap(), None)
        .await
        .unwrap();
    let loaded = loader(&b)
        .load_report::<Expiring>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.value.soon.expose_secret(), SENTINEL);
    assert_eq!(loaded.value.fine.expose_secret(), SENTINEL);
    let origin = loaded.provenance.get("soon").unwrap();
    let expected = format!(
        "Azure Key Vault {}: secret app-soon (path app/soon) version {} (expires {}, within 7 days: rotate it)",
        kv.url(),
        origin.version.as_deref().unwrap(),
        skm::backend::azure::azure_core::time::to_rfc3339(&soon.replace_nanosecond(0).unwrap()),
    );
    assert_eq!(origin.to_string(), expected);
    // Thirty days away: no note; the key follows the name.
    let fine = loaded.provenance.get("fine").unwrap();
    assert_eq!(
        fine.location,
        format!(
            "secret app-fine (path app/fine) version {} key k",
            fine.version.as_deref().unwrap()
        )
    );
    let shown = loaded.provenance.to_string();
    assert!(
        shown.contains("within 7 days: rotate it") && !shown.contains(SENTINEL),
        "{shown}"
    );
}

fn time_days(n: i64) -> skm::backend::azure::azure_core::time::Duration {
    skm::backend::azure::azure_core::time::Duration::days(n)
}

#[tokio::test]
async fn credential_chain_lists_what_each_step_said() {
    let kv = kv().await;
    let url = kv.url();
    let ca = kv.ca_pem_path().display().to_string();
    let authority = kv.authority_host();
    let vars = move |name: &str| match name {
        "AZURE_KEYVAULT_URL" => Some(url.clone()),
        "SKM_AZURE_CA_CERT" => Some(ca.clone()),
        "AZURE_AUTHORITY_HOST" => Some(authority.clone()),
        _ => None,
    };
    let b = AzureBackendBuilder::from_vars(&vars).unwrap().build().unwrap();
    let r = b.fetch(&[FetchRequest::current("a"), FetchRequest::current("b")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert_eq!(e.kind, FailureKind::Forbidden, "{e}");
    for step in [
        "environment client secret (env): AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET not set",
        "workload identity (workload): AZURE_FEDERATED_TOKEN_FILE not set",
        "managed identity (managed):",
        "Azure CLI / Azure Developer CLI (cli):",
    ] {
        assert!(e.detail.contains(step), "missing `{step}` in:\n{e}");
    }
    assert_eq!(
        r[1].as_ref().unwrap_err(),
        e,
        "the chain is not run again for every secret"
    );
    assert_eq!(kv.tokens_issued(), 0);

    // A forced step, with a wrong secret: Entra's answer reaches the user.
    let url = kv.url();
    let ca = kv.ca_pem_path().display().to_string();
    let authority = kv.authority_host();
    let (tenant, client) = (kv.tenant_id().to_string(), kv.client_id().to_string());
    let vars = move |name: &str| match name {
        "AZURE_KEYVAULT_URL" => Some(url.clone()),
        "SKM_AZURE_CA_CERT" => Some(ca.clone()),
        "AZURE_AUTHORITY_HOST" => Some(authority.clone()),
        "AZURE_TENANT_ID" => Some(tenant.clone()),
        "AZURE_CLIENT_ID" => Some(client.clone()),
        "AZURE_CLIENT_SECRET" => Some(SENTINEL.into()),
        "SKM_AZURE_CREDENTIAL" => Some("env".into()),
        _ => None,
    };
    let b = AzureBackendBuilder::from_vars(&vars).unwrap().build().unwrap();
    let r = b.fetch(&[FetchRequest::current("a")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert!(e.detail.contains("AADSTS7000215"), "{e}");
    assert!(
        !e.detail.contains("workload identity"),
        "only the forced step runs: {e}"
    );
    assert!(!format!("{e:?} {b:?}").contains(SENTINEL), "client secret leaked");

    let bad = |name: &str| (name == "SKM_AZURE_CREDENTIAL").then(|| "password".to_string());
    assert!(AzureBackendBuilder::from_vars(&bad).is_err());
}

#[tokio::test]
async fn untrusted_certificate_and_plain_http_fail_fast() {
    let kv = kv().await;
    let started = std::time::Instant::now();
    let b = AzureBackend::builder()
        .vault_url(kv.url())
        .authority_host(kv.authority_host())
        .client_secret(kv.tenant_id(), kv.client_id(), kv.client_secret())
        .build()
        .unwrap();
    let r = b.fetch(&[FetchRequest::current("a")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
    assert!(e.detail.to_lowercase().contains("certificate"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let e = AzureBackend::builder().vault_url(kv.plain_url()).build().unwrap_err();
    assert!(e.to_string().contains("https://"), "{e}");
    let e = builder(&kv).ca_cert("/nonexistent/ca.pem").build().unwrap_err();
    assert!(
        e.to_string().contains("SKM_AZURE_CA_CERT") && e.to_string().contains("/nonexistent/ca.pem"),
        "{e}"
    );
    let e = AzureBackend::builder().build().unwrap_err();
    assert!(e.to_string().contains("AZURE_KEYVAULT_URL"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_secrets_are_fifty_concurrent_gets() {
    let kv = kv().await;
    let proxy = Proxy::start(&kv.plain_url()).await;
    let b = backend(&kv);
    let requests: Vec<FetchRequest> = (0..50).map(|i| FetchRequest::current(format!("many/{i:02}"))).collect();
    for r in &requests {
        b.put(PutRequest::new(&r.path, SecretValue::text("v"))).await.unwrap();
    }
    // Learn the challenge and get a token, then measure a load.
    b.fetch(&requests[..1]).await;
    kv.forward_to(Some(&proxy.url()));
    proxy.set_latency(Duration::from_millis(20));
    proxy.clear();
    let results = b.fetch(&requests).await;
    assert!(results.iter().all(|r| r.is_ok()));
    assert_eq!(proxy.count(), 50, "{:?}", proxy.counts());
    for i in 0..50 {
        assert_eq!(proxy.count_of(&format!("GET /secrets/many-{i:02}/")), 1);
    }
    // 100 in flight (the default) sends the 50 reads at once: more than the old default of 32 were in flight.
    assert!(proxy.max_in_flight() > 32, "max in flight {}", proxy.max_in_flight());
    assert!(proxy.max_in_flight() <= 50, "max in flight {}", proxy.max_in_flight());
}

#[tokio::test]
async fn admin_round_trip_with_soft_delete_recover_and_purge() {
    let kv = kv().await;
    let b = backend(&kv);
    let v1 = b
        .put(PutRequest::new("svc/token", SecretValue::text("one")))
        .await
        .unwrap();
    let v2 = b
        .put(PutRequest::new("svc/token", SecretValue::text("two")))
        .await
        .unwrap();
    let versions = b.versions("svc/token").await.unwrap();
    assert_eq!(versions[0].id, v2);
    assert_eq!(versions[0].stages, vec!["current".to_string()]);
    assert!(versions.iter().any(|v| v.id == v1));
    for i in 0..7 {
        b.put(PutRequest::new(format!("svc/list/{i}"), SecretValue::text("x")))
            .await
            .unwrap();
    }
    let listed = b.list("svc/list/").await.unwrap();
    assert_eq!(listed.len(), 7, "every page followed: {listed:?}");
    // The Rust SDK re-encodes the `$` of `$skiptoken`.
    assert!(kv.requests().iter().any(|r| r.query.contains("skiptoken")));

    // Rollback as the tool does it: read the old version, write it as the newest.
    let old = b
        .fetch(&[FetchRequest {
            path: "svc/token".into(),
            version: VersionPin::id(v1.clone()),
        }])
        .await;
    b.put(PutRequest::new("svc/token", old[0].as_ref().unwrap().value.clone()))
        .await
        .unwrap();
    assert_eq!(text(&b.fetch(&[FetchRequest::current("svc/token")]).await[0]), "one");

    // Soft delete: the name is held until recovered or purged.
    b.delete("svc/token", DeleteMode::Default).await.unwrap();
    let r = b.fetch(&[FetchRequest::current("svc/token")]).await;
    assert_eq!(r[0].as_ref().unwrap_err().kind, FailureKind::NotFound);
    let e = b
        .put(PutRequest::new("svc/token", SecretValue::text(SENTINEL)))
        .await
        .unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::Conflict, "{e}");
    let recovery_id = format!("{}/deletedsecrets/svc-token", kv.url());
    for needle in [
        "secret `svc/token` (Key Vault name `svc-token`) is soft-deleted",
        &format!("az keyvault secret recover --id {recovery_id}"),
        "skm delete svc/token --force",
        &format!("az keyvault secret purge --id {recovery_id}"),
        "ObjectIsDeletedButRecoverable",
    ] {
        assert!(e.detail.contains(needle), "missing `{needle}` in: {e}");
    }
    assert!(!format!("{e} {e:?}").contains(SENTINEL), "value leaked: {e}");
    // Microsoft's client gets the same answer from the server: 409, `Conflict`, inner code
    // `ObjectIsDeletedButRecoverable` (what Azure answers, e.g. `az keyvault secret set` on such a name).
    let out = python(
        &kv,
        r#"
from azure.core.exceptions import HttpResponseError
try:
    client.set_secret("svc-token", "x")
    print("no error")
except HttpResponseError as e:
    print(type(e).__name__, e.status_code, e.error.code, e.error.innererror["code"])
    print(e.error.message)
"#,
    )
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "ResourceExistsError 409 Conflict ObjectIsDeletedButRecoverable",
        "{out}"
    );
    assert!(lines[1].contains("deleted but recoverable state"), "{out}");
    let out = python(
        &kv,
        "client.begin_recover_deleted_secret('svc-token').result(); print(client.get_secret('svc-token').value)",
    )
    .await;
    assert_eq!(out.trim(), "one");

    // --force: delete, then purge; the name is free again.
    b.delete("svc/token", DeleteMode::Force).await.unwrap();
    assert_eq!(kv.count_of("DELETE /deletedsecrets/svc-token"), 1);
    b.put(PutRequest::new("svc/token", SecretValue::text("fresh")))
        .await
        .unwrap();
    assert_eq!(b.versions("svc/token").await.unwrap().len(), 1);
    let e = b.delete("never/there", DeleteMode::Default).await.unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::NotFound, "{e}");
    let e = b.delete("svc/token", DeleteMode::RecoveryDays(7)).await.unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::Unsupported);
    // Key Vault has no conditional write: a check-and-set put is refused, never written unchecked.
    assert!(!b.supports_cas());
    let mut cas = PutRequest::new("svc/token", SecretValue::text("unchecked"));
    cas.expected_version = Some("0".repeat(32));
    assert_eq!(b.put(cas).await.unwrap_err().kind, AdminErrorKind::Unsupported);
    assert_eq!(text(&b.fetch(&[FetchRequest::current("svc/token")]).await[0]), "fresh");
}

#[tokio::test]
async fn doctor_reports_vault_credential_and_reachability() {
    let kv = kv().await;
    let b = backend(&kv);
    let report = b.doctor().await;
    assert!(report.outcome.is_ok(), "{report}");
    assert_eq!(report.credential, Some(skm::backend::azure::CredentialKind::Env));
    assert!(report.to_string().contains(&kv.url()), "{report}");
}

// The README's card example, unchanged.
#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
    jwt_secret: SecretString,
    #[secret(path = "database/connection", key = "url", env = "DATABASE_URL")]
    database_url: SecretString,
}

#[tokio::test]
async fn child_process_entry() {
    let Ok(mode) = std::env::var("SKM_AZURE_CHILD") else {
        return;
    };
    match mode.as_str() {
        "card" => {
            async fn run() -> Result<AppSecrets, skm::Error> {
                let cfg = AppSecrets::load().await?;
                Ok(cfg)
            }
            let cfg = run().await.unwrap_or_else(|e| panic!("card example failed: {e}"));
            assert_eq!(cfg.jwt_secret.expose_secret(), "card-jwt");
            assert_eq!(cfg.database_url.expose_secret(), "postgres://card");
        }
        "managed" => {
            let b = AzureBackend::from_env().expect("backend from the environment");
            let cfg = Loader::new()
                .backend(b.clone())
                .no_dotenv()
                .env_vars(Vec::<(String, String)>::new())
                .load::<AppSecrets>()
                .await
                .unwrap_or_else(|e| panic!("load with the managed identity failed: {e}"));
            assert_eq!(cfg.jwt_secret.expose_secret(), "card-jwt");
            assert_eq!(cfg.database_url.expose_secret(), "postgres://card");
            assert_eq!(b.credential_used(), Some(skm::backend::azure::CredentialKind::Managed));
        }
        other => panic!("unknown SKM_AZURE_CHILD mode {other}"),
    }
    println!("CHILD-OK {mode}");
}

#[tokio::test]
async fn card_example_loads_with_only_the_azure_variables() {
    let kv = kv().await;
    card_child(&kv, "skm-azure-child", &[]).await;
    assert!(kv.count_of("GET /secrets/auth-jwt/") >= 1);
}

/// Issue 25, finding 3: the proxy variables never carry requests to a loopback vault (nor its loopback Entra
/// endpoint). The proxy named here is a closed port: had a request gone to it, the load would fail.
#[tokio::test]
async fn proxy_variables_never_carry_requests_to_a_loopback_vault() {
    let kv = kv().await;
    let closed = format!("http://127.0.0.1:{}", skm_testing::free_port());
    let proxies: Vec<(&str, &str)> = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .map(|name| (name, closed.as_str()))
    .collect();
    card_child(&kv, "skm-azure-proxied", &proxies).await;
    assert!(kv.count_of("GET /secrets/auth-jwt/") >= 1);
}

/// Runs the card example in a child process with only the Azure variables (and `extra`), against `kv`
/// seeded by Microsoft's Python client, and checks that it loaded.
async fn card_child(kv: &KeyVault, name: &str, extra: &[(&str, &str)]) {
    python(
        kv,
        r#"
client.set_secret("auth-jwt", '{"secret": "card-jwt"}')
client.set_secret("database-connection", '{"url": "postgres://card"}')
"#,
    )
    .await;
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "azure::child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("SKM_AZURE_CHILD", "card")
        .env("AZURE_KEYVAULT_URL", kv.url())
        .env("AZURE_TENANT_ID", kv.tenant_id())
        .env("AZURE_CLIENT_ID", kv.client_id())
        .env("AZURE_CLIENT_SECRET", kv.client_secret())
        .env("AZURE_AUTHORITY_HOST", kv.authority_host())
        .env("SKM_AZURE_CA_CERT", kv.ca_pem_path())
        .envs(extra.iter().copied());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK card"),
        "card example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn detection_picks_azure_from_its_variables() {
    use skm_runtime::detect::detect;
    let env = |name: &str| (name == "AZURE_KEYVAULT_URL").then(|| "https://v.vault.azure.net".to_string());
    assert_eq!(detect(&env).unwrap().name(), "azure");
    let env = |name: &str| (name == "SKM_BACKEND").then(|| "azure".to_string());
    assert_eq!(detect(&env).unwrap().name(), "azure");
    let _ = FieldProblem::Missing;
}

// Issue 25, finding 2: the vault URL and the authority host go through the endpoint rule every backend shares.

#[test]
fn vault_and_authority_urls_follow_the_shared_endpoint_rule() {
    for bad in [
        "HTTP://127.0.0.1:8443",
        "Http://my-vault.vault.azure.net",
        "http://127.0.0.1:8443",
        // The request would go to the host after the `@`; credentials never belong in a URL.
        "https://127.0.0.1:x@evil.example",
        "https://user:pw@my-vault.vault.azure.net",
        "ftp://my-vault.vault.azure.net",
        "my-vault.vault.azure.net",
    ] {
        let e = AzureBackend::builder()
            .vault_url(bad)
            .build()
            .err()
            .unwrap_or_else(|| panic!("vault URL `{bad}` was accepted"));
        let text = e.to_string();
        assert!(matches!(e, skm::Error::Config(_)), "{bad}: {text}");
        assert!(text.contains("AZURE_KEYVAULT_URL"), "{bad}: {text}");
        assert!(!text.contains("pw") && !text.contains("x@"), "{bad}: {text}");
        let e = AzureBackend::builder()
            .vault_url("https://my-vault.vault.azure.net")
            .authority_host(bad)
            .build()
            .err()
            .unwrap_or_else(|| panic!("authority host `{bad}` was accepted"));
        let text = e.to_string();
        assert!(text.contains("AZURE_AUTHORITY_HOST"), "{bad}: {text}");
        assert!(!text.contains("pw") && !text.contains("x@"), "{bad}: {text}");
    }
    for good in [
        "https://my-vault.vault.azure.net",
        "HTTPS://my-vault.vault.azure.net/",
        "https://127.0.0.1:8443",
    ] {
        AzureBackend::builder()
            .vault_url(good)
            .authority_host("https://login.microsoftonline.us")
            .build()
            .unwrap_or_else(|e| panic!("`{good}`: {e}"));
    }
}

// Issue 25, finding 6: managed identity works. App Service's identity endpoint is plain http on loopback by
// design (`IDENTITY_ENDPOINT`, with the secret `IDENTITY_HEADER`), as the VM's is on 169.254.169.254.

/// A loopback stand-in for App Service's identity endpoint: records each request's head and answers it with
/// `token`, the way azure_identity 1.0's App Service credential reads it (`access_token`, `expires_on` in Unix
/// seconds as a string, `token_type`, `resource`).
struct IdentityEndpoint {
    addr: std::net::SocketAddr,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl IdentityEndpoint {
    async fn start(token: &str) -> IdentityEndpoint {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        let token = token.to_string();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                    let expires = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                        + 3600;
                    let body = serde_json::json!({
                        "access_token": token,
                        "expires_on": expires.to_string(),
                        "resource": "https://vault.azure.net",
                        "token_type": "Bearer",
                        "client_id": "00000000-0000-0000-0000-0000000000cc",
                    })
                    .to_string();
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        IdentityEndpoint { addr, heads, task }
    }

    fn url(&self) -> String {
        format!("http://{}/msi/token", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for IdentityEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn managed_identity_through_app_services_loopback_endpoint_opens_the_vault() {
    let kv = kv().await;
    python(
        &kv,
        r#"
client.set_secret("auth-jwt", '{"secret": "card-jwt"}')
client.set_secret("database-connection", '{"url": "postgres://card"}')
"#,
    )
    .await;
    let token = format!("managed-identity-token-{}", std::process::id());
    let header = "identity-header-secret-5c1f";
    let identity = IdentityEndpoint::start(&token).await;
    kv.clear_requests();
    // Microsoft's Python client above got its own token (a client secret); skm must get none from Entra.
    let issued = kv.tokens_issued();
    // The vault accepts exactly this token from now on (and still refuses any other).
    kv.accept_token(&token);

    let dir = std::env::temp_dir().join(format!("skm-azure-managed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    // No credential variable but App Service's: the chain (env, workload, managed, cli) reaches the managed
    // identity by itself. HTTP_PROXY must not carry the plain-http identity request.
    command
        .args([
            "azure::child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("PATH", "/nonexistent")
        .env("SKM_AZURE_CHILD", "managed")
        .env("AZURE_KEYVAULT_URL", kv.url())
        .env("SKM_AZURE_CA_CERT", kv.ca_pem_path())
        .env("IDENTITY_ENDPOINT", identity.url())
        .env("IDENTITY_HEADER", header)
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9");
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let heads = identity.heads();
    assert!(
        out.status.success() && stdout.contains("CHILD-OK managed"),
        "the load with the managed identity failed:\n{stdout}\n{}\nidentity endpoint saw: {heads:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(heads.len(), 1, "exactly one token request: {heads:?}");
    let head = heads[0].to_ascii_lowercase();
    assert!(head.starts_with("get /msi/token?"), "{head}");
    assert!(head.contains("api-version=2019-08-01"), "{head}");
    assert!(head.contains("resource=https%3a%2f%2fvault.azure.net"), "{head}");
    assert!(head.contains(&format!("x-identity-header: {header}")), "{head}");
    assert!(head.contains("metadata: true"), "{head}");
    // The token opened the vault: Entra's token endpoint (this server's) was never asked.
    assert_eq!(kv.tokens_issued(), issued);
    assert!(kv.accepted_requests() >= 2, "{:?}", kv.requests());
    assert!(kv.count_of("GET /secrets/auth-jwt/") >= 1);
}

// Issue 23: no call waits forever. A vault that accepts connections and never answers (not even the TLS
// handshake) fails the read within the shared bound (12 s for a call with its retries), below the loader's
// deadline, with an error naming Azure Key Vault.

#[tokio::test]
async fn a_silent_vault_fails_within_the_call_bound() {
    let kv = kv().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    // Defaults only: no timeout or retries set by the test.
    let b = AzureBackend::builder()
        .vault_url(format!("https://{addr}"))
        .authority_host(kv.authority_host())
        .ca_cert(kv.ca_pem_path())
        .client_secret(kv.tenant_id(), kv.client_id(), kv.client_secret())
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), b.fetch(&[FetchRequest::current("a")]))
        .await
        .unwrap_or_else(|_| panic!("still waiting after 60 s"));
    let took = started.elapsed();
    let e = r[0].as_ref().unwrap_err();
    eprintln!("silent vault: failed in {took:?}: {e}");
    assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
    assert!(took < Duration::from_secs(13), "took {took:?}: {e}");

    let started = std::time::Instant::now();
    let err = loader(&b).load::<AppSecrets>().await.err().expect("nothing answers");
    let took = started.elapsed();
    let text = err.to_string();
    eprintln!("silent vault: the load failed in {took:?}: {text}");
    assert!(text.contains("Azure Key Vault"), "{text}");
    assert!(
        !text.contains("deadline"),
        "the backend's own bound answers first: {text}"
    );
    assert!(took < Duration::from_secs(13), "took {took:?}: {text}");
    silent.abort();
}
