//! Logging in to Vault (AppRole, Kubernetes) and keeping the token alive: background renewal, re-login at the
//! max TTL, backoff during an outage, and headers that could not be sent.

use super::*;

/// A self-signed CA certificate for the Kubernetes auth config. OpenBao only parses it: the TokenReview
/// fixture is plain http on loopback.
const K8S_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIDFzCCAf+gAwIBAgIUTMjUJBzrFBsQMgZqvGAjOhZBQcgwDQYJKoZIhvcNAQEL\nBQAwGjEYMBYGA1UEAwwPc2ttLXRlc3QtazhzLWNhMCAXDTI2MTEyMzEzMTEwMFoY\nDzIxMjYxMDMwMTMxMTAwWjAaMRgwFgYDVQQDDA9za20tdGVzdC1rOHMtY2EwggEi\nMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQC6NWTMhFTBZbk6rY6uX/Qoq/+0\niAbzRSej1WRrdJvI+y/0ANPDpHahm0qgiQIeH7m5Vtw2iP6cHEUDm//wZAdYd6bK\nkPG5q3VRsYXaYqgomrjiCjnY8ZEml6Z89VaAQ9Seq4JNjqzqC5WRwY+aFsXUm9NV\nlAsyxggZJUWvB22WQNdsmJRPKRyBpcpOTGjSjpozy76+VoKLuj87hajcu/z7FBla\n1vCA0S5s05H0zWOq08GN49JESDnf3TkcMdZGY+dy2PeOSSZISBvMFYs+sUJXzxKx\n3l24xP2TOpVvg5rUUkIf20kF1oZj9Hk40GuNYL8YsZAdoAjLJmdkcMVpAHsxAgMB\nAAGjUzBRMB0GA1UdDgQWBBQa/9E8TPBQSBrFEu8c2e7Vf2VjbDAfBgNVHSMEGDAW\ngBQa/9E8TPBQSBrFEu8c2e7Vf2VjbDAPBgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3\nDQEBCwUAA4IBAQCPMxUnUa/A4PA1U4T1el+QskpC/UIOvMYYrCgEoY10uSvQkPfG\nDY4oNTfHkuefOGvQ9Bc+CWDb7KX+UiccJheH/f/fwMEIW97AixDJP8px2b3Vuc2w\nSxkg7AXhHtYRgrMz+66jSlwO71TqShi+GqOERf6PCyer/Gh+cd/VG+J2ssh9BYdB\nsSWHSUAum1Dz4feriYZG2fQQNLSirFhvnTRayhXflQp9Cminpee7/HXkO1C1xNFf\nJzNbyuS5gUuC6aRr22DXJc8QmqA9oZ4fPAZbH7fOz9gNHzEAesOquUcnrnaucPRx\nzoMtZP6ZiV48bwTeVMXwwb2fBx46Nx8KR7bw\n-----END CERTIFICATE-----";

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
