//! An HTTP/1.1 reverse proxy that records requests and injects faults.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::quota::{OperationCount, QuotaState, Quotas};

/// One request as the proxy received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The path and query, e.g. `/v1/secret/data/app?version=2`.
    pub path: String,
    /// The `X-Amz-Target` header (an AWS JSON-protocol operation such as
    /// `secretsmanager.BatchGetSecretValue`), if any.
    pub target: Option<String>,
    /// All headers as received.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// What the request does, as counted by [`Proxy::count_of`]: the `X-Amz-Target` value for AWS
    /// (`secretsmanager.GetSecretValue`), else the method and path without the query (`GET /v1/secret/data/app`).
    pub fn operation(&self) -> String {
        match &self.target {
            Some(target) => target.clone(),
            None => {
                let path = self.path.split('?').next().unwrap_or_default();
                format!("{} {path}", self.method)
            }
        }
    }

    /// Whether the request is an AWS API call (it has `X-Amz-Target` or a SigV4 `Authorization`), which
    /// decides how injected errors are worded.
    pub fn is_aws(&self) -> bool {
        self.target.is_some()
            || self
                .headers
                .get(http::header::AUTHORIZATION)
                .is_some_and(|value| value.as_bytes().starts_with(b"AWS4-"))
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// What the proxy does with a request; returned by the rule given to [`Proxy::set_rule`].
#[derive(Clone, Debug)]
pub enum Action {
    /// Pass it to the target and relay the answer.
    Forward,
    /// Answer it without contacting the target.
    Respond {
        /// The HTTP status.
        status: u16,
        /// Headers, as (name, value).
        headers: Vec<(String, String)>,
        /// The body.
        body: Bytes,
    },
    /// Wait this long, then forward it.
    Delay(Duration),
    /// Drop the connection without answering (a TCP reset), as a crashed or overloaded server does.
    Reset,
    /// Never answer, and keep the connection open until the client gives up or the proxy is dropped: tests
    /// that the client's timeouts fire.
    Stall,
}

impl Action {
    /// A JSON answer.
    pub fn json(status: u16, body: &Value) -> Action {
        Action::Respond {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body.to_string()),
        }
    }

    /// An AWS JSON-protocol error, as Secrets Manager sends it: the code in `x-amzn-ErrorType` and `__type`,
    /// e.g. `aws_error(400, "ThrottlingException", "Rate exceeded")`.
    pub fn aws_error(status: u16, code: &str, message: &str) -> Action {
        Action::Respond {
            status,
            headers: vec![
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                ("x-amzn-errortype".into(), code.into()),
                ("x-amzn-requestid".into(), "00000000-0000-0000-0000-000000000000".into()),
            ],
            body: Bytes::from(json!({ "__type": code, "message": message }).to_string()),
        }
    }

    /// A Vault API error, as Vault sends it: `{"errors": [message]}`.
    pub fn vault_error(status: u16, message: &str) -> Action {
        Action::json(status, &json!({ "errors": [message] }))
    }
}

/// A fault the proxy injects at random (see [`Proxy::set_fault_rate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 (AWS `InternalFailure`).
    InternalError,
    /// HTTP 503 (AWS `ServiceUnavailable`; Vault answers 503 when sealed or on standby).
    Unavailable,
    /// Throttling: AWS's 400 `ThrottlingException` ("Rate exceeded"), or Vault's 429.
    Throttle,
    /// The connection is reset without an answer.
    Reset,
    /// No answer at all (see [`Action::Stall`]).
    Stall,
}

impl Fault {
    /// Every fault, the default set [`Proxy::set_fault_rate`] draws from.
    pub const ALL: [Fault; 5] = [
        Fault::InternalError,
        Fault::Unavailable,
        Fault::Throttle,
        Fault::Reset,
        Fault::Stall,
    ];

    /// What this fault does to `request`, worded for AWS or Vault as the request is.
    pub fn action(self, request: &RecordedRequest) -> Action {
        let aws = request.is_aws();
        match self {
            Fault::InternalError if aws => Action::aws_error(500, "InternalFailure", "Internal failure"),
            Fault::InternalError => Action::vault_error(500, "internal error"),
            Fault::Unavailable if aws => Action::aws_error(503, "ServiceUnavailable", "Service unavailable"),
            Fault::Unavailable => Action::vault_error(503, "Vault is sealed"),
            Fault::Throttle if aws => Action::aws_error(400, "ThrottlingException", "Rate exceeded"),
            Fault::Throttle => {
                let path = request.path.split('?').next().unwrap_or_default();
                Action::vault_error(429, &format!("request path {path:?}: rate limit quota exceeded"))
            }
            Fault::Reset => Action::Reset,
            Fault::Stall => Action::Stall,
        }
    }
}

type Rule = Arc<dyn Fn(&RecordedRequest) -> Action + Send + Sync>;

/// Random faults: a rate, the kinds to draw from, and a seeded generator so a run can be replayed.
struct Faults {
    rate: f64,
    kinds: Vec<Fault>,
    rng: u64,
    injected: usize,
}

impl Faults {
    /// splitmix64: tiny, seedable and good enough to pick faults; no dependency needed.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn draw(&mut self) -> Option<Fault> {
        // 53 random bits make a uniform f64 in [0, 1).
        let roll = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        if self.kinds.is_empty() || roll >= self.rate {
            return None;
        }
        self.injected += 1;
        let index = (self.next() % self.kinds.len() as u64) as usize;
        Some(self.kinds[index])
    }
}

struct Settings {
    requests: Vec<RecordedRequest>,
    quota: Option<QuotaState>,
    rule: Option<Rule>,
    latency: Duration,
    faults: Faults,
}

struct State {
    /// `None` for a stub: forwarded requests get a 502.
    target: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
    settings: Mutex<Settings>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// The longest chain of answered requests, each received after the one before it was answered.
    answered_depth: AtomicUsize,
    /// The longest such chain a request received so far ends, answered or not: see [`Proxy::round_trips`].
    max_depth: AtomicUsize,
}

impl State {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        // Every update under the lock is a single step, so even a poisoned lock holds consistent data.
        self.settings.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An HTTP/1.1 reverse proxy on `127.0.0.1` in front of a peer, stopped when dropped.
///
/// It records every request (before deciding what to do with it), then applies, in order: the fixed
/// latency, the rule ([`Proxy::set_rule`], default [`Action::Forward`]), and, to requests the rule forwards,
/// the random faults ([`Proxy::set_fault_rate`]). Connections from clients are kept alive even when the
/// target closes its own after each answer (moto does).
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy forwarding to `target`, a base URL such as `http://127.0.0.1:4566` (plain HTTP).
    ///
    /// # Panics
    /// When `target` is not an `http://` URL, or no port can be bound.
    pub async fn start(target: &str) -> Proxy {
        let target = target.trim_end_matches('/');
        if !target.starts_with("http://") || target.parse::<http::Uri>().is_err() {
            panic!("the proxy target must be a plain http:// base URL, not {target:?}");
        }
        Proxy::serve(Some(target.to_string())).await
    }

    /// Starts a server with no target that answers every request with `rule` (a request the rule forwards
    /// gets a 502): a fixture for an endpoint the peers need, such as Kubernetes' TokenReview.
    pub async fn stub(rule: impl Fn(&RecordedRequest) -> Action + Send + Sync + 'static) -> Proxy {
        let proxy = Proxy::serve(None).await;
        proxy.set_rule(rule);
        proxy
    }

    async fn serve(target: Option<String>) -> Proxy {
        // A deep accept queue: a benchmark fleet opens thousands of connections at once, and the default
        // (128) drops SYNs that the kernel resends only after 1 s, a delay no real endpoint adds.
        let socket = TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind((Ipv4Addr::LOCALHOST, 0).into())
            .expect("cannot bind the proxy to 127.0.0.1");
        let listener = socket.listen(4096).expect("the proxy listens");
        let addr = listener.local_addr().expect("bound socket has an address");
        let state = Arc::new(State {
            target,
            client: Client::builder(TokioExecutor::new()).build_http(),
            settings: Mutex::new(Settings {
                requests: Vec::new(),
                quota: None,
                rule: None,
                latency: Duration::ZERO,
                faults: Faults {
                    rate: 0.0,
                    kinds: Fault::ALL.to_vec(),
                    rng: 0,
                    injected: 0,
                },
            }),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            answered_depth: AtomicUsize::new(0),
            max_depth: AtomicUsize::new(0),
        });
        let server = tokio::spawn(accept_loop(listener, state.clone()));
        Proxy { addr, state, server }
    }

    /// The base URL clients should use instead of the target's: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.settings().requests.clone()
    }

    /// How many requests were received.
    pub fn count(&self) -> usize {
        self.state.settings().requests.len()
    }

    /// How many requests of one [`RecordedRequest::operation`] were received, e.g.
    /// `count_of("secretsmanager.BatchGetSecretValue")` or `count_of("GET /v1/secret/data/app")`.
    pub fn count_of(&self, operation: &str) -> usize {
        let settings = self.state.settings();
        settings
            .requests
            .iter()
            .filter(|request| request.operation() == operation)
            .count()
    }

    /// The number of requests per [`RecordedRequest::operation`].
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for request in &self.state.settings().requests {
            *counts.entry(request.operation()).or_insert(0) += 1;
        }
        counts
    }

    /// Forgets the recorded requests and resets the counters (faults injected, most in flight, round
    /// trips); the rule, latency and fault rate stay.
    pub fn clear(&self) {
        let mut settings = self.state.settings();
        settings.requests.clear();
        settings.faults.injected = 0;
        if let Some(quota) = settings.quota.as_mut() {
            quota.reset();
        }
        drop(settings);
        self.state
            .max_in_flight
            .store(self.state.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
        self.state.answered_depth.store(0, Ordering::SeqCst);
        self.state.max_depth.store(0, Ordering::SeqCst);
    }

    /// Enforces `quotas` from now on: each request of a limited operation (see
    /// [`quota_operation`](crate::quota_operation)) takes a token from its bucket, and a request finding none
    /// is answered as the provider answers over-quota calls (AWS: 400 `ThrottlingException`; GCP: 429
    /// `RESOURCE_EXHAUSTED`) without reaching the target or the rule. Buckets start full; counters start at 0.
    ///
    /// ```no_run
    /// # async fn demo(moto: skm_testing::Moto) {
    /// use skm_testing::{Proxy, Quotas};
    /// let proxy = Proxy::start(&moto.endpoint()).await;
    /// proxy.set_quotas(Quotas::aws(0.01)); // BatchGetSecretValue 1/s, GetSecretValue 100/s, ...
    /// // ... run clients against proxy.url() ...
    /// let batch = proxy.quota_counts().get("BatchGetSecretValue").copied().unwrap_or_default();
    /// println!("{} batch calls, {} throttled", batch.total, batch.throttled);
    /// # }
    /// ```
    pub fn set_quotas(&self, quotas: Quotas) {
        self.state.settings().quota = Some(QuotaState::new(quotas));
    }

    /// Stops enforcing quotas (and forgets their counters).
    pub fn clear_quotas(&self) {
        self.state.settings().quota = None;
    }

    /// Requests and throttled requests per quota operation since [`Proxy::set_quotas`] or
    /// [`Proxy::clear`] (empty without quotas). Operations no quota limits are counted too.
    pub fn quota_counts(&self) -> BTreeMap<String, OperationCount> {
        self.state
            .settings()
            .quota
            .as_ref()
            .map(QuotaState::counts)
            .unwrap_or_default()
    }

    /// Decides what to do with each request from now on (replacing any previous rule). The rule runs
    /// without the proxy's lock held, so it may call the proxy.
    pub fn set_rule(&self, rule: impl Fn(&RecordedRequest) -> Action + Send + Sync + 'static) {
        self.state.settings().rule = Some(Arc::new(rule));
    }

    /// Removes the rule: every request is forwarded again (subject to faults).
    pub fn clear_rule(&self) {
        self.state.settings().rule = None;
    }

    /// Adds `latency` before every request is handled, like a network round trip (for benchmarks).
    pub fn set_latency(&self, latency: Duration) {
        self.state.settings().latency = latency;
    }

    /// Replaces the answer to a share `rate` (0.0 to 1.0) of forwarded requests with a fault drawn from
    /// [`Fault::ALL`] (or the kinds given to [`Proxy::set_fault_kinds`]), by a generator seeded with `seed`,
    /// so the same requests in the same order meet the same faults. A rate of 0 turns faults off.
    pub fn set_fault_rate(&self, rate: f64, seed: u64) {
        let mut settings = self.state.settings();
        settings.faults.rate = rate.clamp(0.0, 1.0);
        settings.faults.rng = seed;
    }

    /// Limits the faults [`Proxy::set_fault_rate`] draws from, e.g. to leave out [`Fault::Stall`] for a
    /// client without timeouts.
    pub fn set_fault_kinds(&self, kinds: &[Fault]) {
        self.state.settings().faults.kinds = kinds.to_vec();
    }

    /// How many faults were injected at random.
    pub fn faults_injected(&self) -> usize {
        self.state.settings().faults.injected
    }

    /// How many requests are being handled right now.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests handled at once so far: checks a client's concurrency limit.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Round trips in sequence since the start or [`Proxy::clear`]: the longest chain of requests in which
    /// each was received after the one before it had been answered. Requests sent at once count one; a
    /// client that waits for an answer before its next request counts one per request. Only requests that
    /// could have depended on an earlier answer lengthen a chain, so this is what latency multiplies,
    /// whatever time the target spends serving.
    pub fn round_trips(&self) -> usize {
        self.state.max_depth.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection, stalled ones included.
        self.server.abort();
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.url())
            .field("target", &self.state.target)
            .finish_non_exhaustive()
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, state.clone()));
                }
                // Such as running out of file descriptors under a benchmark: wait, then go on serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reaps finished connections so a long benchmark does not accumulate them.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ResettableStream {
        stream,
        reset: reset.clone(),
    });
    let service = service_fn(move |request| handle(state.clone(), reset.clone(), request));
    // Errors are the client hanging up or our own resets: nothing to report.
    let _ = http1::Builder::new().serve_connection(io, service).await;
}

/// Decrements the in-flight count when a request is done, however it ends, and records how deep a chain
/// of round trips its answer ends.
struct InFlight {
    state: Arc<State>,
    depth: usize,
}

impl InFlight {
    fn enter(state: &Arc<State>) -> InFlight {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // This request may depend on any answer sent so far, so it extends the deepest chain answered.
        let depth = state.answered_depth.load(Ordering::SeqCst) + 1;
        state.max_depth.fetch_max(depth, Ordering::SeqCst);
        InFlight {
            state: state.clone(),
            depth,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Dropped before hyper writes the answer, so a request the client sends after reading it sees this.
        self.state.answered_depth.fetch_max(self.depth, Ordering::SeqCst);
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    state: Arc<State>,
    reset: Arc<AtomicBool>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, io::Error> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| io::Error::other(format!("reading the request body: {e}")))?
        .to_bytes();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |pq| pq.as_str().to_string()),
        target: parts
            .headers
            .get("x-amz-target")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    let _in_flight = InFlight::enter(&state);

    let (rule, latency, over_quota) = {
        let mut settings = state.settings();
        settings.requests.push(recorded.clone());
        let over_quota = settings.quota.as_mut().and_then(|quota| quota.admit(&recorded));
        (settings.rule.clone(), settings.latency, over_quota)
    };
    // Over quota, the provider answers before anything else happens to the request.
    let mut action = match over_quota {
        Some(answer) => answer,
        None => rule.map_or(Action::Forward, |rule| rule(&recorded)),
    };
    if matches!(action, Action::Forward) {
        if let Some(fault) = state.settings().faults.draw() {
            action = fault.action(&recorded);
        }
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    match action {
        Action::Forward => Ok(forward(&state, parts, body).await),
        Action::Delay(delay) => {
            tokio::time::sleep(delay).await;
            Ok(forward(&state, parts, body).await)
        }
        Action::Respond { status, headers, body } => Ok(respond(status, &headers, body)),
        Action::Reset => {
            reset.store(true, Ordering::SeqCst);
            // An error from the service makes hyper drop the connection without answering.
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "reset by the proxy's rule",
            ))
        }
        Action::Stall => std::future::pending().await,
    }
}

fn respond(status: u16, headers: &[(String, String)], body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or_else(|_| panic!("invalid HTTP status {status} in a proxy rule"));
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|_| panic!("invalid header name {name:?} in a proxy rule"));
        let value =
            HeaderValue::from_str(value).unwrap_or_else(|_| panic!("invalid header value {value:?} in a proxy rule"));
        response.headers_mut().append(name, value);
    }
    response
}

/// Headers that describe one connection, not the message, so they are not passed through.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    const HOP_BY_HOP: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
    ];
    HOP_BY_HOP.contains(&name.as_str())
}

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

async fn forward(state: &State, parts: http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
    let Some(target) = &state.target else {
        return respond(
            502,
            &[],
            Bytes::from_static(b"skm-testing stub: no target to forward to"),
        );
    };
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = parts.method;
    *request.uri_mut() = format!("{target}{path}")
        .parse()
        .expect("a base URL and a path make a URI");
    // The Host header is kept as the client sent it: it is part of what AWS SigV4 signs.
    *request.headers_mut() = end_to_end(&parts.headers);

    let upstream = async {
        let response = state.client.request(request).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((parts, body))
    };
    match upstream.await {
        Ok((parts, body)) => {
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = parts.status;
            *response.headers_mut() = end_to_end(&parts.headers);
            response
        }
        Err(e) => respond(
            502,
            &[],
            Bytes::from(format!("skm-testing proxy: {target} failed: {e}")),
        ),
    }
}

/// A TCP stream that, when the proxy resets its connection, closes with RST rather than FIN, so the client
/// sees "connection reset" as it would from a crashed server.
struct ResettableStream {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            // A zero linger makes close() send RST and discard unsent data; it does not block.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
