//! The Vault backend against a real OpenBao dev server (and, for cross-checks, hvac).
//!
//! Every test starts its own server (`skm_testing::Bao`), so tests share no state. The process environment is
//! never changed: tests configure backends through `VaultBuilder::from_vars`, and the one test that needs
//! `AppSecrets::load()` (which reads the real environment) runs this binary again as a child process with
//! exactly `VAULT_ADDR` and `VAULT_TOKEN` (see `child_process_entry`).
#![cfg(feature = "vault")]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skm::backend::vault::{Credential, KvVersion, VaultAuth, VaultBackend, VaultBuilder};
use skm::backend::{
    AdminBackend, AdminErrorKind, Backend, DeleteMode, FailureKind, FetchRequest, FetchResult, PutRequest, SecretValue,
};
use skm::{ExposeSecret, Loader, SecretBox, SecretString, Secrets, VersionPin, Zeroize};
use skm_testing::{Action, Bao, Proxy};

const SENTINEL: &str = "SENTINEL-vault-3b9d-do-not-leak";

/// A self-signed CA certificate for the Kubernetes auth config. OpenBao only parses it: the TokenReview
/// fixture is plain http on loopback.
const K8S_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIDFzCCAf+gAwIBAgIUTMjUJBzrFBsQMgZqvGAjOhZBQcgwDQYJKoZIhvcNAQEL\nBQAwGjEYMBYGA1UEAwwPc2ttLXRlc3QtazhzLWNhMCAXDTI2MTEyMzEzMTEwMFoY\nDzIxMjYxMDMwMTMxMTAwWjAaMRgwFgYDVQQDDA9za20tdGVzdC1rOHMtY2EwggEi\nMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQC6NWTMhFTBZbk6rY6uX/Qoq/+0\niAbzRSej1WRrdJvI+y/0ANPDpHahm0qgiQIeH7m5Vtw2iP6cHEUDm//wZAdYd6bK\nkPG5q3VRsYXaYqgomrjiCjnY8ZEml6Z89VaAQ9Seq4JNjqzqC5WRwY+aFsXUm9NV\nlAsyxggZJUWvB22WQNdsmJRPKRyBpcpOTGjSjpozy76+VoKLuj87hajcu/z7FBla\n1vCA0S5s05H0zWOq08GN49JESDnf3TkcMdZGY+dy2PeOSSZISBvMFYs+sUJXzxKx\n3l24xP2TOpVvg5rUUkIf20kF1oZj9Hk40GuNYL8YsZAdoAjLJmdkcMVpAHsxAgMB\nAAGjUzBRMB0GA1UdDgQWBBQa/9E8TPBQSBrFEu8c2e7Vf2VjbDAfBgNVHSMEGDAW\ngBQa/9E8TPBQSBrFEu8c2e7Vf2VjbDAPBgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3\nDQEBCwUAA4IBAQCPMxUnUa/A4PA1U4T1el+QskpC/UIOvMYYrCgEoY10uSvQkPfG\nDY4oNTfHkuefOGvQ9Bc+CWDb7KX+UiccJheH/f/fwMEIW97AixDJP8px2b3Vuc2w\nSxkg7AXhHtYRgrMz+66jSlwO71TqShi+GqOERf6PCyer/Gh+cd/VG+J2ssh9BYdB\nsSWHSUAum1Dz4feriYZG2fQQNLSirFhvnTRayhXflQp9Cminpee7/HXkO1C1xNFf\nJzNbyuS5gUuC6aRr22DXJc8QmqA9oZ4fPAZbH7fOz9gNHzEAesOquUcnrnaucPRx\nzoMtZP6ZiV48bwTeVMXwwb2fBx46Nx8KR7bw\n-----END CERTIFICATE-----";

fn vars(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

async fn root(bao: &Bao) -> VaultBackend {
    VaultBuilder::new(bao.addr())
        .token(bao.root_token())
        .build()
        .await
        .expect("backend")
}

fn loader(backend: &VaultBackend) -> Loader {
    Loader::new()
        .backend(backend.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

/// Writes a KV v2 secret as root through the HTTP API (not through skm).
async fn write(bao: &Bao, path: &str, data: Value) {
    let (status, body) = bao
        .api("POST", &format!("secret/data/{path}"), json!({ "data": data }))
        .await;
    assert_eq!(status, 200, "writing {path}: {body}");
}

async fn api_ok(bao: &Bao, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = bao.api(method, path, body).await;
    assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
    answer
}

async fn policy(bao: &Bao, name: &str, hcl: &str) {
    bao.bao_with_stdin(&["policy", "write", name, "-"], hcl.as_bytes())
        .await;
}

/// A token with `policies` and extra creation parameters (`ttl`, `explicit_max_ttl`...).
async fn token(bao: &Bao, policies: &[&str], extra: Value) -> String {
    let mut body = json!({ "policies": policies, "no_default_policy": false });
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    let answer = api_ok(bao, "POST", "auth/token/create", body).await;
    answer["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_string()
}

fn text(result: &FetchResult) -> String {
    match &result.as_ref().expect("found").value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

fn kind(result: &FetchResult) -> FailureKind {
    result.as_ref().err().map(|e| e.kind).expect("expected a failure")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skm-vault-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[derive(Debug, Clone, serde::Deserialize, Zeroize)]
struct DbConf {
    user: String,
    password: String,
    port: u16,
}

#[derive(Secrets)]
struct DbSecrets {
    #[secret(path = "app/db", key = "password")]
    password: SecretString,
    #[secret(path = "app/db", key = "port")]
    port: SecretBox<u16>,
    #[secret(path = "app/db")]
    whole: SecretBox<DbConf>,
}

/// KV v2: one key, a number key converted to `u16`, and the whole map into a struct-typed field.
#[tokio::test]
async fn kv2_keys_and_whole_path_struct() {
    let bao = Bao::start().await;
    write(
        &bao,
        "app/db",
        json!({ "user": "app", "password": SENTINEL, "port": 5432 }),
    )
    .await;
    let backend = root(&bao).await;
    assert_eq!(
        backend.kv_version(),
        Some(KvVersion::V2),
        "detected from the `secret` mount"
    );

    let loaded = loader(&backend).load_report::<DbSecrets>().await.expect("load");
    let s = &loaded.value;
    assert_eq!(s.password.expose_secret(), SENTINEL);
    assert_eq!(*s.port.expose_secret(), 5432);
    let whole = s.whole.expose_secret();
    assert_eq!(
        (whole.user.as_str(), whole.password.as_str(), whole.port),
        ("app", SENTINEL, 5432)
    );

    let origin = loaded.provenance.get("password").unwrap().to_string();
    assert!(origin.starts_with("Vault ("), "{origin}");
    assert!(origin.ends_with("secret app/db key password"), "{origin}");
    let shown = format!("{:?} {} {:?}", loaded.provenance, loaded.provenance, backend);
    assert!(
        !shown.contains(SENTINEL) && !shown.contains(bao.root_token()),
        "{shown}"
    );

    // The payload carries the KV v2 version number.
    let r = backend.fetch(&[FetchRequest::current("app/db")]).await;
    assert_eq!(r[0].as_ref().unwrap().version.as_deref(), Some("1"));
}

#[derive(Secrets)]
struct LegacySecrets {
    #[secret(path = "legacy/app", key = "token")]
    token: SecretString,
}

/// A KV v1 mount: detected, read, written, listed and deleted; version pins are refused with a hint.
#[tokio::test]
async fn kv1_mount() {
    let bao = Bao::start().await;
    bao.bao(&["secrets", "enable", "-path=kv1", "-version=1", "kv"]).await;
    api_ok(&bao, "POST", "kv1/legacy/app", json!({ "token": SENTINEL })).await;

    let backend = VaultBuilder::new(bao.addr())
        .token(bao.root_token())
        .mount("kv1")
        .build()
        .await
        .unwrap();
    assert_eq!(backend.kv_version(), Some(KvVersion::V1), "detected from the mount");
    let s: LegacySecrets = loader(&backend).load().await.expect("load");
    assert_eq!(s.token.expose_secret(), SENTINEL);
    let r = backend.fetch(&[FetchRequest::current("legacy/app")]).await;
    assert_eq!(r[0].as_ref().unwrap().version, None, "KV v1 has no versions");

    let pinned = backend
        .fetch(&[FetchRequest {
            path: "legacy/app".into(),
            version: VersionPin::Number(1),
        }])
        .await;
    let e = pinned[0].as_ref().unwrap_err();
    assert_eq!(e.kind, FailureKind::Invalid);
    assert!(
        e.detail.contains("KV v1") && e.detail.contains("remove `version`"),
        "{e}"
    );

    // Admin on KV v1.
    backend
        .put(PutRequest::new("legacy/other", SecretValue::text("plain")))
        .await
        .unwrap();
    let mut again = PutRequest::new("legacy/other", SecretValue::text("clobber"));
    again.create_only = true;
    assert_eq!(
        backend.put(again).await.unwrap_err().kind,
        AdminErrorKind::AlreadyExists
    );
    let listed: Vec<String> = backend
        .list("legacy/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(listed, ["legacy/app", "legacy/other"]);
    assert_eq!(
        text(&backend.fetch(&[FetchRequest::current("legacy/other")]).await[0]),
        "plain"
    );
    assert_eq!(
        backend.versions("legacy/other").await.unwrap_err().kind,
        AdminErrorKind::Unsupported
    );
    backend.delete("legacy/other", DeleteMode::Default).await.unwrap();
    assert_eq!(
        kind(&backend.fetch(&[FetchRequest::current("legacy/other")]).await[0]),
        FailureKind::NotFound
    );
    assert_eq!(
        backend
            .delete("legacy/other", DeleteMode::Default)
            .await
            .unwrap_err()
            .kind,
        AdminErrorKind::NotFound
    );

    // A pinned SKM_VAULT_KV_VERSION skips detection.
    let pinned = VaultBuilder::from_vars(vars(&[
        ("VAULT_ADDR", bao.addr()),
        ("VAULT_TOKEN", bao.root_token().to_string()),
        ("SKM_VAULT_MOUNT", "kv1".into()),
        ("SKM_VAULT_KV_VERSION", "1".into()),
    ]))
    .unwrap();
    assert_eq!(pinned.get_kv_version(), Some(KvVersion::V1));
}

#[derive(Secrets)]
struct Pinned {
    #[secret(path = "app/rotating", key = "k", version = 1)]
    first: SecretString,
    #[secret(path = "app/rotating", key = "k")]
    current: SecretString,
}

/// `#[secret(..., version = 1)]` reads KV v2 version 1 while the unpinned field reads the latest.
#[tokio::test]
async fn version_pin() {
    let bao = Bao::start().await;
    write(&bao, "app/rotating", json!({ "k": "one" })).await;
    write(&bao, "app/rotating", json!({ "k": "two" })).await;
    let backend = root(&bao).await;
    let s: Pinned = loader(&backend).load().await.expect("load");
    assert_eq!(s.first.expose_secret(), "one");
    assert_eq!(s.current.expose_secret(), "two");

    // Stages and version ids are AWS's: refused with a message that says what Vault takes.
    for pin in [VersionPin::stage("AWSPREVIOUS"), VersionPin::id("abc")] {
        let r = backend
            .fetch(&[FetchRequest {
                path: "app/rotating".into(),
                version: pin,
            }])
            .await;
        let e = r[0].as_ref().unwrap_err();
        assert_eq!(e.kind, FailureKind::Invalid, "{e}");
        assert!(e.detail.contains("version = 3"), "{e}");
    }
    let r = backend
        .fetch(&[FetchRequest {
            path: "app/rotating".into(),
            version: VersionPin::Number(7),
        }])
        .await;
    assert_eq!(kind(&r[0]), FailureKind::NotFound, "a version that never existed");
}

#[derive(Secrets)]
struct WithFallback {
    #[secret(path = "app/gone", key = "k", env = "GONE_K")]
    k: SecretString,
}

/// A soft-deleted or destroyed KV v2 version reads as not found (OpenBao answers 404 with a full envelope).
#[tokio::test]
async fn deleted_and_destroyed_versions_are_not_found() {
    let bao = Bao::start().await;
    write(&bao, "app/gone", json!({ "k": "one" })).await;
    write(&bao, "app/gone", json!({ "k": "two" })).await;
    api_ok(&bao, "POST", "secret/delete/app/gone", json!({ "versions": [1] })).await;
    let backend = root(&bao).await;
    let v = |n| FetchRequest {
        path: "app/gone".into(),
        version: VersionPin::Number(n),
    };

    let r = backend.fetch(&[v(1), v(2), FetchRequest::current("app/gone")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert_eq!(e.kind, FailureKind::NotFound, "{e}");
    assert!(
        e.detail.contains("`app/gone` version 1") && e.detail.contains("mount `secret`"),
        "{e}"
    );
    assert_eq!(text(&r[1]), r#"{"k":"two"}"#);
    assert_eq!(text(&r[2]), r#"{"k":"two"}"#);

    api_ok(&bao, "PUT", "secret/destroy/app/gone", json!({ "versions": [2] })).await;
    let r = backend.fetch(&[v(2), FetchRequest::current("app/gone")]).await;
    assert_eq!(kind(&r[0]), FailureKind::NotFound);
    assert_eq!(kind(&r[1]), FailureKind::NotFound, "the latest version is destroyed");

    // Not found falls back to env silently, without a warning.
    let loaded = Loader::new()
        .backend(backend.clone())
        .no_dotenv()
        .env_vars([("GONE_K", "from-env")])
        .load_report::<WithFallback>()
        .await
        .unwrap();
    assert_eq!(loaded.value.k.expose_secret(), "from-env");
    assert!(
        loaded.provenance.warnings.is_empty(),
        "{:?}",
        loaded.provenance.warnings
    );
}

/// A narrow policy: a missing allowed path is not found, an existing denied path is access denied.
#[tokio::test]
async fn forbidden_and_not_found_told_apart() {
    let bao = Bao::start().await;
    policy(
        &bao,
        "narrow",
        r#"path "secret/data/allowed/*" { capabilities = ["read"] }"#,
    )
    .await;
    write(&bao, "allowed/a", json!({ "k": "a" })).await;
    write(&bao, "denied/b", json!({ "k": SENTINEL })).await;
    let narrow = token(&bao, &["narrow"], json!({})).await;
    let backend = VaultBuilder::new(bao.addr()).token(&narrow).build().await.unwrap();
    assert_eq!(
        backend.kv_version(),
        Some(KvVersion::V2),
        "a narrow token can still detect the version"
    );

    let r = backend
        .fetch(&[
            FetchRequest::current("allowed/a"),
            FetchRequest::current("allowed/missing"),
            FetchRequest::current("denied/b"),
        ])
        .await;
    assert_eq!(text(&r[0]), r#"{"k":"a"}"#);
    assert_eq!(kind(&r[1]), FailureKind::NotFound);
    let e = r[2].as_ref().unwrap_err();
    assert_eq!(e.kind, FailureKind::Forbidden, "{e}");
    for part in ["mount `secret`", "`denied/b`", "HTTP 403", "`secret/data/denied/b`"] {
        assert!(e.detail.contains(part), "{part} missing from: {e}");
    }
    assert!(!e.to_string().contains(SENTINEL) && !e.to_string().contains(&narrow));

    // A revoked token: every read is access denied, not "not found".
    api_ok(&bao, "POST", "auth/token/revoke", json!({ "token": narrow })).await;
    let r = backend.fetch(&[FetchRequest::current("allowed/a")]).await;
    assert_eq!(kind(&r[0]), FailureKind::Forbidden);
}

/// OpenBao (2.3+) has namespaces: the backend sends `X-Vault-Namespace` on every request and reads the
/// namespace's mount, not the root one.
#[tokio::test]
async fn namespace_header_and_isolation() {
    let bao = Bao::start().await;
    api_ok(&bao, "POST", "sys/namespaces/team1", json!({})).await;
    // Path-based namespace addressing, so that the set-up does not depend on the code under test.
    api_ok(
        &bao,
        "POST",
        "team1/sys/mounts/secret",
        json!({ "type": "kv", "options": { "version": "2" } }),
    )
    .await;
    api_ok(
        &bao,
        "POST",
        "team1/secret/data/app",
        json!({ "data": { "k": "in-team1" } }),
    )
    .await;
    write(&bao, "app", json!({ "k": "in-root" })).await;

    let proxy = Proxy::start(&bao.addr()).await;
    let builder = VaultBuilder::from_vars(vars(&[
        ("VAULT_ADDR", proxy.url()),
        ("VAULT_TOKEN", bao.root_token().to_string()),
        ("VAULT_NAMESPACE", "team1".into()),
    ]))
    .unwrap();
    let backend = builder.build().await.unwrap();
    assert_eq!(backend.namespace(), Some("team1"));
    assert!(backend.name().contains("namespace team1"), "{}", backend.name());
    let r = backend
        .fetch(&[FetchRequest::current("app"), FetchRequest::current("nope")])
        .await;
    assert_eq!(text(&r[0]), r#"{"k":"in-team1"}"#);
    let e = r[1].as_ref().unwrap_err();
    assert!(e.detail.contains("namespace `team1`"), "{e}");

    let requests = proxy.requests();
    assert!(requests.len() >= 3, "lookup, mount detection and reads: {requests:?}");
    for request in &requests {
        let ns = request
            .headers
            .get("x-vault-namespace")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(ns.as_deref(), Some("team1"), "{} {}", request.method, request.path);
    }

    let plain = root(&bao).await;
    assert_eq!(
        text(&plain.fetch(&[FetchRequest::current("app")]).await[0]),
        r#"{"k":"in-root"}"#
    );
}

async fn enable_approle(bao: &Bao, role: Value) -> (String, String) {
    policy(bao, "app-read", r#"path "secret/data/*" { capabilities = ["read"] }"#).await;
    api_ok(bao, "POST", "sys/auth/approle", json!({ "type": "approle" })).await;
    api_ok(bao, "POST", "auth/approle/role/app", role).await;
    let role_id = api_ok(bao, "GET", "auth/approle/role/app/role-id", Value::Null).await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = api_ok(bao, "POST", "auth/approle/role/app/secret-id", json!({})).await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    (role_id, secret_id)
}

/// AppRole from env: role id as a value, secret id from a file.
#[tokio::test]
async fn approle_login() {
    let bao = Bao::start().await;
    write(&bao, "app/x", json!({ "k": "v" })).await;
    let (role_id, secret_id) = enable_approle(&bao, json!({ "token_policies": ["app-read"], "token_ttl": "1h" })).await;
    let secret_file = scratch("approle-secret-id");
    std::fs::write(&secret_file, format!("{secret_id}\n")).unwrap();

    let backend = VaultBuilder::from_vars(vars(&[
        ("VAULT_ADDR", bao.addr()),
        ("SKM_VAULT_AUTH", "approle".into()),
        ("SKM_VAULT_ROLE_ID", role_id.clone()),
        ("SKM_VAULT_SECRET_ID_FILE", secret_file.display().to_string()),
    ]))
    .unwrap()
    .build()
    .await
    .unwrap();
    assert_eq!(backend.logins(), 1);
    assert_eq!(
        text(&backend.fetch(&[FetchRequest::current("app/x")]).await[0]),
        r#"{"k":"v"}"#
    );

    // A wrong secret id: the build succeeds (the server decides), every read reports the failed login.
    let wrong = VaultBuilder::new(bao.addr())
        .auth(VaultAuth::approle(
            Credential::value(&role_id),
            Credential::value(SENTINEL),
        ))
        .build()
        .await
        .unwrap();
    assert_eq!(wrong.logins(), 0);
    let r = wrong.fetch(&[FetchRequest::current("app/x")]).await;
    let e = r[0].as_ref().unwrap_err();
    assert_eq!(e.kind, FailureKind::Forbidden, "{e}");
    assert!(e.detail.contains("AppRole") && e.detail.contains("login failed"), "{e}");
    assert!(!e.to_string().contains(SENTINEL) && !format!("{wrong:?}").contains(SENTINEL));

    // Missing configuration is reported before any request.
    let e = VaultBuilder::from_vars(vars(&[
        ("VAULT_ADDR", bao.addr()),
        ("SKM_VAULT_AUTH", "approle".into()),
    ]))
    .unwrap_err();
    assert!(e.to_string().contains("SKM_VAULT_ROLE_ID"), "{e}");
}

fn b64url(data: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = data.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Kubernetes auth on a custom mount, with a TokenReview fixture standing in for the API server.
#[tokio::test]
async fn kubernetes_login() {
    let bao = Bao::start().await;
    write(&bao, "app/x", json!({ "k": "k8s" })).await;
    let reviews = Arc::new(Mutex::new(Vec::<Value>::new()));
    let seen = reviews.clone();
    let api_server = Proxy::stub(move |request| {
        if request.method == "POST" && request.path.starts_with("/apis/authentication.k8s.io/v1/tokenreviews") {
            seen.lock().unwrap().push(request.json().unwrap_or_default());
            Action::json(
                201,
                &json!({
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "status": {
                        "authenticated": true,
                        "user": {
                            "username": "system:serviceaccount:default:app",
                            "uid": "1234",
                            "groups": ["system:serviceaccounts"]
                        }
                    }
                }),
            )
        } else {
            Action::json(404, &json!({ "kind": "Status", "code": 404 }))
        }
    })
    .await;
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "default",
        "kubernetes.io/serviceaccount/service-account.name": "app",
        "kubernetes.io/serviceaccount/service-account.uid": "1234",
        "sub": "system:serviceaccount:default:app"
    });
    let jwt = format!(
        "{}.{}.c2ln",
        b64url(r#"{"alg":"RS256","kid":"test","typ":"JWT"}"#),
        b64url(&claims.to_string())
    );
    policy(&bao, "app-read", r#"path "secret/data/*" { capabilities = ["read"] }"#).await;
    api_ok(&bao, "POST", "sys/auth/k8s", json!({ "type": "kubernetes" })).await;
    api_ok(
        &bao,
        "POST",
        "auth/k8s/config",
        json!({
            "kubernetes_host": api_server.url(),
            "disable_local_ca_jwt": true,
            "token_reviewer_jwt": jwt,
            "kubernetes_ca_cert": K8S_CA_PEM,
        }),
    )
    .await;
    api_ok(
        &bao,
        "POST",
        "auth/k8s/role/app",
        json!({
            "bound_service_account_names": ["app"],
            "bound_service_account_namespaces": ["default"],
            "token_policies": ["app-read"],
            "token_ttl": "1h"
        }),
    )
    .await;
    let jwt_file = scratch("k8s-token");
    std::fs::write(&jwt_file, &jwt).unwrap();

    let backend = VaultBuilder::from_vars(vars(&[
        ("VAULT_ADDR", bao.addr()),
        ("SKM_VAULT_AUTH", "kubernetes".into()),
        ("SKM_VAULT_K8S_ROLE", "app".into()),
        ("SKM_VAULT_K8S_MOUNT", "k8s".into()),
        ("SKM_VAULT_K8S_JWT_FILE", jwt_file.display().to_string()),
    ]))
    .unwrap()
    .build()
    .await
    .unwrap();
    assert_eq!(backend.logins(), 1);
    assert_eq!(
        text(&backend.fetch(&[FetchRequest::current("app/x")]).await[0]),
        r#"{"k":"k8s"}"#
    );
    let reviews = reviews.lock().unwrap().clone();
    assert!(
        reviews.iter().any(|r| r["spec"]["token"] == json!(jwt)),
        "OpenBao asked the API server to review our JWT: {reviews:?}"
    );

    // A missing JWT file is a configuration error, reported at build.
    let e = VaultBuilder::from_vars(vars(&[
        ("VAULT_ADDR", bao.addr()),
        ("SKM_VAULT_AUTH", "kubernetes".into()),
        ("SKM_VAULT_K8S_ROLE", "app".into()),
        ("SKM_VAULT_K8S_JWT_FILE", "/nonexistent/token".into()),
    ]))
    .unwrap()
    .build()
    .await
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/token"), "{e}");
}

/// A renewable token with a 3 s TTL keeps working for 3× its TTL: the background task renews it.
#[tokio::test]
async fn short_ttl_token_is_renewed_in_the_background() {
    let bao = Bao::start().await;
    write(&bao, "app/x", json!({ "k": "v" })).await;
    policy(&bao, "app-read", r#"path "secret/data/*" { capabilities = ["read"] }"#).await;
    let short = token(
        &bao,
        &["app-read"],
        json!({ "ttl": "3s", "explicit_max_ttl": "60s", "renewable": true }),
    )
    .await;
    let proxy = Proxy::start(&bao.addr()).await;
    let backend = VaultBuilder::new(proxy.url()).token(&short).build().await.unwrap();

    let started = Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(9) + Duration::from_millis(500) {
        let r = backend.fetch(&[FetchRequest::current("app/x")]).await;
        assert_eq!(text(&r[0]), r#"{"k":"v"}"#, "read {reads} at {:?}", started.elapsed());
        reads += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let renewals = backend.renewals();
    eprintln!(
        "short TTL: {reads} reads, {renewals} renewals in {:?}",
        started.elapsed()
    );
    assert!(renewals >= 3, "renewed {renewals} times in 9.5 s");
    assert_eq!(backend.logins(), 0, "token auth never logs in");
    // Renewals follow the TTL, not the reads: about one per 2 s, not one per read.
    let renew_calls = proxy.count_of("POST /v1/auth/token/renew-self");
    assert_eq!(renew_calls as u64, renewals);
    assert!(renew_calls <= 7, "{renew_calls} renewals for {reads} reads");
}

/// AppRole with a 4 s max TTL: renewals stop extending the token, so the backend logs in again, and reads
/// never fail.
#[tokio::test]
async fn relogin_after_max_ttl() {
    let bao = Bao::start().await;
    write(&bao, "app/x", json!({ "k": "v" })).await;
    let (role_id, secret_id) = enable_approle(
        &bao,
        json!({ "token_policies": ["app-read"], "token_ttl": "2s", "token_max_ttl": "4s" }),
    )
    .await;
    let backend = VaultBuilder::new(bao.addr())
        .auth(VaultAuth::approle(
            Credential::value(role_id),
            Credential::value(secret_id),
        ))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let r = backend.fetch(&[FetchRequest::current("app/x")]).await;
        assert_eq!(text(&r[0]), r#"{"k":"v"}"#, "at {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (logins, renewals) = (backend.logins(), backend.renewals());
    eprintln!(
        "max TTL 4 s: {logins} logins, {renewals} renewals in {:?}",
        started.elapsed()
    );
    assert!(logins >= 3, "logged in {logins} times in 10 s with a 4 s max TTL");
    assert!(renewals >= 1, "renewed {renewals} times");
}

/// While Vault is down the renewal task backs off instead of spinning, and once it is back the backend
/// logs in again by itself.
#[tokio::test]
async fn renewal_backs_off_during_an_outage_and_recovers() {
    let bao = Bao::start().await;
    write(&bao, "app/x", json!({ "k": "v" })).await;
    let (role_id, secret_id) = enable_approle(
        &bao,
        json!({ "token_policies": ["app-read"], "token_ttl": "2s", "token_max_ttl": "60s" }),
    )
    .await;
    let proxy = Proxy::start(&bao.addr()).await;
    let backend = VaultBuilder::new(proxy.url())
        .auth(VaultAuth::approle(
            Credential::value(role_id),
            Credential::value(secret_id),
        ))
        .retries(0)
        .build()
        .await
        .unwrap();
    proxy.set_rule(|_| Action::vault_error(503, "Vault is sealed"));
    proxy.clear();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = proxy.count();
    eprintln!("outage of 6 s: {during} requests: {:?}", proxy.counts());
    // A renewal at ~1.3 s, then logins after 1 and 2 s of backoff: a handful, not thousands.
    assert!(
        (2..=6).contains(&during),
        "{during} requests during a 6 s outage: {:?}",
        proxy.counts()
    );
    let r = backend.fetch(&[FetchRequest::current("app/x")]).await;
    assert!(matches!(kind(&r[0]), FailureKind::Unavailable), "{:?}", r[0]);

    proxy.clear_rule();
    let r = backend.fetch(&[FetchRequest::current("app/x")]).await;
    assert_eq!(text(&r[0]), r#"{"k":"v"}"#, "logged in again once Vault was back");
    assert!(backend.logins() >= 2);
}

/// Dropping the backend stops its renewal task: no request reaches the server afterwards.
#[tokio::test]
async fn dropping_the_backend_stops_renewal() {
    let bao = Bao::start().await;
    let short = token(
        &bao,
        &["default"],
        json!({ "ttl": "2s", "explicit_max_ttl": "60s", "renewable": true }),
    )
    .await;
    let proxy = Proxy::start(&bao.addr()).await;
    let backend = VaultBuilder::new(proxy.url()).token(&short).build().await.unwrap();
    let started = Instant::now();
    while backend.renewals() == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(backend.renewals() >= 1, "renewed while alive");
    drop(backend);
    let before = proxy.count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(proxy.count(), before, "requests after drop: {:?}", proxy.counts());
}

#[derive(Secrets)]
struct Forty {
    #[secret(path = "many/p0", key = "k0")]
    f0_0: SecretString,
    #[secret(path = "many/p0", key = "k1")]
    f0_1: SecretString,
    #[secret(path = "many/p0", key = "k2")]
    f0_2: SecretString,
    #[secret(path = "many/p0", key = "k3")]
    f0_3: SecretString,
    #[secret(path = "many/p1", key = "k0")]
    f1_0: SecretString,
    #[secret(path = "many/p1", key = "k1")]
    f1_1: SecretString,
    #[secret(path = "many/p1", key = "k2")]
    f1_2: SecretString,
    #[secret(path = "many/p1", key = "k3")]
    f1_3: SecretString,
    #[secret(path = "many/p2", key = "k0")]
    f2_0: SecretString,
    #[secret(path = "many/p2", key = "k1")]
    f2_1: SecretString,
    #[secret(path = "many/p2", key = "k2")]
    f2_2: SecretString,
    #[secret(path = "many/p2", key = "k3")]
    f2_3: SecretString,
    #[secret(path = "many/p3", key = "k0")]
    f3_0: SecretString,
    #[secret(path = "many/p3", key = "k1")]
    f3_1: SecretString,
    #[secret(path = "many/p3", key = "k2")]
    f3_2: SecretString,
    #[secret(path = "many/p3", key = "k3")]
    f3_3: SecretString,
    #[secret(path = "many/p4", key = "k0")]
    f4_0: SecretString,
    #[secret(path = "many/p4", key = "k1")]
    f4_1: SecretString,
    #[secret(path = "many/p4", key = "k2")]
    f4_2: SecretString,
    #[secret(path = "many/p4", key = "k3")]
    f4_3: SecretString,
    #[secret(path = "many/p5", key = "k0")]
    f5_0: SecretString,
    #[secret(path = "many/p5", key = "k1")]
    f5_1: SecretString,
    #[secret(path = "many/p5", key = "k2")]
    f5_2: SecretString,
    #[secret(path = "many/p5", key = "k3")]
    f5_3: SecretString,
    #[secret(path = "many/p6", key = "k0")]
    f6_0: SecretString,
    #[secret(path = "many/p6", key = "k1")]
    f6_1: SecretString,
    #[secret(path = "many/p6", key = "k2")]
    f6_2: SecretString,
    #[secret(path = "many/p6", key = "k3")]
    f6_3: SecretString,
    #[secret(path = "many/p7", key = "k0")]
    f7_0: SecretString,
    #[secret(path = "many/p7", key = "k1")]
    f7_1: SecretString,
    #[secret(path = "many/p7", key = "k2")]
    f7_2: SecretString,
    #[secret(path = "many/p7", key = "k3")]
    f7_3: SecretString,
    #[secret(path = "many/p8", key = "k0")]
    f8_0: SecretString,
    #[secret(path = "many/p8", key = "k1")]
    f8_1: SecretString,
    #[secret(path = "many/p8", key = "k2")]
    f8_2: SecretString,
    #[secret(path = "many/p8", key = "k3")]
    f8_3: SecretString,
    #[secret(path = "many/p9", key = "k0")]
    f9_0: SecretString,
    #[secret(path = "many/p9", key = "k1")]
    f9_1: SecretString,
    #[secret(path = "many/p9", key = "k2")]
    f9_2: SecretString,
    #[secret(path = "many/p9", key = "k3")]
    f9_3: SecretString,
}

/// 40 fields on 10 paths cost exactly 10 reads, counted on the wire; reads run concurrently within the bound.
#[tokio::test]
async fn forty_fields_on_ten_paths_cost_ten_reads() {
    let bao = Bao::start().await;
    for p in 0..10 {
        write(
            &bao,
            &format!("many/p{p}"),
            json!({ "k0": format!("{p}-0"), "k1": format!("{p}-1"), "k2": format!("{p}-2"), "k3": format!("{p}-3") }),
        )
        .await;
    }
    let proxy = Proxy::start(&bao.addr()).await;
    let backend = VaultBuilder::new(proxy.url())
        .token(bao.root_token())
        .build()
        .await
        .unwrap();
    proxy.clear();
    let s: Forty = loader(&backend).load().await.expect("load");
    let all = [
        &s.f0_0, &s.f0_1, &s.f0_2, &s.f0_3, &s.f1_0, &s.f1_1, &s.f1_2, &s.f1_3, &s.f2_0, &s.f2_1, &s.f2_2, &s.f2_3,
        &s.f3_0, &s.f3_1, &s.f3_2, &s.f3_3, &s.f4_0, &s.f4_1, &s.f4_2, &s.f4_3, &s.f5_0, &s.f5_1, &s.f5_2, &s.f5_3,
        &s.f6_0, &s.f6_1, &s.f6_2, &s.f6_3, &s.f7_0, &s.f7_1, &s.f7_2, &s.f7_3, &s.f8_0, &s.f8_1, &s.f8_2, &s.f8_3,
        &s.f9_0, &s.f9_1, &s.f9_2, &s.f9_3,
    ];
    for (i, field) in all.iter().enumerate() {
        assert_eq!(field.expose_secret(), format!("{}-{}", i / 4, i % 4), "field {i}");
    }
    assert_eq!(proxy.count(), 10, "{:?}", proxy.counts());
    for p in 0..10 {
        assert_eq!(proxy.count_of(&format!("GET /v1/secret/data/many/p{p}")), 1);
    }

    // The plan de-duplicates (above: 10 reads for 40 fields); the backend reads each request it is given.
    proxy.clear();
    let requests: Vec<FetchRequest> = (0..40)
        .map(|i| FetchRequest::current(format!("many/p{}", i % 10)))
        .collect();
    let r = backend.fetch(&requests).await;
    assert_eq!(r.len(), 40);
    assert!(text(&r[39]).contains("9-3"));
    assert_eq!(proxy.count(), 40);

    // At most `concurrency` reads in flight.
    let bounded = VaultBuilder::new(proxy.url())
        .token(bao.root_token())
        .concurrency(3)
        .build()
        .await
        .unwrap();
    proxy.clear();
    proxy.set_latency(Duration::from_millis(150));
    let started = Instant::now();
    // Ten distinct paths (requests 0..10): three at a time is four rounds, one at a time would be ten.
    let r = bounded.fetch(&requests[..10]).await;
    assert!(r.iter().all(|r| r.is_ok()));
    assert!(proxy.max_in_flight() <= 3, "{} in flight", proxy.max_in_flight());
    assert!(proxy.max_in_flight() >= 2, "reads ran one at a time");
    assert!(
        started.elapsed() < Duration::from_millis(150 * 10),
        "{:?}",
        started.elapsed()
    );
}

/// The conformance suite every backend passes.
#[tokio::test]
async fn conformance() {
    let bao = Bao::start().await;
    // Forbidden: a real token whose policies do not cover the secrets.
    let limited = token(&bao, &["default"], json!({})).await;
    // Throttled: OpenBao's own rate-limit quota on a second KV v2 mount, one request per hour, used up here.
    api_ok(
        &bao,
        "POST",
        "sys/mounts/slow",
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .await;
    api_ok(
        &bao,
        "POST",
        "sys/quotas/rate-limit/conformance",
        json!({"path": "slow/", "rate": 1, "interval": "1h"}),
    )
    .await;
    let (first, _) = bao.api("GET", "slow/data/warm-up", Value::Null).await;
    assert_eq!(first, 404, "the quota's one request");
    let (second, body) = bao.api("GET", "slow/data/warm-up", Value::Null).await;
    assert_eq!(second, 429, "OpenBao throttles past the quota: {body}");
    let quick = |b: VaultBuilder| b.retries(1);
    let report = skm_runtime::conformance::Suite::new(Arc::new(root(&bao).await), "conformance")
        .forbidden(Arc::new(
            VaultBuilder::new(bao.addr()).token(limited).build().await.unwrap(),
        ))
        .unavailable(Arc::new(
            quick(VaultBuilder::new(format!(
                "http://127.0.0.1:{}",
                skm_testing::free_port()
            )))
            .token("unused")
            .build()
            .await
            .unwrap(),
        ))
        .throttled(Arc::new(
            quick(VaultBuilder::new(bao.addr()))
                .token(bao.root_token())
                .mount("slow")
                .build()
                .await
                .unwrap(),
        ))
        .run()
        .await;
    report.assert_complete();
}

/// Admin round trip on KV v2: create-only, versions with labels, tags as custom metadata, recursive list,
/// soft delete, forced delete.
#[tokio::test]
async fn admin_round_trip() {
    let bao = Bao::start().await;
    let backend = root(&bao).await;
    let mut create = PutRequest::new("team/api/key", SecretValue::map([("token", SENTINEL)]));
    create.create_only = true;
    create.tags = vec![("owner".into(), "payments".into())];
    create.description = Some("the API key".into());
    assert_eq!(backend.put(create.clone()).await.unwrap(), "1");
    let e = backend.put(create).await.unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::AlreadyExists, "{e}");
    assert!(!e.to_string().contains(SENTINEL));
    assert_eq!(
        backend
            .put(PutRequest::new("team/api/key", SecretValue::map([("token", "v2")])))
            .await
            .unwrap(),
        "2"
    );
    let meta = api_ok(&bao, "GET", "secret/metadata/team/api/key", Value::Null).await;
    assert_eq!(meta["data"]["custom_metadata"]["owner"], "payments");
    assert_eq!(meta["data"]["custom_metadata"]["description"], "the API key");

    for p in ["team/db", "team/api/other", "teammate", "other/x"] {
        backend.put(PutRequest::new(p, SecretValue::text("x"))).await.unwrap();
    }
    let list = |prefix: &'static str| {
        let backend = backend.clone();
        async move {
            backend
                .list(prefix)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.path)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("team/").await, ["team/api/key", "team/api/other", "team/db"]);
    assert_eq!(
        list("team").await,
        ["team/api/key", "team/api/other", "team/db", "teammate"]
    );
    assert_eq!(list("").await.len(), 5);
    assert!(list("nothing/").await.is_empty());

    let versions = backend.versions("team/api/key").await.unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["2", "1"]);
    assert_eq!(versions[0].stages, ["current"]);
    assert!(versions[1].stages.is_empty());
    assert!(versions[0].created.is_some());

    // Soft delete: the latest version is gone, the metadata and older versions stay.
    backend.delete("team/api/key", DeleteMode::Default).await.unwrap();
    assert_eq!(
        kind(&backend.fetch(&[FetchRequest::current("team/api/key")]).await[0]),
        FailureKind::NotFound
    );
    let versions = backend.versions("team/api/key").await.unwrap();
    assert_eq!(versions[0].stages, ["current", "deleted"]);
    let old = backend
        .fetch(&[FetchRequest {
            path: "team/api/key".into(),
            version: VersionPin::Number(1),
        }])
        .await;
    assert!(text(&old[0]).contains(SENTINEL));

    backend.delete("team/api/key", DeleteMode::Force).await.unwrap();
    assert_eq!(
        backend.versions("team/api/key").await.unwrap_err().kind,
        AdminErrorKind::NotFound
    );
    assert_eq!(
        backend
            .delete("team/api/key", DeleteMode::Force)
            .await
            .unwrap_err()
            .kind,
        AdminErrorKind::NotFound
    );
    let e = backend
        .delete("team/db", DeleteMode::RecoveryDays(7))
        .await
        .unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::Unsupported);

    // Binary values survive (stored base64-encoded under `value`).
    backend
        .put(PutRequest::new("bin", SecretValue::binary(vec![0, 255, 7])))
        .await
        .unwrap();
    match &backend.fetch(&[FetchRequest::current("bin")]).await[0]
        .as_ref()
        .unwrap()
        .value
    {
        SecretValue::Binary(b) => assert_eq!(b.expose_secret(), &vec![0, 255, 7]),
        SecretValue::Text(_) => panic!("expected binary"),
    }
    // A plain text written by skm is a normal `value` entry for other tools.
    let raw = api_ok(&bao, "GET", "secret/data/teammate", Value::Null).await;
    assert_eq!(raw["data"]["data"]["value"], "x");
}

#[derive(Debug, Clone, serde::Deserialize, Zeroize)]
struct Tls {
    cert: String,
}

#[derive(Debug, Clone, serde::Deserialize, Zeroize)]
struct HvacApp {
    api_key: String,
    port: u16,
    tls: Tls,
}

#[derive(Secrets)]
struct FromHvac {
    #[secret(path = "hvac/app", key = "api_key")]
    api_key: SecretString,
    #[secret(path = "hvac/app", key = "port")]
    port: SecretBox<u16>,
    #[secret(path = "hvac/app")]
    whole: SecretBox<HvacApp>,
}

#[derive(Secrets)]
struct FromHvacV1 {
    #[secret(path = "hvac/legacy", key = "password")]
    password: SecretString,
}

/// What the rest of a company writes with hvac (Python), skm reads: KV v2 with typed JSON values, and KV v1.
#[tokio::test]
async fn hvac_writes_skm_reads() {
    let bao = Bao::start().await;
    let python = skm_testing::venv_bin("python");
    let script = r#"
import sys, hvac
url, token, value = sys.argv[1:4]
c = hvac.Client(url=url, token=token)
assert c.is_authenticated()
c.secrets.kv.v2.create_or_update_secret(path="hvac/app", secret={"api_key": value, "port": 8443, "tls": {"cert": "PEM"}})
c.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
c.secrets.kv.v1.create_or_update_secret(path="hvac/legacy", secret={"password": value}, mount_point="kv1")
print("written")
"#;
    let out = Command::new(&python)
        .args(["-c", script, &bao.addr(), bao.root_token(), SENTINEL])
        .env_remove("VAULT_TOKEN")
        .env_remove("VAULT_ADDR")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "hvac failed (is hvac installed in .venv?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let backend = root(&bao).await;
    let s: FromHvac = loader(&backend).load().await.expect("load");
    assert_eq!(s.api_key.expose_secret(), SENTINEL);
    assert_eq!(*s.port.expose_secret(), 8443);
    let whole = s.whole.expose_secret();
    assert_eq!(
        (whole.api_key.as_str(), whole.port, whole.tls.cert.as_str()),
        (SENTINEL, 8443, "PEM")
    );

    let v1 = VaultBuilder::new(bao.addr())
        .token(bao.root_token())
        .mount("kv1")
        .build()
        .await
        .unwrap();
    let s: FromHvacV1 = loader(&v1).load().await.expect("load v1");
    assert_eq!(s.password.expose_secret(), SENTINEL);
}

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
    jwt_secret: SecretString,
}

const CARD_VALUE: &str = "card-from-openbao";

/// Entry point of the child process that the tests below start; does nothing in a normal run.
#[tokio::test]
async fn child_process_entry() {
    let Ok(mode) = std::env::var("SKM_VAULT_CHILD") else {
        return;
    };
    match mode.as_str() {
        // The README's card example, unchanged.
        "card" => {
            async fn run() -> Result<AppSecrets, skm::Error> {
                let cfg = AppSecrets::load().await?;
                Ok(cfg)
            }
            let cfg = run().await.unwrap_or_else(|e| panic!("card example failed: {e}"));
            assert_eq!(cfg.jwt_secret.expose_secret(), CARD_VALUE);
        }
        // Reads through the process environment, where HTTP_PROXY and ALL_PROXY name a listener that must
        // receive nothing (issue 17 #2).
        "proxy" => {
            let vault = VaultBackend::from_env().await.expect("backend");
            let results = vault.fetch(&[FetchRequest::current("proxied/probe")]).await;
            let value = text(&results[0]);
            assert_eq!(value, r#"{"k":"direct"}"#);
        }
        other => panic!("unknown SKM_VAULT_CHILD mode {other}"),
    }
    println!("CHILD-OK {mode}");
}

fn run_child(mode: &str, env: &[(&str, String)]) {
    let dir = scratch(&format!("child-{mode}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["vault::child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env_clear()
        // An empty directory: no `.env`, no local store, no ~/.vault-token.
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("SKM_VAULT_CHILD", mode);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("CHILD-OK {mode}")),
        "child {mode} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README card example with only VAULT_ADDR and VAULT_TOKEN set: auto-detection picks Vault.
#[tokio::test]
async fn readme_card_example_with_vault_addr_and_token() {
    let bao = Bao::start().await;
    write(&bao, "auth/jwt", json!({ "secret": CARD_VALUE })).await;
    let (addr, token) = (bao.addr(), bao.root_token().to_string());
    tokio::task::spawn_blocking(move || run_child("card", &[("VAULT_ADDR", addr), ("VAULT_TOKEN", token)]))
        .await
        .unwrap();
}

/// Environment proxies never carry a request to a loopback or plain-http Vault (issue 17 #2): the token would
/// reach the proxy in clear text. Failed before the fix: reqwest applied HTTP_PROXY and the listener below
/// received `x-vault-token`.
#[tokio::test]
async fn environment_proxies_never_see_a_loopback_request() {
    let bao = Bao::start().await;
    write(&bao, "proxied/probe", json!({ "k": "direct" })).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let (addr, token) = (bao.addr(), bao.root_token().to_string());
    tokio::task::spawn_blocking(move || {
        run_child(
            "proxy",
            &[
                ("VAULT_ADDR", addr),
                ("VAULT_TOKEN", token),
                ("HTTP_PROXY", proxy.clone()),
                ("http_proxy", proxy.clone()),
                ("ALL_PROXY", proxy.clone()),
                ("HTTPS_PROXY", proxy),
            ],
        )
    })
    .await
    .unwrap();
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, from)) => panic!("the proxy listener received a connection from {from}"),
        Err(e) => panic!("{e}"),
    }
}

/// `skm doctor`'s token check runs through the registry on the backend's own client: the TTL of a token
/// with one, a clear failure for a revoked one, and the same `VAULT_SKIP_VERIFY` parsing as the backend
/// (`no` means verify; a value the backend refuses fails the same way here).
#[tokio::test]
async fn doctor_probe_uses_the_backends_client() {
    use skm::backend::registry::{self, Env, ProbeLevel};
    let bao = Bao::start().await;
    let d = registry::find("vault").unwrap();
    let probe = |pairs: Vec<(&'static str, String)>| {
        let env: Env = Arc::new(move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()));
        (d.doctor)(env)
    };
    let short = token(&bao, &["default"], json!({ "ttl": "30m" })).await;
    let found = probe(vec![
        ("VAULT_ADDR", bao.addr()),
        ("VAULT_TOKEN", short.clone()),
        ("VAULT_SKIP_VERIFY", "no".into()),
    ])
    .await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].level, ProbeLevel::Warn, "{found:?}");
    assert!(
        found[0].detail.starts_with("expires in 29m") || found[0].detail.starts_with("expires in 30m"),
        "{found:?}"
    );
    assert!(!found[0].detail.contains(&short));

    let found = probe(vec![
        ("VAULT_ADDR", bao.addr()),
        ("VAULT_TOKEN", bao.root_token().into()),
    ])
    .await;
    assert_eq!(found[0].level, ProbeLevel::Ok, "{found:?}");

    let found = probe(vec![("VAULT_ADDR", bao.addr()), ("VAULT_TOKEN", SENTINEL.into())]).await;
    assert_eq!(found[0].level, ProbeLevel::Fail, "{found:?}");
    assert!(!found[0].detail.contains(SENTINEL), "{found:?}");

    let found = probe(vec![
        ("VAULT_ADDR", bao.addr()),
        ("VAULT_TOKEN", "t".into()),
        ("VAULT_SKIP_VERIFY", "maybe".into()),
    ])
    .await;
    assert_eq!(found[0].level, ProbeLevel::Fail, "{found:?}");
    assert!(found[0].detail.contains("VAULT_SKIP_VERIFY"), "{found:?}");

    // Plain http to a remote host: refused by the backend's address check, so the doctor sends nothing.
    let found = probe(vec![
        ("VAULT_ADDR", "http://10.255.255.1:8200".into()),
        ("VAULT_TOKEN", "t".into()),
    ])
    .await;
    assert_eq!(found[0].level, ProbeLevel::Fail, "{found:?}");
    assert!(found[0].detail.contains("SKM_VAULT_ALLOW_HTTP"), "{found:?}");
}

/// A control character in `VAULT_TOKEN` or `VAULT_NAMESPACE` is a configuration error naming the variable,
/// not a panic inside vaultrs (issue 17; panicked before the fix).
#[tokio::test]
async fn control_characters_in_token_or_namespace_are_config_errors() {
    for (name, value) in [
        ("VAULT_TOKEN", format!("{SENTINEL}\nX")),
        ("VAULT_NAMESPACE", "team\u{7}".to_string()),
    ] {
        let mut pairs = vec![
            ("VAULT_ADDR", "http://127.0.0.1:1".to_string()),
            ("VAULT_TOKEN", "t".to_string()),
        ];
        pairs.retain(|(k, _)| *k != name);
        pairs.push((name, value));
        let e = VaultBuilder::from_vars(vars(&pairs))
            .unwrap()
            .build()
            .await
            .unwrap_err();
        assert!(matches!(e, skm::Error::Config(_)), "{e:?}");
        assert!(e.to_string().contains(name) && !e.to_string().contains(SENTINEL), "{e}");
    }
}

/// KV v2 check-and-set through `expected_version`, and JSON text written as is (issue 17: it was parsed
/// and re-serialized by vaultrs before).
#[tokio::test]
async fn kv2_check_and_set_and_exact_json() {
    let bao = Bao::start().await;
    let vault = root(&bao).await;
    assert!(vault.supports_cas());
    let put = |expected: Option<&str>, v: &str| {
        let mut r = PutRequest::new("cas/x", SecretValue::text(v));
        r.expected_version = expected.map(str::to_string);
        r
    };
    assert_eq!(vault.put(put(None, r#"{"k":"a"}"#)).await.unwrap(), "1");
    assert_eq!(vault.put(put(Some("1"), r#"{"k":"b"}"#)).await.unwrap(), "2");
    let e = vault.put(put(Some("1"), r#"{"k":"c"}"#)).await.unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::Conflict, "{e}");
    let e = vault.put(put(Some("x"), r#"{"k":"c"}"#)).await.unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::Conflict, "{e}");

    // JSON text is sent as written (the unit test `json_text_is_written_as_is` checks the bytes). OpenBao
    // itself decodes numbers into float64, so a big integer cannot be checked end to end against it; a
    // u64-range integer must come back exactly.
    let exact = "18014398509481984";
    vault
        .put(PutRequest::new(
            "big",
            SecretValue::text(format!(r#"{{"id":{exact}}}"#)),
        ))
        .await
        .unwrap();
    let read = vault.fetch(&[FetchRequest::current("big")]).await;
    assert_eq!(text(&read[0]), format!(r#"{{"id":{exact}}}"#));
}

/// A token is never sent over plain http to a non-loopback host: refused before any connection, with an
/// error that says how to fix it.
#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused() {
    let started = Instant::now();
    let builder = VaultBuilder::from_vars(vars(&[
        ("VAULT_ADDR", "http://10.255.255.1:8200".into()),
        ("VAULT_TOKEN", SENTINEL.into()),
    ]))
    .unwrap();
    let e = builder.build().await.unwrap_err();
    assert!(matches!(e, skm::Error::Config(_)), "{e:?}");
    let msg = e.to_string();
    for part in [
        "http://",
        "10.255.255.1",
        "https://",
        "SKM_VAULT_ALLOW_HTTP=1",
        "allow_insecure_http(true)",
    ] {
        assert!(msg.contains(part), "{part} missing from: {msg}");
    }
    assert!(!msg.contains(SENTINEL));
    // A connection attempt to an unroutable address would take seconds; the refusal takes none.
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // No token at all: a configuration error that names the ways to give one.
    let e = VaultBuilder::from_vars(vars(&[("VAULT_ADDR", "http://127.0.0.1:1".into())]))
        .unwrap()
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("VAULT_TOKEN"), "{e}");
}

/// Server and network failures map to their kinds: sealed/503 and resets are unavailable, 429 throttled.
#[tokio::test]
async fn failures_map_to_kinds() {
    let bao = Bao::start().await;
    write(&bao, "app/x", json!({ "k": SENTINEL })).await;
    let proxy = Proxy::start(&bao.addr()).await;
    let backend = VaultBuilder::new(proxy.url())
        .token(bao.root_token())
        .timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let read = || async { backend.fetch(&[FetchRequest::current("app/x")]).await.remove(0) };

    // Transient failures, timeouts included, are retried four times (five attempts); a client error is not.
    for (action, expected, attempts) in [
        (Action::vault_error(503, "Vault is sealed"), FailureKind::Unavailable, 5),
        (
            Action::vault_error(429, "rate limit quota exceeded"),
            FailureKind::Throttled,
            5,
        ),
        (Action::vault_error(500, "internal error"), FailureKind::Unavailable, 5),
        (Action::Reset, FailureKind::Unavailable, 5),
        (Action::Stall, FailureKind::Unavailable, 5),
        (Action::vault_error(400, "bad request"), FailureKind::Other, 1),
    ] {
        let shown = format!("{action:?}");
        proxy.set_rule(move |_| action.clone());
        proxy.clear();
        let r = read().await;
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.kind, expected, "{shown}: {e}");
        assert!(
            e.detail.contains("`app/x`") && e.detail.contains("mount `secret`"),
            "{e}"
        );
        assert!(!e.to_string().contains(SENTINEL));
        assert_eq!(proxy.count_of("GET /v1/secret/data/app/x"), attempts, "{shown}: {e}");
    }
    // A transient failure that clears up within the retries is invisible.
    let failures = Arc::new(Mutex::new(1));
    let left = failures.clone();
    proxy.set_rule(move |_| {
        let mut left = left.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            Action::vault_error(503, "Vault is sealed")
        } else {
            Action::Forward
        }
    });
    assert_eq!(text(&read().await), format!(r#"{{"k":"{SENTINEL}"}}"#));
    proxy.clear_rule();
    assert_eq!(text(&read().await), format!(r#"{{"k":"{SENTINEL}"}}"#));

    // Really sealed.
    bao.bao(&["operator", "seal"]).await;
    let e = read().await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
    assert!(e.detail.contains("503"), "{e}");

    // Nothing listening.
    let port = skm_testing::free_port();
    let down = VaultBuilder::new(format!("http://127.0.0.1:{port}"))
        .token("t")
        .build()
        .await
        .expect("a server that is down does not fail the build");
    let e = down
        .fetch(&[FetchRequest::current("app/x")])
        .await
        .remove(0)
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
    assert!(e.detail.contains("cannot reach Vault"), "{e}");
}

/// TLS with the server's CA from `VAULT_CACERT`; without it the certificate is refused.
#[tokio::test]
async fn tls_with_vault_cacert() {
    let server = TlsBao::start().await;
    let backend = VaultBuilder::from_vars(vars(&[
        ("VAULT_ADDR", server.addr.clone()),
        ("VAULT_TOKEN", "tls-root".into()),
        ("VAULT_CACERT", server.ca.display().to_string()),
    ]))
    .unwrap()
    .build()
    .await
    .unwrap();
    backend
        .put(PutRequest::new("tls/x", SecretValue::map([("k", "over-tls")])))
        .await
        .expect("write over TLS");
    assert_eq!(
        text(&backend.fetch(&[FetchRequest::current("tls/x")]).await[0]),
        r#"{"k":"over-tls"}"#
    );

    let untrusting = VaultBuilder::new(server.addr.clone())
        .token("tls-root")
        .build()
        .await
        .unwrap();
    let e = untrusting
        .fetch(&[FetchRequest::current("tls/x")])
        .await
        .remove(0)
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
}

/// An OpenBao dev server with TLS (`-dev-tls`), which `skm_testing::Bao` does not offer.
struct TlsBao {
    child: std::process::Child,
    addr: String,
    ca: PathBuf,
}

impl TlsBao {
    async fn start() -> TlsBao {
        for _ in 0..5 {
            let port = skm_testing::free_port();
            let dir = scratch(&format!("tls-{port}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut command = Command::new(skm_testing::venv_bin("bao"));
            command
                .args([
                    "server",
                    "-dev",
                    "-dev-tls",
                    &format!("-dev-tls-cert-dir={}", dir.display()),
                    "-dev-no-store-token",
                    "-dev-root-token-id=tls-root",
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                ])
                .env("HOME", &dir)
                .stdout(std::fs::File::create(dir.join("log")).unwrap())
                .stderr(std::fs::File::create(dir.join("err")).unwrap());
            for (k, _) in std::env::vars() {
                if k.starts_with("VAULT_") || k.starts_with("BAO_") {
                    command.env_remove(k);
                }
            }
            let mut server = TlsBao {
                child: command.spawn().expect("start bao -dev-tls"),
                addr: format!("https://127.0.0.1:{port}"),
                ca: dir.join("vault-ca.pem"),
            };
            if server.ready().await {
                return server;
            }
            // Dropping it kills it; the next attempt takes another port (this one, or its neighbour used by
            // the cluster listener, may have been taken).
        }
        panic!("bao -dev-tls did not start in 5 attempts");
    }

    async fn ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if self.ca.exists() {
                let probe = VaultBuilder::new(self.addr.clone())
                    .token("tls-root")
                    .ca_cert(&self.ca)
                    .kv_version(KvVersion::V2)
                    .build()
                    .await
                    .unwrap();
                let r = probe.fetch(&[FetchRequest::current("probe")]).await;
                if r[0].as_ref().err().is_some_and(|e| e.kind == FailureKind::NotFound) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

impl Drop for TlsBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Secrets)]
struct WatchedVault {
    #[secret(path = "watch/jwt", key = "secret")]
    jwt: skm::Rotating<SecretString>,
    #[secret(path = "watch/db", key = "password")]
    db: SecretString,
}

/// Hot reload through KV v2 metadata: an unchanged tick reads only metadata (no data), a new version is
/// seen within one TTL, and rotation grace returns latest and latest − 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_checks_metadata_versions_and_follows_rotation() {
    let bao = Bao::start().await;
    write(&bao, "watch/jwt", json!({ "secret": "jwt-v1" })).await;
    write(&bao, "watch/jwt", json!({ "secret": "jwt-v2" })).await;
    write(&bao, "watch/db", json!({ "password": "db-v1" })).await;
    let proxy = Proxy::start(&bao.addr()).await;
    let backend = VaultBuilder::new(proxy.url())
        .token(bao.root_token())
        .build()
        .await
        .unwrap();

    let ttl = Duration::from_millis(300);
    let mut watch = loader(&backend)
        .watch::<WatchedVault>(skm::WatchOptions::ttl(ttl))
        .await
        .unwrap();
    assert_eq!(watch.latest().jwt.current().expose_secret(), "jwt-v2");
    assert_eq!(watch.latest().jwt.previous().unwrap().expose_secret(), "jwt-v1");

    proxy.clear();
    watch.refresh_now();
    watch.wait_ticks(1).await;
    let ops: Vec<String> = proxy.requests().iter().map(|r| r.operation()).collect();
    assert!(
        !ops.is_empty() && ops.iter().all(|o| o.contains("/metadata/")),
        "{ops:?}"
    );
    assert_eq!(watch.stats().changes, 0);

    write(&bao, "watch/jwt", json!({ "secret": "jwt-v3" })).await;
    tokio::time::timeout(ttl * 3, watch.changed())
        .await
        .expect("change within the TTL")
        .unwrap();
    let now = watch.get().unwrap();
    assert_eq!(now.jwt.current().expose_secret(), "jwt-v3");
    assert_eq!(now.jwt.previous().unwrap().expose_secret(), "jwt-v2");
    assert_eq!(now.db.expose_secret(), "db-v1");
    // Only the rotated path's data was read again.
    let data_reads: Vec<String> = proxy
        .requests()
        .iter()
        .map(|r| r.operation())
        .filter(|o| o.contains("/data/"))
        .collect();
    assert!(data_reads.iter().all(|o| o.contains("watch/jwt")), "{data_reads:?}");

    // Backend stopped during a refresh: the old values stay, the failure is recorded.
    drop(bao);
    let ticks = watch.stats().ticks;
    watch.refresh_now();
    watch.wait_ticks(ticks + 1).await;
    assert!(watch.stats().failures >= 1, "{:?}", watch.stats());
    assert_eq!(watch.get().unwrap().jwt.current().expose_secret(), "jwt-v3");
}

// Issue 23: no call waits forever. A Vault that accepts connections and never answers must fail the load well
// within the loader's default deadline (30 s) with an error naming Vault; a refused port must fail at once.

/// A listener on 127.0.0.1 that accepts every connection and never sends a byte.
async fn silent_listener() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_silent_vault_fails_the_load_within_the_call_bound() {
    let (addr, server) = silent_listener().await;
    let env = [
        ("VAULT_ADDR", format!("http://{addr}")),
        ("VAULT_TOKEN", SENTINEL.to_string()),
    ];
    let started = Instant::now();
    // Defaults only: no timeout, retries or deadline set by the test.
    let build = VaultBuilder::from_vars(vars(&env)).unwrap().build();
    let backend = tokio::time::timeout(Duration::from_secs(20), build)
        .await
        .unwrap_or_else(|_| panic!("the build still waited after 20 s"))
        .expect("a silent server does not fail the build");
    let built_in = started.elapsed();
    // The build's token lookup is one request: one attempt timeout (5 s), no more.
    assert!(built_in < Duration::from_secs(7), "the build took {built_in:?}");

    let started = Instant::now();
    let loader = Loader::new()
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .backend(backend);
    assert_eq!(loader.deadline_limit(), Some(Duration::from_secs(30)));
    let err = tokio::time::timeout(Duration::from_secs(40), loader.load::<DbSecrets>())
        .await
        .unwrap_or_else(|_| panic!("the load still waited after 40 s"))
        .err()
        .expect("nothing answered");
    let took = started.elapsed();
    let text = err.to_string();
    eprintln!("silent Vault: built in {built_in:?}, the load failed in {took:?}: {text}");
    assert!(took < Duration::from_secs(12), "the load took {took:?}: {text}");
    assert!(text.contains("Vault"), "{text}");
    assert!(!text.contains("deadline"), "Vault's own bound answers first: {text}");
    assert!(!text.contains(SENTINEL), "{text}");
    server.abort();
}

#[tokio::test]
async fn a_refused_vault_fails_at_once() {
    let port = skm_testing::free_port();
    let env = [
        ("VAULT_ADDR", format!("http://127.0.0.1:{port}")),
        ("VAULT_TOKEN", SENTINEL.to_string()),
    ];
    let started = Instant::now();
    let backend = VaultBuilder::from_vars(vars(&env))
        .unwrap()
        .build()
        .await
        .expect("build");
    let err = Loader::new()
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
        .backend(backend)
        .load::<DbSecrets>()
        .await
        .err()
        .expect("nothing listens");
    let took = started.elapsed();
    let text = err.to_string();
    eprintln!("refused Vault: build and load failed in {took:?}: {text}");
    // Five attempts take at least 0.75 s of backoff (half of 100 + 200 + 400 + 800 ms): a refused connection
    // is not retried, so the whole build and load take a few milliseconds.
    assert!(took < Duration::from_millis(700), "took {took:?}: {text}");
    assert!(
        text.contains("Vault") && text.to_lowercase().contains("refused"),
        "{text}"
    );
}
