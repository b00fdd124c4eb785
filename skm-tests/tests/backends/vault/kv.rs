//! Reading KV secrets: v1 and v2 mounts, keys and whole-path structs, version pins, deleted and destroyed
//! versions, namespaces, check-and-set, how failures map to kinds, and what hvac writes.

use super::*;

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
