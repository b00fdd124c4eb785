//! A minimal HTTP/1.1 client for the helpers (reset moto, call OpenBao's API, probe readiness).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Long enough for any loopback call to a healthy peer; short enough that a wedged peer fails the test.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request and reads the whole answer within `timeout`; `Err` describes the transport failure.
pub(crate) async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method.clone()).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("invalid request {method} {url}: {e}"))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result.map_err(|e: String| format!("{method} {url}: {e}")),
        Err(_) => Err(format!("{method} {url}: no answer within {timeout:?}")),
    }
}
