//! An Azure Key Vault test server: the secrets data plane and the Microsoft Entra token endpoint, over HTTPS.
//!
//! No Key Vault emulator can be installed here, so this one is written to agree with Microsoft's own clients:
//! the Python `azure-keyvault-secrets` + `azure-identity` and the Rust `azure_security_keyvault_secrets` run
//! against it in the tests (`tests/azure.rs`), through every operation skm uses.
//!
//! What it does, as Key Vault does:
//! - HTTPS on `127.0.0.1`, with a CA and a server certificate (SAN `IP:127.0.0.1`) generated at start;
//!   [`KeyVault::ca_pem_path`] is the CA for clients to trust.
//! - An unauthenticated data-plane request gets `401` with
//!   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/{tenant}", resource="https://vault.azure.net"`;
//!   a bearer token must be one the token endpoint issued.
//! - The token endpoint, at the same address (use it as the authority host): `GET
//!   /{tenant}/v2.0/.well-known/openid-configuration` and `POST /{tenant}/oauth2/v2.0/token` for the client
//!   credentials grant with a client secret and the scope `https://vault.azure.net/.default`.
//! - `api-version` is required and must be one Key Vault knows.
//! - Secrets: set (`PUT /secrets/{name}`), get latest (`/secrets/{name}` or `/secrets/{name}/`) and by
//!   version, update (`PATCH`: `enabled`, `nbf`, `exp`, `tags`, `contentType`, per version), versions list,
//!   secrets list, both paged with `nextLink` (page size [`KeyVault::set_page_size`], 3 by default so that
//!   paging is exercised), soft delete (`DELETE`), deleted secrets (get, list, recover, purge). Names are
//!   case-insensitive and `[0-9A-Za-z-]{1,127}`. A name held by a soft-deleted secret is `409 Conflict`
//!   (`ObjectIsDeletedButRecoverable`); reading a disabled secret is `403 Forbidden` (`SecretDisabled`);
//!   a missing one `404 SecretNotFound`. `nbf` and `exp` are stored and returned, never enforced (Key Vault
//!   leaves them to the client).
//!
//! What it does not imitate: see [`KeyVault`].

use std::collections::HashSet;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

mod api;
mod store;
mod tls;

/// One request as the server received it (the body is not kept: it may hold a secret value).
#[derive(Clone, Debug)]
pub struct KeyVaultRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path without the query, e.g. `/secrets/auth-jwt/`.
    pub path: String,
    /// The query, e.g. `api-version=7.6`.
    pub query: String,
    /// Whether it carried an `Authorization` header.
    pub authorized: bool,
    /// The status answered.
    pub status: u16,
}

impl KeyVaultRequest {
    /// `METHOD /path` (without the query), as [`KeyVault::count_of`] counts.
    pub fn operation(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

pub(crate) struct Inner {
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    addr: Mutex<Option<SocketAddr>>,
    pub(crate) store: Mutex<store::Store>,
    pub(crate) tokens: Mutex<HashSet<String>>,
    pub(crate) tokens_issued: AtomicUsize,
    requests: Mutex<Vec<KeyVaultRequest>>,
    clock_offset: AtomicI64,
    page_size: AtomicUsize,
    latency_ms: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    forward: Mutex<Option<String>>,
    relay: Client<HttpConnector, Full<Bytes>>,
}

impl Inner {
    /// `https://127.0.0.1:PORT`: the vault URL and the authority host.
    pub(crate) fn base_url(&self) -> String {
        format!("https://{}", self.addr.lock().expect("addr").expect("bound"))
    }

    /// The server's clock in Unix seconds: the real time plus [`KeyVault::advance_clock`].
    pub(crate) fn now(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        real + self.clock_offset.load(Ordering::SeqCst)
    }

    pub(crate) fn page_size(&self) -> usize {
        self.page_size.load(Ordering::SeqCst)
    }
}

/// A fresh 32-hex-digit id, the shape of Key Vault's version ids.
pub(crate) fn version_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let a = mix(nanos ^ n.rotate_left(32) ^ u64::from(std::process::id()));
    let b = mix(a ^ n);
    format!("{a:016x}{b:016x}")
}

/// An Azure Key Vault test server on `127.0.0.1` (HTTPS), stopped when dropped.
///
/// # What it does not imitate
/// Certificates and keys (only secrets); backup/restore; purge protection and retention other than 90 days;
/// the asynchronous delay of delete and recover (both complete at once, so a poller's first check succeeds);
/// managed secrets (those backing certificates); RBAC and access policies (any issued or
/// [accepted](KeyVault::accept_token) token may do anything);
/// throttling (429); token expiry (tokens live as long as the server); the client-certificate, federated
/// and managed-identity grants; instance discovery (clients must disable it); `maxresults` above 25 is
/// refused as Key Vault does, but the page size is the server's; the `x-ms-request-id` /
/// `x-ms-keyvault-*` response headers; `outContentType`; the vault name in the Host header (any host is
/// this vault); the short "being deleted" phase (`409 ObjectIsBeingDeleted`): deletion is complete at once,
/// so a reused name gets the steady-state `409 Conflict` / `ObjectIsDeletedButRecoverable`. The challenge's
/// `authorization` names `login.microsoftonline.com/{tenant}` as Azure's does; clients take only the
/// tenant from it and get their token from their own authority host (this server).
///
/// # Example
/// ```no_run
/// # async fn f() {
/// let kv = skm_testing::KeyVault::start().await;
/// println!("{} trusts {}", kv.url(), kv.ca_pem_path().display());
/// # }
/// ```
pub struct KeyVault {
    inner: Arc<Inner>,
    ca_pem: String,
    ca_path: PathBuf,
    _ca_file: tempfile::TempPath,
    servers: Vec<JoinHandle<()>>,
    plain_addr: SocketAddr,
}

impl KeyVault {
    /// Starts a server with tenant `00000000-0000-0000-0000-00000000000a`, client
    /// `00000000-0000-0000-0000-00000000000b` and a random client secret.
    ///
    /// # Panics
    /// When no port can be bound or the certificates cannot be generated.
    pub async fn start() -> KeyVault {
        let tls = tls::generate();
        let mut file = tempfile::Builder::new()
            .prefix("skm-keyvault-ca-")
            .suffix(".pem")
            .tempfile()
            .expect("temp file for the test CA");
        file.write_all(tls.ca_pem.as_bytes()).expect("write the test CA");
        let ca_file = file.into_temp_path();
        let ca_path = ca_file.to_path_buf();

        let inner = Arc::new(Inner {
            tenant_id: "00000000-0000-0000-0000-00000000000a".into(),
            client_id: "00000000-0000-0000-0000-00000000000b".into(),
            client_secret: format!("test-client-secret-{}", version_id()),
            addr: Mutex::new(None),
            store: Mutex::default(),
            tokens: Mutex::default(),
            tokens_issued: AtomicUsize::new(0),
            requests: Mutex::default(),
            clock_offset: AtomicI64::new(0),
            page_size: AtomicUsize::new(api::DEFAULT_PAGE_SIZE),
            latency_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            forward: Mutex::new(None),
            relay: Client::builder(TokioExecutor::new()).build_http(),
        });
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("cannot bind the Key Vault test server to 127.0.0.1");
        *inner.addr.lock().expect("addr") = Some(listener.local_addr().expect("address"));
        let plain = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("cannot bind the Key Vault test server to 127.0.0.1");
        let plain_addr = plain.local_addr().expect("address");
        let acceptor = TlsAcceptor::from(tls.config);
        let servers = vec![
            tokio::spawn(accept_loop(listener, Some(acceptor), inner.clone())),
            tokio::spawn(accept_loop(plain, None, inner.clone())),
        ];
        KeyVault {
            inner,
            ca_pem: tls.ca_pem,
            ca_path,
            _ca_file: ca_file,
            servers,
            plain_addr,
        }
    }

    /// The vault URL, `https://127.0.0.1:PORT` (what `AZURE_KEYVAULT_URL` holds).
    pub fn url(&self) -> String {
        self.inner.base_url()
    }

    /// The authority host for the token endpoint (what `AZURE_AUTHORITY_HOST` holds): the same address.
    pub fn authority_host(&self) -> String {
        self.inner.base_url()
    }

    /// The tenant id the token endpoint accepts.
    pub fn tenant_id(&self) -> &str {
        &self.inner.tenant_id
    }

    /// The client (application) id the token endpoint accepts.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The client secret the token endpoint accepts.
    pub fn client_secret(&self) -> &str {
        &self.inner.client_secret
    }

    /// The test CA as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A file holding [`KeyVault::ca_pem`] (what `SKM_AZURE_CA_CERT` holds), removed when the server is dropped.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_path
    }

    /// The same service over plain HTTP, `http://127.0.0.1:PORT`, for a [`Proxy`](crate::Proxy) to sit in
    /// front of (see [`KeyVault::forward_to`]). Clients never use it directly: Key Vault is HTTPS only.
    pub fn plain_url(&self) -> String {
        format!("http://{}", self.plain_addr)
    }

    /// Makes the HTTPS side pass every request, decrypted, to `http_base` (e.g. a [`Proxy`](crate::Proxy)
    /// started on [`KeyVault::plain_url`]) and relay its answer, so that the proxy's latency, faults and
    /// counters apply to an HTTPS client. `None` serves directly again.
    pub fn forward_to(&self, http_base: Option<&str>) {
        *self.inner.forward.lock().expect("forward") = http_base.map(|b| b.trim_end_matches('/').to_string());
    }

    /// Moves the server's clock (creation and update times) forward, so that versions written in one second
    /// still have distinct, ordered creation times.
    pub fn advance_clock(&self, by: Duration) {
        self.inner.clock_offset.fetch_add(by.as_secs() as i64, Ordering::SeqCst);
    }

    /// The page size of list answers (at most what the client's `maxresults` asks).
    pub fn set_page_size(&self, size: usize) {
        self.inner.page_size.store(size.max(1), Ordering::SeqCst);
    }

    /// Waits this long before answering each data-plane or token request.
    pub fn set_latency(&self, latency: Duration) {
        self.inner
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every request served so far, oldest first (bodies are not kept).
    pub fn requests(&self) -> Vec<KeyVaultRequest> {
        self.inner.requests.lock().expect("requests").clone()
    }

    /// How many requests of one [`KeyVaultRequest::operation`] were served, e.g. `count_of("GET /secrets/a/")`.
    pub fn count_of(&self, operation: &str) -> usize {
        self.requests().iter().filter(|r| r.operation() == operation).count()
    }

    /// How many tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> usize {
        self.inner.tokens_issued.load(Ordering::SeqCst)
    }

    /// Accepts `token` as a bearer token from now on, as if Microsoft Entra had issued it: for a credential
    /// this server does not imitate (a managed identity's endpoint, played by the test). Only exactly this
    /// text is accepted; every other token still gets `401`.
    pub fn accept_token(&self, token: &str) {
        self.inner.tokens.lock().expect("tokens").insert(token.to_string());
    }

    /// How many recorded requests carried a bearer token the server accepted (authorized, not answered
    /// `401`): a test tells "the token opened the vault" from "every request was challenged".
    pub fn accepted_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.authorized && r.status != 401)
            .count()
    }

    /// Forgets the recorded requests and the most-in-flight counter.
    pub fn clear_requests(&self) {
        self.inner.requests.lock().expect("requests").clear();
        self.inner
            .max_in_flight
            .store(self.inner.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The most requests handled at once so far.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// The names of the live (not deleted) secrets, as first written.
    pub fn secret_names(&self) -> Vec<String> {
        let store = self.inner.store.lock().expect("store");
        store.secrets.values().map(|s| s.name.clone()).collect()
    }
}

impl Drop for KeyVault {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVault")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, inner: Arc<Inner>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let inner = inner.clone();
                    let tls = tls.clone();
                    connections.spawn(async move {
                        let via_tls = tls.is_some();
                        let service = service_fn(move |request| serve(inner.clone(), via_tls, request));
                        match tls {
                            // A client that rejects our certificate ends the handshake: nothing to report.
                            Some(acceptor) => if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                            },
                            None => {
                                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Decrements the in-flight count however a request ends.
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    inner: Arc<Inner>,
    via_tls: bool,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| std::io::Error::other(format!("reading the request body: {e}")))?
        .to_bytes();
    let forward = via_tls
        .then(|| inner.forward.lock().expect("forward").clone())
        .flatten();
    if let Some(target) = forward {
        return Ok(relay(&inner.relay, &target, parts, body).await);
    }

    let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(inner.clone());
    let latency = inner.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let reply = api::handle(&inner, &parts.method, path, query, auth, &body);
    inner.requests.lock().expect("requests").push(KeyVaultRequest {
        method: parts.method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        authorized: auth.is_some(),
        status: reply.status().as_u16(),
    });
    Ok(reply)
}

/// Passes a request to the plain-HTTP side through `target` and relays the answer.
async fn relay(
    client: &Client<HttpConnector, Full<Bytes>>,
    target: &str,
    parts: http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = parts.method;
    *request.uri_mut() = format!("{target}{path}")
        .parse()
        .expect("a base URL and a path make a URI");
    *request.headers_mut() = parts.headers;
    match client.request(request).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = parts.status;
            *response.headers_mut() = parts.headers;
            response
        }
        Err(e) => {
            let mut response = Response::new(Full::new(Bytes::from(format!("relay to {target} failed: {e}"))));
            *response.status_mut() = http::StatusCode::BAD_GATEWAY;
            response
        }
    }
}
