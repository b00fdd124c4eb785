//! Writing through the Vault backend (the admin operations and the conformance suite), batched reads, and
//! a watch following a rotation through the KV metadata's versions.

use super::*;

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
        .max_in_flight(3)
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
    watch.request_refresh();
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
    watch.request_refresh();
    watch.wait_ticks(ticks + 1).await;
    assert!(watch.stats().failures >= 1, "{:?}", watch.stats());
    assert_eq!(watch.get().unwrap().jwt.current().expose_secret(), "jwt-v3");
}
