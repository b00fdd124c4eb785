//! The connection to Vault: the README card example with only `VAULT_ADDR` and `VAULT_TOKEN` (in a child
//! process), proxies from the environment, the doctor's probe, plain http to a remote host, TLS with
//! `VAULT_CACERT`, and servers that never answer or refuse.

use super::*;

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
        .args([
            "vault::transport::child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
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
