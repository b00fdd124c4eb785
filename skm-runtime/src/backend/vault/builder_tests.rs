//! Tests of the builder's environment handling and address checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::config::{token_text, DEFAULT_CONCURRENCY, DEFAULT_RETRIES};
use super::super::config::{Credential, JwtSource, KvVersion, VaultAuth, DEFAULT_K8S_JWT_FILE};
use super::*;

fn from(pairs: &[(&str, &str)]) -> Result<VaultBuilder, Error> {
    VaultBuilder::from_vars(|n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
}

#[test]
fn plain_http_only_on_loopback_unless_allowed() {
    for ok in [
        "https://vault.internal:8200",
        "http://127.0.0.1:8200",
        "HTTP://127.0.0.1:8200",
        "http://127.8.9.1",
        "http://[::1]:8200",
    ] {
        assert!(VaultBuilder::new(ok).checked_address().is_ok(), "{ok}");
    }
    for refused in [
        "http://10.255.255.1:8200",
        // The scheme in any letter case is plain http (issue 25, finding 2).
        "HTTP://10.255.255.1:8200",
        "Http://vault.internal",
        "http://vault.internal",
        "http://localhost.evil.com",
        "http://[fe80::1]",
    ] {
        let e = VaultBuilder::new(refused).checked_address().unwrap_err().to_string();
        assert!(e.contains("SKM_VAULT_ALLOW_HTTP=1"), "{refused}: {e}");
        assert!(e.contains("VAULT_ADDR"), "{refused}: {e}");
    }
    // `localhost` is loopback when the system resolves it to loopback addresses only, as for every backend
    // (`backend/endpoint.rs`); a resolver that maps it elsewhere makes it an ordinary name.
    let resolved: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 8200))
        .map(|a| a.collect())
        .unwrap_or_default();
    let loopback_only = !resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback());
    assert_eq!(
        VaultBuilder::new("http://localhost:8200").checked_address().is_ok(),
        loopback_only,
        "localhost resolves to {resolved:?}"
    );
    // Userinfo is refused even with the opt-in: the request would go to the host after the `@`.
    for userinfo in ["http://127.0.0.1:x@evil.example", "https://user:pw@vault"] {
        let e = VaultBuilder::new(userinfo)
            .allow_insecure_http(true)
            .checked_address()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("x@") && !e.contains("pw"), "{e}");
    }
    assert!(VaultBuilder::new("http://10.255.255.1:8200")
        .allow_insecure_http(true)
        .checked_address()
        .is_ok());
    let allowed = from(&[
        ("VAULT_ADDR", "http://vault.internal"),
        ("VAULT_TOKEN", "t"),
        ("SKM_VAULT_ALLOW_HTTP", "1"),
    ]);
    assert!(allowed.unwrap().checked_address().is_ok());
    assert!(VaultBuilder::new("ftp://vault").checked_address().is_err());
    assert!(VaultBuilder::new("https://user:pw@vault").checked_address().is_err());
    assert!(VaultBuilder::new("not a url").checked_address().is_err());
}

#[test]
fn reads_every_variable() {
    let b = from(&[
        ("VAULT_ADDR", "https://v:8200"),
        ("VAULT_TOKEN", "hvs.S3CRET"),
        ("VAULT_NAMESPACE", "/team/a/"),
        ("VAULT_CACERT", "/ca.pem"),
        ("VAULT_SKIP_VERIFY", "true"),
        ("VAULT_CLIENT_TIMEOUT", "5s"),
        ("SKM_VAULT_MOUNT", "/kv/"),
        ("SKM_VAULT_KV_VERSION", "1"),
        ("SKM_VAULT_CONCURRENCY", "3"),
    ])
    .unwrap();
    assert_eq!(b.address, "https://v:8200");
    assert_eq!(b.namespace.as_deref(), Some("team/a"));
    assert_eq!(b.ca_certs, [PathBuf::from("/ca.pem")]);
    assert!(b.skip_verify);
    assert_eq!(b.timeout, Duration::from_secs(5));
    assert_eq!(
        (b.mount.as_str(), b.kv_version, b.concurrency),
        ("kv", Some(KvVersion::V1), 3)
    );
    assert!(!format!("{b:?}").contains("S3CRET"), "the token is redacted");

    let d = from(&[("VAULT_TOKEN", "t")]).unwrap();
    assert_eq!(
        (d.address.as_str(), d.mount.as_str(), d.kv_version),
        ("https://127.0.0.1:8200", "secret", None)
    );
    assert_eq!((d.concurrency, d.retries), (DEFAULT_CONCURRENCY, DEFAULT_RETRIES));
}

#[test]
fn token_falls_back_to_the_cli_token_file() {
    let home = std::env::temp_dir().join(format!("skm-vault-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".vault-token"), "from-file\n").unwrap();
    let b = from(&[("HOME", home.to_str().unwrap())]).unwrap();
    assert_eq!(token_text(&b.token).as_deref(), Some("from-file"));
    let b = from(&[("HOME", home.to_str().unwrap()), ("VAULT_TOKEN", "from-env")]).unwrap();
    assert_eq!(token_text(&b.token).as_deref(), Some("from-env"));
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn auth_methods_and_their_errors() {
    let b = from(&[
        ("SKM_VAULT_AUTH", "approle"),
        ("SKM_VAULT_ROLE_ID", "r"),
        ("SKM_VAULT_SECRET_ID_FILE", "/s"),
    ])
    .unwrap();
    match &b.auth {
        VaultAuth::AppRole {
            mount,
            role_id: Credential::Value(_),
            secret_id: Credential::File(f),
        } => {
            assert_eq!((mount.as_str(), f.as_path()), ("approle", Path::new("/s")));
        }
        other => panic!("{other:?}"),
    }
    let e = from(&[("SKM_VAULT_AUTH", "approle"), ("SKM_VAULT_ROLE_ID", "r")]).unwrap_err();
    assert!(e.to_string().contains("SKM_VAULT_SECRET_ID_FILE"), "{e}");
    let e = from(&[
        ("SKM_VAULT_AUTH", "approle"),
        ("SKM_VAULT_ROLE_ID", "r"),
        ("SKM_VAULT_ROLE_ID_FILE", "/r"),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");

    let b = from(&[("SKM_VAULT_AUTH", "kubernetes"), ("SKM_VAULT_K8S_ROLE", "app")]).unwrap();
    match &b.auth {
        VaultAuth::Kubernetes {
            mount,
            role,
            jwt: Credential::File(f),
        } => {
            assert_eq!((mount.as_str(), role.as_str()), ("kubernetes", "app"));
            assert_eq!(f, Path::new(DEFAULT_K8S_JWT_FILE));
        }
        other => panic!("{other:?}"),
    }
    let e = from(&[("SKM_VAULT_AUTH", "kubernetes")]).unwrap_err();
    assert!(e.to_string().contains("SKM_VAULT_K8S_ROLE"), "{e}");
    let e = from(&[("SKM_VAULT_AUTH", "ldap")]).unwrap_err();
    assert!(e.to_string().contains("token, approle, kubernetes, jwt or cert"), "{e}");
    assert!(from(&[("SKM_VAULT_KV_VERSION", "3")]).is_err());
    assert!(from(&[("SKM_VAULT_CONCURRENCY", "0")]).is_err());
    assert!(from(&[("VAULT_SKIP_VERIFY", "maybe")]).is_err());
    assert!(!format!("{:?}", Credential::value("hunter2")).contains("hunter2"));
}

#[test]
fn jwt_from_a_file_or_github_actions() {
    let b = from(&[
        ("SKM_VAULT_AUTH", "jwt"),
        ("SKM_VAULT_JWT_ROLE", "ci"),
        ("SKM_VAULT_JWT_FILE", "/run/jwt"),
    ])
    .unwrap();
    match &b.auth {
        VaultAuth::Jwt {
            mount,
            role,
            jwt: JwtSource::Credential(Credential::File(f)),
        } => assert_eq!(
            (mount.as_str(), role.as_str(), f.as_path()),
            ("jwt", "ci", Path::new("/run/jwt"))
        ),
        other => panic!("{other:?}"),
    }
    let actions = [
        ("SKM_VAULT_AUTH", "jwt"),
        ("SKM_VAULT_JWT_ROLE", "ci"),
        ("SKM_VAULT_JWT_MOUNT", "/gha/"),
        ("SKM_VAULT_JWT_AUDIENCE", "https://vault.example"),
        (
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "https://pipelines.actions.example/idtoken?api-version=2.0",
        ),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "REQUEST-TOKEN-sentinel"),
    ];
    let b = from(&actions).unwrap();
    match &b.auth {
        VaultAuth::Jwt {
            mount,
            jwt: JwtSource::GithubActions { url, audience, .. },
            ..
        } => {
            assert_eq!(mount, "gha");
            assert!(url.starts_with("https://pipelines.actions.example/idtoken"));
            assert_eq!(audience.as_deref(), Some("https://vault.example"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{b:?}").contains("REQUEST-TOKEN-sentinel"), "{b:?}");
    // A file wins over the Actions endpoint: it was set on purpose.
    let mut with_file = actions.to_vec();
    with_file.push(("SKM_VAULT_JWT_FILE", "/run/jwt"));
    assert!(matches!(
        from(&with_file).unwrap().auth,
        VaultAuth::Jwt {
            jwt: JwtSource::Credential(_),
            ..
        }
    ));

    let e = from(&[("SKM_VAULT_AUTH", "jwt"), ("SKM_VAULT_JWT_FILE", "/run/jwt")]).unwrap_err();
    assert!(e.to_string().contains("SKM_VAULT_JWT_ROLE"), "{e}");
    let e = from(&[("SKM_VAULT_AUTH", "jwt"), ("SKM_VAULT_JWT_ROLE", "ci")]).unwrap_err();
    assert!(
        e.to_string().contains("SKM_VAULT_JWT_FILE") && e.to_string().contains("id-token: write"),
        "{e}"
    );
    let e = from(&[
        ("SKM_VAULT_AUTH", "jwt"),
        ("SKM_VAULT_JWT_ROLE", "ci"),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://a.example/x"),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("ACTIONS_ID_TOKEN_REQUEST_TOKEN"), "{e}");
    // The request token goes only over https, or to this machine.
    let e = from(&[
        ("SKM_VAULT_AUTH", "jwt"),
        ("SKM_VAULT_JWT_ROLE", "ci"),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", "http://actions.example/x"),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t"),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("ACTIONS_ID_TOKEN_REQUEST_URL"), "{e}");
}

#[test]
fn cert_needs_the_certificate_and_key() {
    let b = from(&[
        ("SKM_VAULT_AUTH", "cert"),
        ("VAULT_CLIENT_CERT", "/c.pem"),
        ("VAULT_CLIENT_KEY", "/k.pem"),
        ("SKM_VAULT_CERT_ROLE", "web"),
    ])
    .unwrap();
    match &b.auth {
        VaultAuth::Cert { mount, role, cert, key } => {
            assert_eq!((mount.as_str(), role.as_deref()), ("cert", Some("web")));
            assert_eq!(
                (cert.as_path(), key.as_path()),
                (Path::new("/c.pem"), Path::new("/k.pem"))
            );
        }
        other => panic!("{other:?}"),
    }
    let e = from(&[("SKM_VAULT_AUTH", "cert"), ("VAULT_CLIENT_CERT", "/c.pem")]).unwrap_err();
    assert!(e.to_string().contains("VAULT_CLIENT_KEY"), "{e}");
    // Other methods never present a client certificate, even when the Vault CLI's variables are set.
    let b = from(&[
        ("VAULT_TOKEN", "t"),
        ("VAULT_CLIENT_CERT", "/c.pem"),
        ("VAULT_CLIENT_KEY", "/k.pem"),
    ])
    .unwrap();
    assert!(matches!(b.auth, VaultAuth::Token));
}

#[test]
fn control_characters_in_headers_are_a_clear_error() {
    for (name, value) in [("VAULT_TOKEN", "hvs.S3CRET\nX"), ("VAULT_NAMESPACE", "team\u{1b}[31m")] {
        let e = super::super::config::header_safe(name, Some(value))
            .unwrap_err()
            .to_string();
        assert!(e.contains(name) && e.contains("control character"), "{e}");
        assert!(!e.contains("S3CRET"), "the value stays out of the message: {e}");
    }
    assert!(super::super::config::header_safe("VAULT_TOKEN", Some("hvs.ok\tx")).is_ok());
}

#[test]
fn proxies_come_from_the_environment_and_plain_needs_opt_in() {
    let b = from(&[
        ("https_proxy", "http://p:1"),
        ("HTTP_PROXY", "http://q:2"),
        ("NO_PROXY", "a"),
    ])
    .unwrap();
    assert_eq!(b.proxies.https.as_deref(), Some("http://p:1"));
    assert_eq!(b.proxies.http.as_deref(), Some("http://q:2"));
    assert!(!b.proxies.plain);
    let b = from(&[("ALL_PROXY", "socks5://r:3"), ("SKM_VAULT_PROXY_PLAIN", "1")]).unwrap();
    assert_eq!(b.proxies.https.as_deref(), Some("socks5://r:3"));
    assert!(b.proxies.plain);
}
