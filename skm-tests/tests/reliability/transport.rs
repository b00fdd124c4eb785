//! Transport: where a Vault token may travel.
//!
//! - Plain `http://` to a host that is not loopback is refused before any connection, unless explicitly
//!   allowed: a listener on this machine's own non-loopback address receives zero connections and zero bytes
//!   (and, as a control, receives the token once `allow_insecure_http` is set).
//! - A loopback server cannot bounce the token to such a host with a redirect.
//! - TLS with a custom CA (`VAULT_CACERT`) works against OpenBao serving TLS (`bao server -dev-tls`), and a
//!   byte-recording relay on the path sees neither the token nor the value in clear (as a control, the same
//!   relay in front of a plain-http server sees both). Without the CA, or with an unrelated one, the
//!   certificate is refused and nothing is read.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use skm::backend::vault::{KvVersion, VaultBackend, VaultBuilder};
use skm::backend::{AdminBackend, Backend, FailureKind, FetchRequest, PutRequest, SecretValue};
use skm::ExposeSecret;
use skm_testing::Bao;

use crate::needles::{Leaks, SENTINEL};

/// A CA certificate that signed nothing OpenBao serves (generated once with openssl, valid for 100 years).
const UNRELATED_CA: &str = include_str!("unrelated-ca.pem");

fn vars(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// This machine's address on its default route: not loopback, and reachable from here.
fn non_loopback_address() -> Ipv4Addr {
    // Connecting a UDP socket sends nothing; it only picks the route and so the local address.
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("a UDP socket");
    for target in ["192.0.2.1:9", "10.255.255.254:9", "203.0.113.1:9"] {
        if probe.connect(target).is_ok() {
            if let Ok(SocketAddr::V4(local)) = probe.local_addr() {
                let ip = *local.ip();
                if !ip.is_loopback() && !ip.is_unspecified() {
                    return ip;
                }
            }
        }
    }
    panic!(
        "this machine has no non-loopback IPv4 address to listen on; the transport test needs one to prove that \
         no byte is sent there (check `ip addr`)"
    );
}

/// A TCP listener that records every connection and byte it receives, and answers each request with
/// `answer` (built from the listener's own address) before closing.
struct Stub {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Stub {
    fn start(ip: IpAddr, answer: impl Fn(&[u8]) -> Vec<u8> + Send + 'static) -> Stub {
        let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot listen on {ip}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, r, s) = (connections.clone(), received.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        c.fetch_add(1, Ordering::SeqCst);
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut request = Vec::new();
                        let mut buf = [0u8; 4096];
                        // Headers, then whatever body arrives with them.
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => request.extend_from_slice(&buf[..n]),
                            }
                        }
                        r.lock().unwrap().extend_from_slice(&request);
                        let _ = stream.write_all(&answer(&request));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Stub {
            addr,
            connections,
            received,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn http_answer(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn denied(_: &[u8]) -> Vec<u8> {
    http_answer("403 Forbidden", "", r#"{"errors":["permission denied"]}"#)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn plain_http_to_a_non_loopback_host_sends_zero_bytes_without_opt_in() {
    let ip = non_loopback_address();
    let stub = Stub::start(IpAddr::V4(ip), denied);
    let url = stub.url();

    // From the environment, as `AppSecrets::load()` configures it, and from the builder.
    let started = Instant::now();
    let from_env = VaultBuilder::from_vars(vars(&[("VAULT_ADDR", url.clone()), ("VAULT_TOKEN", SENTINEL.into())]))
        .expect("the variables parse")
        .build()
        .await;
    let from_builder = VaultBuilder::new(url.clone()).token(SENTINEL).build().await;
    let explicit_no = VaultBuilder::from_vars(vars(&[
        ("VAULT_ADDR", url.clone()),
        ("VAULT_TOKEN", SENTINEL.into()),
        ("SKM_VAULT_ALLOW_HTTP", "0".into()),
    ]))
    .expect("the variables parse")
    .build()
    .await;
    let refused = started.elapsed();
    for (how, result) in [
        ("VAULT_ADDR", from_env),
        ("builder", from_builder),
        ("SKM_VAULT_ALLOW_HTTP=0", explicit_no),
    ] {
        let e = result
            .err()
            .unwrap_or_else(|| panic!("{how}: a backend was built for {url}"));
        let text = e.to_string();
        assert!(matches!(e, skm::Error::Config(_)), "{how}: {e:?}");
        assert!(
            text.contains(&ip.to_string()) && text.contains("https://"),
            "{how}: {text}"
        );
        assert!(!text.contains(SENTINEL), "{how}: {text}");
    }
    // Give a connection, had one been attempted, time to arrive.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stub.connections(), 0, "a connection reached {url}");
    assert!(stub.received().is_empty(), "bytes reached {url}");

    // Control: with the opt-in, the same listener does receive the token, so the zero above is real.
    let allowed = VaultBuilder::new(url.clone())
        .token(SENTINEL)
        .kv_version(KvVersion::V2)
        .allow_insecure_http(true)
        .build()
        .await
        .expect("allowed explicitly");
    let r = allowed.fetch(&[FetchRequest::current("app/x")]).await.remove(0);
    assert_eq!(r.unwrap_err().kind, FailureKind::Forbidden);
    let received = stub.received();
    assert!(
        stub.connections() >= 1 && contains(&received, SENTINEL),
        "the control saw no token"
    );
    println!(
        "transport: plain http to {ip} (this machine's non-loopback address) refused 3 ways (VAULT_ADDR, builder, \
         SKM_VAULT_ALLOW_HTTP=0) in {} ms with 0 connections and 0 bytes received; control with \
         allow_insecure_http(true): {} connections, {} bytes received, token among them",
        refused.as_millis(),
        stub.connections(),
        received.len()
    );
}

#[tokio::test]
async fn a_redirect_cannot_bounce_the_token_to_a_non_loopback_host() {
    let ip = non_loopback_address();
    let target = Stub::start(IpAddr::V4(ip), denied);
    let location = format!("{}/v1/secret/data/app/x", target.url());
    let bouncer = Stub::start(IpAddr::V4(Ipv4Addr::LOCALHOST), move |_| {
        http_answer("307 Temporary Redirect", &format!("location: {location}\r\n"), "")
    });
    let backend = VaultBuilder::new(bouncer.url())
        .token(SENTINEL)
        .kv_version(KvVersion::V2)
        .build()
        .await
        .expect("loopback http is allowed");
    let r = backend.fetch(&[FetchRequest::current("app/x")]).await.remove(0);
    std::thread::sleep(Duration::from_millis(300));
    let leaked = contains(&target.received(), SENTINEL);
    println!(
        "transport: a loopback server answering 307 to http://{ip}: fetch {:?}; the non-loopback host got {} \
         connections, {} bytes, token {}",
        r.as_ref().map(|_| "ok").map_err(|e| e.to_string()),
        target.connections(),
        target.received().len(),
        if leaked { "INCLUDED" } else { "not included" }
    );
    assert!(bouncer.connections() >= 1, "the loopback server was not asked");
    assert!(
        !leaked,
        "the token followed a redirect to plain http on a non-loopback host"
    );
    assert_eq!(target.connections(), 0, "a redirect reached the non-loopback host");
}

/// A TCP relay that records every byte in both directions.
struct Relay {
    port: u16,
    up: Arc<Mutex<Vec<u8>>>,
    down: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(Mutex::new(Vec::new()));
        let (u, d) = (up.clone(), down.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (u, d) = (u.clone(), d.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, u), pipe(sr, cw, d));
                });
            }
        });
        Relay { port, up, down, task }
    }

    fn bytes(&self) -> (Vec<u8>, Vec<u8>) {
        (self.up.lock().unwrap().clone(), self.down.lock().unwrap().clone())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<Vec<u8>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                log.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// An OpenBao dev server with TLS (`-dev-tls`), whose root token is the sentinel.
struct TlsBao {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl TlsBao {
    async fn start() -> TlsBao {
        for _ in 0..5 {
            let port = skm_testing::free_port();
            let dir = std::env::temp_dir().join(format!("skm-reliability-tls-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut command = Command::new(skm_testing::venv_bin("bao"));
            command
                .args([
                    "server",
                    "-dev",
                    "-dev-tls",
                    &format!("-dev-tls-cert-dir={}", dir.display()),
                    "-dev-no-store-token",
                    &format!("-dev-root-token-id={SENTINEL}"),
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                ])
                .env("HOME", &dir)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.join("log")).unwrap())
                .stderr(std::fs::File::create(dir.join("err")).unwrap());
            for (k, _) in std::env::vars() {
                if k.starts_with("VAULT_") || k.starts_with("BAO_") {
                    command.env_remove(k);
                }
            }
            let mut server = TlsBao {
                child: command.spawn().expect("start bao -dev-tls"),
                port,
                dir,
            };
            if server.ready().await {
                return server;
            }
        }
        panic!("bao server -dev-tls did not start in 5 attempts");
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("vault-ca.pem")
    }

    async fn ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if self.ca().exists() {
                let probe = VaultBuilder::new(format!("https://127.0.0.1:{}", self.port))
                    .token(SENTINEL)
                    .ca_cert(self.ca())
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn read_back(backend: &VaultBackend) -> Result<String, skm::backend::FetchError> {
    let r = backend.fetch(&[FetchRequest::current("tls/db")]).await.remove(0)?;
    match r.value {
        SecretValue::Text(t) => Ok(t.expose_secret().to_string()),
        SecretValue::Binary(_) => panic!("text expected"),
    }
}

/// Panics if the relay saw the sentinel (the token and the value) in clear, in any encoding.
fn assert_opaque(relay: &Relay, what: &str) -> usize {
    let (up, down) = relay.bytes();
    let mut leaks = Leaks::new();
    // TLS records are binary; look at them byte for byte through a lossless Latin-1 view.
    let view = |b: &[u8]| b.iter().map(|&c| c as char).collect::<String>();
    leaks.check(what, "bytes sent to the server", &view(&up));
    leaks.check(what, "bytes received from the server", &view(&down));
    up.len() + down.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_custom_ca_works_and_the_token_never_crosses_in_clear() {
    let server = TlsBao::start().await;
    let relay = Relay::start(SocketAddr::from((Ipv4Addr::LOCALHOST, server.port))).await;
    let addr = format!("https://127.0.0.1:{}", relay.port);

    // VAULT_CACERT names the CA that OpenBao's dev mode generated.
    let backend = VaultBuilder::from_vars(vars(&[
        ("VAULT_ADDR", addr.clone()),
        ("VAULT_TOKEN", SENTINEL.into()),
        ("VAULT_CACERT", server.ca().display().to_string()),
    ]))
    .unwrap()
    .build()
    .await
    .expect("a backend over TLS");
    backend
        .put(PutRequest::new("tls/db", SecretValue::map([("password", SENTINEL)])))
        .await
        .expect("a write over TLS");
    let value = read_back(&backend).await.expect("a read over TLS");
    assert_eq!(value, json!({ "password": SENTINEL }).to_string());
    let tls_bytes = assert_opaque(&relay, "TLS with VAULT_CACERT");

    // Without the CA, or with an unrelated one: the certificate is refused, nothing is read, and the token
    // still never shows on the wire.
    let unrelated = std::env::temp_dir().join(format!("skm-reliability-unrelated-ca-{}.pem", std::process::id()));
    std::fs::write(&unrelated, UNRELATED_CA).unwrap();
    let mut refusals = Vec::new();
    for (how, ca) in [("no VAULT_CACERT", None), ("an unrelated CA", Some(unrelated.clone()))] {
        let mut pairs = vec![("VAULT_ADDR", addr.clone()), ("VAULT_TOKEN", SENTINEL.to_string())];
        if let Some(ca) = &ca {
            pairs.push(("VAULT_CACERT", ca.display().to_string()));
        }
        let untrusting = VaultBuilder::from_vars(vars(&pairs))
            .unwrap()
            .kv_version(KvVersion::V2)
            .build()
            .await
            .expect("building does not need the server");
        let e = read_back(&untrusting).await.expect_err(how);
        assert_eq!(e.kind, FailureKind::Unavailable, "{how}: {e}");
        assert!(!e.to_string().contains(SENTINEL), "{how}: {e}");
        // The end of the chain says why (the certificate's issuer is unknown).
        let why: String = e
            .detail
            .chars()
            .rev()
            .take(90)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        refusals.push(format!("{how}: …{why}"));
    }
    let _ = std::fs::remove_file(&unrelated);
    let total_bytes = assert_opaque(&relay, "TLS refused");

    // Control: the same relay in front of plain http does show the token and the value.
    let bao = Bao::start().await;
    let (status, body) = bao
        .api(
            "POST",
            "auth/token/create",
            json!({ "id": SENTINEL, "policies": ["root"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let plain_relay = Relay::start(SocketAddr::from((Ipv4Addr::LOCALHOST, bao.port()))).await;
    let plain = VaultBuilder::new(format!("http://127.0.0.1:{}", plain_relay.port))
        .token(SENTINEL)
        .build()
        .await
        .unwrap();
    plain
        .put(PutRequest::new("tls/db", SecretValue::map([("password", SENTINEL)])))
        .await
        .unwrap();
    read_back(&plain).await.unwrap();
    let (up, down) = plain_relay.bytes();
    assert!(contains(&up, SENTINEL), "control: the token was not seen on plain http");
    assert!(
        contains(&down, SENTINEL),
        "control: the value was not seen on plain http"
    );

    println!(
        "transport: TLS to OpenBao -dev-tls with VAULT_CACERT: write and read back ok; {tls_bytes} bytes relayed, \
         token and value seen 0 times (plain, base64, hex); refused {} ({total_bytes} bytes relayed in all, still 0 \
         sightings); control over plain http: token and value seen in the {} relayed bytes",
        refusals.join("; "),
        up.len() + down.len()
    );
}
