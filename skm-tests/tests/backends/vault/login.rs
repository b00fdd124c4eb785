//! Vault login without a stored secret (issue 28): JWT/OIDC login (a JWT file, GitHub Actions' OIDC endpoint)
//! and TLS certificate login, against a real OpenBao dev server.
//!
//! OpenBao's `jwt` auth method is configured with a public key (`jwt_validation_pubkeys`) whose private half
//! signs the test's JWTs (`Bao::sign_jwt`, ES256); GitHub Actions' OIDC endpoint is a small local server that
//! follows GitHub's documented request (`GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with
//! `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`) and answer (`{"value": "<JWT>"}`). The `cert`
//! method runs on OpenBao's TLS listener (`-dev-tls`) with a client CA made by the test (`Bao::client_ca_pem`).
//!
//! Tests that need `AppSecrets::load()` with the real process environment run this binary again as a child
//! process with exactly the variables a user would set (no `VAULT_TOKEN`), and with every tracing event down
//! to TRACE printed to stderr, so that the sentinel checks cover logs too.
#![cfg(feature = "vault")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use skm::backend::vault::{VaultBackend, VaultBuilder};
use skm::backend::{Backend, FailureKind, FetchRequest, SecretValue};
use skm::{ExposeSecret, Loader, SecretString, Secrets};
use skm_testing::{Action, Bao, Proxy};

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const AUDIENCE: &str = "https://vault.skm.test";
const REPO: &str = "acme/app";
/// The Actions endpoint's request token: a credential, never to be printed.
const REQUEST_TOKEN: &str = "SENTINEL-actions-request-token-7c1e";
const VALUE: &str = "value-read-after-login";

#[derive(Secrets)]
struct DeploySecrets {
    #[secret(path = "ci/deploy", key = "api_key")]
    api_key: SecretString,
}

fn vars(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn loader(backend: &VaultBackend) -> Loader {
    Loader::new()
        .backend(backend.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skm-vault-login-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn api_ok(bao: &Bao, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = bao.api(method, path, body).await;
    assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
    answer
}

/// The secret the struct reads, and a policy `ci-read` that may read it.
async fn seed(bao: &Bao) {
    api_ok(
        bao,
        "POST",
        "secret/data/ci/deploy",
        json!({ "data": { "api_key": VALUE } }),
    )
    .await;
    bao.bao_with_stdin(
        &["policy", "write", "ci-read", "-"],
        br#"path "secret/data/ci/*" { capabilities = ["read"] }"#,
    )
    .await;
}

/// The claims GitHub puts in a job's OIDC token (the ones a role binds), valid for `ttl` seconds from now.
fn github_claims(repository: &str, iat: u64, exp: u64) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": format!("repo:{repository}:ref:refs/heads/main"),
        "repository": repository,
        "repository_owner": repository.split('/').next().unwrap(),
        "ref": "refs/heads/main",
        "iat": iat,
        "nbf": iat,
        "exp": exp,
    })
}

/// OpenBao's `jwt` method at `jwt/` with a role `ci` bound to GitHub's claims for [`REPO`].
async fn enable_jwt(bao: &Bao, token_ttl: &str, token_max_ttl: &str) {
    seed(bao).await;
    bao.enable_jwt("jwt", ISSUER).await;
    api_ok(
        bao,
        "POST",
        "auth/jwt/role/ci",
        json!({
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": [AUDIENCE],
            "bound_claims": { "repository": REPO },
            "token_policies": ["ci-read"],
            "token_ttl": token_ttl,
            "token_max_ttl": token_max_ttl,
        }),
    )
    .await;
}

fn jwt_file(name: &str, jwt: &str) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, jwt).unwrap();
    path
}

/// A stand-in for GitHub Actions' OIDC endpoint: answers `GET /idtoken?api-version=2.0&audience=...` with
/// `{"value": jwt}` when the bearer is [`REQUEST_TOKEN`], 401 otherwise.
async fn actions_endpoint(jwt: String) -> Proxy {
    Proxy::stub(move |request| {
        let bearer = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if request.method != "GET" || !request.path.starts_with("/idtoken?") {
            Action::json(404, &json!({ "message": "Not Found" }))
        } else if bearer != format!("Bearer {REQUEST_TOKEN}") {
            Action::json(401, &json!({ "message": "Unauthorized" }))
        } else {
            Action::json(200, &json!({ "count": 1, "value": jwt }))
        }
    })
    .await
}

fn actions_url(endpoint: &Proxy) -> String {
    format!("{}/idtoken?api-version=2.0", endpoint.url())
}

/// Entry point of the child processes below; does nothing in a normal run.
#[tokio::test]
async fn child_process_entry() {
    let Ok(mode) = std::env::var("SKM_VAULT_LOGIN_CHILD") else {
        return;
    };
    // Every event of every crate (skm, vaultrs, rustify, reqwest, hyper) on stderr, for the sentinel checks.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr)
        .try_init()
        .expect("the child's only subscriber");
    match mode.as_str() {
        "load" => {
            let s = DeploySecrets::load()
                .await
                .unwrap_or_else(|e| panic!("load failed: {e}"));
            assert_eq!(s.api_key.expose_secret(), VALUE);
        }
        "fail" => {
            let e = match DeploySecrets::load().await {
                Ok(_) => panic!("the load should fail"),
                Err(e) => e,
            };
            println!("ERROR-DISPLAY {e}");
            println!("ERROR-DEBUG {e:?}");
        }
        other => panic!("unknown SKM_VAULT_LOGIN_CHILD mode {other}"),
    }
    println!("CHILD-OK {mode}");
}

/// The full name of `child_process_entry` in this test binary: `child_process_entry` when this file is the
/// binary, `vault_login::child_process_entry` when it is a module of one.
fn child_test_name() -> String {
    match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::child_process_entry"),
        None => "child_process_entry".into(),
    }
}

/// Runs `AppSecrets::load()` in a child process with exactly `env`; returns its stdout and stderr.
fn run_child(mode: &str, env: &[(&str, String)]) -> (String, String) {
    let dir = scratch(&format!("child-{mode}-{}", now()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([&child_test_name(), "--exact", "--nocapture", "--test-threads=1"])
        .env_clear()
        // An empty directory: no `.env`, no local store, no ~/.vault-token.
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("SKM_VAULT_LOGIN_CHILD", mode);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run the test binary again");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success() && stdout.contains(&format!("CHILD-OK {mode}")),
        "child {mode} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

async fn child(mode: &'static str, env: Vec<(&'static str, String)>) -> (String, String) {
    tokio::task::spawn_blocking(move || run_child(mode, &env))
        .await
        .unwrap()
}

/// Asserts that `text` holds no part of `jwt` long enough to matter: the whole token, its claims or its
/// signature.
fn assert_no_jwt(text: &str, jwt: &str, context: &str) {
    assert!(!text.contains(jwt), "{context} prints the JWT:\n{text}");
    for (i, part) in jwt.split('.').enumerate().skip(1) {
        assert!(!text.contains(part), "{context} prints part {i} of the JWT:\n{text}");
    }
}

/// `SKM_VAULT_AUTH=jwt` with a JWT file and no `VAULT_TOKEN`: a struct loads; a JWT for another repository
/// (claims the role does not bind) is refused.
#[tokio::test]
async fn jwt_login_from_a_file() {
    let bao = Bao::start().await;
    enable_jwt(&bao, "1h", "2h").await;
    let t = now();
    let jwt = bao.sign_jwt(&github_claims(REPO, t, t + 600));
    let file = jwt_file("jwt-ok", &jwt);
    let env = |file: &Path| {
        vec![
            ("VAULT_ADDR", bao.addr()),
            ("SKM_VAULT_AUTH", "jwt".to_string()),
            ("SKM_VAULT_JWT_ROLE", "ci".to_string()),
            ("SKM_VAULT_JWT_FILE", file.display().to_string()),
        ]
    };

    let backend = VaultBuilder::from_vars(vars(&env(&file)))
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!(backend.logins(), 1);
    let s: DeploySecrets = loader(&backend).load().await.expect("load");
    assert_eq!(s.api_key.expose_secret(), VALUE);

    // The same through the process environment, as an application runs.
    child("load", env(&file)).await;

    // A JWT of another repository: signed by the trusted key, but the role's bound claims do not match.
    let other = bao.sign_jwt(&github_claims("mallory/app", t, t + 600));
    let file = jwt_file("jwt-other-repo", &other);
    let backend = VaultBuilder::from_vars(vars(&env(&file)))
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!(backend.logins(), 0);
    let e = backend
        .fetch(&[FetchRequest::current("ci/deploy")])
        .await
        .remove(0)
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Forbidden, "{e}");
    assert!(
        e.detail.contains("JWT role `ci`") && e.detail.contains("login failed"),
        "{e}"
    );
    assert_no_jwt(&e.to_string(), &other, "the error");
}

/// In GitHub Actions: the JWT comes from the runner's OIDC endpoint, asked as GitHub documents it, with the
/// audience from `SKM_VAULT_JWT_AUDIENCE`; a struct loads with no `VAULT_TOKEN` and no JWT file.
#[tokio::test]
async fn jwt_login_from_the_github_actions_endpoint() {
    let bao = Bao::start().await;
    enable_jwt(&bao, "1h", "2h").await;
    let t = now();
    let jwt = bao.sign_jwt(&github_claims(REPO, t, t + 600));
    let endpoint = actions_endpoint(jwt.clone()).await;
    let env = vec![
        ("VAULT_ADDR", bao.addr()),
        ("SKM_VAULT_AUTH", "jwt".to_string()),
        ("SKM_VAULT_JWT_ROLE", "ci".to_string()),
        ("SKM_VAULT_JWT_AUDIENCE", AUDIENCE.to_string()),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", actions_url(&endpoint)),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN.to_string()),
    ];
    let (stdout, stderr) = child("load", env.clone()).await;
    for text in [&stdout, &stderr] {
        assert_no_jwt(text, &jwt, "the child's output");
        assert!(!text.contains(REQUEST_TOKEN), "the request token is printed:\n{text}");
    }

    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1, "one login, one JWT: {requests:?}");
    let request = &requests[0];
    assert_eq!(request.method, "GET");
    let query = request.path.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let pairs: Vec<(String, String)> = query
        .split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.replace("%3A", ":").replace("%2F", "/"))
        })
        .collect();
    assert!(pairs.contains(&("api-version".into(), "2.0".into())), "{query}");
    assert!(pairs.contains(&("audience".into(), AUDIENCE.into())), "{query}");
    assert_eq!(
        request.headers["authorization"],
        format!("Bearer {REQUEST_TOKEN}").as_str()
    );

    // A refused request token (the job lacks `id-token: write`, or it expired) is a clear error.
    let mut refused = env.clone();
    refused.retain(|(k, _)| *k != "ACTIONS_ID_TOKEN_REQUEST_TOKEN");
    refused.push(("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "SENTINEL-wrong-request-token".into()));
    let backend = VaultBuilder::from_vars(vars(&refused)).unwrap().build().await.unwrap();
    let e = backend
        .fetch(&[FetchRequest::current("ci/deploy")])
        .await
        .remove(0)
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Forbidden, "{e}");
    assert!(
        e.detail.contains("GitHub Actions OIDC endpoint") && e.detail.contains("HTTP 401"),
        "{e}"
    );
    assert!(e.detail.contains("id-token: write"), "{e}");
    assert!(!e.to_string().contains("SENTINEL-wrong-request-token"), "{e}");
}

/// An expired JWT and a JWT signed by a key OpenBao does not trust both fail the load clearly (access
/// denied, naming the role and the file), and neither the error, its Debug form, nor any log line at any
/// level prints the JWT.
#[tokio::test]
async fn an_expired_or_wrongly_signed_jwt_fails_clearly_without_printing_it() {
    let bao = Bao::start().await;
    enable_jwt(&bao, "1h", "2h").await;
    let t = now();
    let expired = bao.sign_jwt(&github_claims(REPO, t - 7200, t - 3600));
    let forged = Bao::sign_jwt_with_another_key(&github_claims(REPO, t, t + 600));
    for (name, jwt) in [("expired", &expired), ("forged", &forged)] {
        let file = jwt_file(&format!("jwt-{name}"), jwt);
        let env = vec![
            ("VAULT_ADDR", bao.addr()),
            ("SKM_VAULT_AUTH", "jwt".to_string()),
            ("SKM_VAULT_JWT_ROLE", "ci".to_string()),
            ("SKM_VAULT_JWT_FILE", file.display().to_string()),
        ];
        let backend = VaultBuilder::from_vars(vars(&env)).unwrap().build().await.unwrap();
        let e = backend
            .fetch(&[FetchRequest::current("ci/deploy")])
            .await
            .remove(0)
            .unwrap_err();
        eprintln!("{name}: {e}");
        assert_eq!(e.kind, FailureKind::Forbidden, "{name}: {e}");
        assert!(
            e.detail.contains("JWT role `ci` (auth/jwt) login failed"),
            "{name}: {e}"
        );
        assert!(
            e.detail.contains(&file.display().to_string()),
            "{name} names the file: {e}"
        );
        assert_no_jwt(&format!("{e} {e:?}"), jwt, name);

        let (stdout, stderr) = child("fail", env).await;
        assert!(stdout.contains("login failed"), "{name}: {stdout}");
        assert!(
            stderr.contains("Vault login failed"),
            "{name}: the child logs at every level:\n{stderr}"
        );
        assert_no_jwt(&stdout, jwt, &format!("{name}: the child's stdout"));
        assert_no_jwt(&stderr, jwt, &format!("{name}: the child's stderr"));
    }
}

/// The Vault token lives 2 s and at most 4 s: the backend logs in again before it expires, asking GitHub
/// Actions for a fresh JWT each time, and no read fails.
#[tokio::test]
async fn jwt_logs_in_again_before_the_token_expires() {
    let bao = Bao::start().await;
    enable_jwt(&bao, "2s", "4s").await;
    let t = now();
    let endpoint = actions_endpoint(bao.sign_jwt(&github_claims(REPO, t, t + 600))).await;
    let backend = VaultBuilder::from_vars(vars(&[
        ("VAULT_ADDR", bao.addr()),
        ("SKM_VAULT_AUTH", "jwt".to_string()),
        ("SKM_VAULT_JWT_ROLE", "ci".to_string()),
        ("SKM_VAULT_JWT_AUDIENCE", AUDIENCE.to_string()),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", actions_url(&endpoint)),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN.to_string()),
    ]))
    .unwrap()
    .build()
    .await
    .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let r = backend.fetch(&[FetchRequest::current("ci/deploy")]).await.remove(0);
        match r {
            Ok(found) => assert!(matches!(found.value, SecretValue::Text(_))),
            Err(e) => panic!("read failed at {:?}: {e}", started.elapsed()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (logins, asked) = (backend.logins(), endpoint.requests().len() as u64);
    eprintln!(
        "JWT, max TTL 4 s: {logins} logins, {asked} JWTs asked for, {} renewals",
        backend.renewals()
    );
    assert!(logins >= 3, "logged in {logins} times in 10 s with a 4 s max TTL");
    assert_eq!(asked, logins, "each login asks for a fresh JWT");
}

// ---------------------------------------------------------------------------------------------------------
// TLS certificate login

/// OpenBao over TLS with the `cert` method at `cert/` and a role `web` trusting the test's client CA.
async fn enable_cert(token_ttl: &str) -> Bao {
    let bao = Bao::start_tls().await;
    seed(&bao).await;
    api_ok(&bao, "POST", "sys/auth/cert", json!({ "type": "cert" })).await;
    api_ok(
        &bao,
        "POST",
        "auth/cert/certs/web",
        json!({
            "certificate": bao.client_ca_pem(),
            "token_policies": ["ci-read"],
            "token_ttl": token_ttl,
            "token_max_ttl": "1h",
        }),
    )
    .await;
    bao
}

fn cert_env(bao: &Bao, cert: &Path, key: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("VAULT_ADDR", bao.addr()),
        ("VAULT_CACERT", bao.ca_cert_path().unwrap().display().to_string()),
        ("SKM_VAULT_AUTH", "cert".to_string()),
        ("SKM_VAULT_CERT_ROLE", "web".to_string()),
        ("VAULT_CLIENT_CERT", cert.display().to_string()),
        ("VAULT_CLIENT_KEY", key.display().to_string()),
    ]
}

/// `SKM_VAULT_AUTH=cert` over TLS with no `VAULT_TOKEN`: a struct loads; a certificate from another CA is
/// refused clearly (access denied, naming the certificate file, never the key); plain http is a
/// configuration error.
#[tokio::test]
async fn cert_login_over_tls() {
    let bao = enable_cert("1h").await;
    let dir = scratch(&format!("certs-{}", bao.port()));
    let (cert, key) = bao.issue_client_cert(&dir, "web-1");

    let backend = VaultBuilder::from_vars(vars(&cert_env(&bao, &cert, &key)))
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!(backend.logins(), 1);
    let s: DeploySecrets = loader(&backend).load().await.expect("load");
    assert_eq!(s.api_key.expose_secret(), VALUE);
    // Every role of the mount when no role is named.
    let mut any_role = cert_env(&bao, &cert, &key);
    any_role.retain(|(k, _)| *k != "SKM_VAULT_CERT_ROLE");
    let backend = VaultBuilder::from_vars(vars(&any_role)).unwrap().build().await.unwrap();
    assert_eq!(backend.logins(), 1);
    // And through the process environment, as an application runs.
    child("load", cert_env(&bao, &cert, &key)).await;

    let (stranger, stranger_key) = Bao::stranger_client_cert(&dir, "stranger");
    let env = cert_env(&bao, &stranger, &stranger_key);
    let backend = VaultBuilder::from_vars(vars(&env)).unwrap().build().await.unwrap();
    assert_eq!(backend.logins(), 0);
    let e = backend
        .fetch(&[FetchRequest::current("ci/deploy")])
        .await
        .remove(0)
        .unwrap_err();
    eprintln!("stranger: {e}");
    assert_eq!(e.kind, FailureKind::Forbidden, "{e}");
    assert!(
        e.detail.contains("certificate role `web` (auth/cert) login failed"),
        "{e}"
    );
    assert!(
        e.detail.contains(&stranger.display().to_string()),
        "names the certificate file: {e}"
    );
    let key_pem = std::fs::read_to_string(&stranger_key).unwrap();
    let key_body: String = key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let (stdout, stderr) = child("fail", env).await;
    assert!(stdout.contains("login failed"), "{stdout}");
    assert!(
        stderr.contains("Vault login failed"),
        "the child logs at every level:\n{stderr}"
    );
    for text in [&stdout, &stderr, &format!("{e:?}")] {
        for line in key_body.as_bytes().chunks(32) {
            assert!(
                !text.contains(std::str::from_utf8(line).unwrap()),
                "key material printed:\n{text}"
            );
        }
    }

    // The certificate goes in the TLS handshake: plain http cannot carry it.
    let mut plain = cert_env(&bao, &cert, &key);
    plain[0].1 = format!("http://127.0.0.1:{}", bao.port());
    let e = VaultBuilder::from_vars(vars(&plain))
        .unwrap()
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("https://"), "{e}");
    // A missing key file is a configuration error at build.
    let e = VaultBuilder::from_vars(vars(&cert_env(&bao, &cert, &dir.join("missing-key.pem"))))
        .unwrap()
        .build()
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("missing-key.pem") && e.to_string().contains("VAULT_CLIENT_KEY"),
        "{e}"
    );
}

/// The token lives 2 s: it is renewed (presenting the certificate, which OpenBao checks) and reads never fail;
/// when the platform renews the certificate on disk, the next read logs in again with the new one.
#[tokio::test]
async fn cert_token_is_renewed_and_a_renewed_certificate_logs_in_again() {
    let bao = enable_cert("2s").await;
    let dir = scratch(&format!("certs-{}", bao.port()));
    let (cert, key) = bao.issue_client_cert(&dir, "web-1");
    let backend = VaultBuilder::from_vars(vars(&cert_env(&bao, &cert, &key)))
        .unwrap()
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let r = backend.fetch(&[FetchRequest::current("ci/deploy")]).await.remove(0);
        if let Err(e) = r {
            panic!("read failed at {:?}: {e}", started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (logins, renewals) = (backend.logins(), backend.renewals());
    eprintln!("cert, TTL 2 s: {logins} logins, {renewals} renewals in 5 s");
    assert!(renewals >= 1, "renewed {renewals} times");

    // The platform renews the certificate in place (a new key, same files).
    tokio::time::sleep(Duration::from_millis(20)).await;
    bao.issue_client_cert(&dir, "web-1");
    let r = backend.fetch(&[FetchRequest::current("ci/deploy")]).await.remove(0);
    assert!(r.is_ok(), "{:?}", r.err());
    assert_eq!(
        backend.logins(),
        logins + 1,
        "logged in again with the renewed certificate"
    );
    // And it keeps working past the token's TTL with the new certificate.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = backend.fetch(&[FetchRequest::current("ci/deploy")]).await.remove(0);
    assert!(r.is_ok(), "{:?}", r.err());
}

/// `skm policy --vault --github-repo acme/app`: the policy and the JWT role it prints, written to OpenBao as
/// printed, let a job of that repository (GitHub's default audience, the owner's URL) load the struct, and
/// refuse a job of another repository.
#[tokio::test]
async fn the_printed_github_role_lets_that_repository_in() {
    use skm::backend::registry::{PolicyBody, PolicyInput};
    let bao = Bao::start().await;
    seed(&bao).await;
    bao.enable_jwt("jwt", ISSUER).await;
    let paths = vec!["ci/deploy".to_string()];
    let option = |n: &str| (n == "github-repo").then(|| REPO.to_string());
    let doc = skm::backend::vault::policy::render(&PolicyInput {
        struct_name: "DeploySecrets",
        paths: &paths,
        option: &option,
        env: &|_| None,
    })
    .unwrap();
    let PolicyBody::Text(hcl) = doc.body else {
        panic!("HCL is text")
    };
    bao.bao_with_stdin(&["policy", "write", "deploy-secrets", "-"], hcl.as_bytes())
        .await;
    let role = hcl
        .lines()
        .find(|l| l.starts_with("#   {"))
        .unwrap_or_else(|| panic!("no role JSON in:\n{hcl}"))
        .trim_start_matches("#   ");
    assert!(hcl.contains("vault write auth/jwt/role/deploy-secrets -"), "{hcl}");
    bao.bao_with_stdin(&["write", "auth/jwt/role/deploy-secrets", "-"], role.as_bytes())
        .await;

    let t = now();
    let mut claims = github_claims(REPO, t, t + 600);
    claims["aud"] = json!("https://github.com/acme");
    let file = jwt_file("jwt-printed-role", &bao.sign_jwt(&claims));
    let env = |file: &Path| {
        vec![
            ("VAULT_ADDR", bao.addr()),
            ("SKM_VAULT_AUTH", "jwt".to_string()),
            ("SKM_VAULT_JWT_ROLE", "deploy-secrets".to_string()),
            ("SKM_VAULT_JWT_FILE", file.display().to_string()),
        ]
    };
    let backend = VaultBuilder::from_vars(vars(&env(&file)))
        .unwrap()
        .build()
        .await
        .unwrap();
    let s: DeploySecrets = loader(&backend).load().await.expect("load with the printed role");
    assert_eq!(s.api_key.expose_secret(), VALUE);

    let mut other = github_claims("acme/other", t, t + 600);
    other["aud"] = json!("https://github.com/acme");
    let file = jwt_file("jwt-printed-role-other", &bao.sign_jwt(&other));
    let backend = VaultBuilder::from_vars(vars(&env(&file)))
        .unwrap()
        .build()
        .await
        .unwrap();
    let e = backend
        .fetch(&[FetchRequest::current("ci/deploy")])
        .await
        .remove(0)
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Forbidden, "{e}");
}
