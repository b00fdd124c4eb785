//! The Azure backend's HTTP transports and the bound on one call.
//!
//! - Key Vault and Microsoft Entra ID: HTTPS only (built in `builder.rs`), connecting bounded by
//!   [`endpoint::CONNECT_TIMEOUT`] and each attempt by [`endpoint::ATTEMPT_TIMEOUT`].
//! - The managed identity ([`IdentityTransport`]): its endpoints are plain http by design (the instance
//!   metadata service on 169.254.169.254, App Service's and Container Apps' `IDENTITY_ENDPOINT` on loopback),
//!   so it has a transport of its own that sends to exactly those endpoints and nowhere else, never through a
//!   proxy, and does not follow redirects.
//! - [`CallBound`]: a per-call policy that ends one call, retries included, after
//!   [`endpoint::OPERATION_TIMEOUT`], below the loader's deadline, with an error naming what did not answer.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{AsyncRawResponse, Context, HttpClient, Request, Url};

use crate::backend::endpoint;
use crate::Error;

/// Where an Azure VM's (and a VM scale set's) managed identity gets its tokens: the instance metadata
/// service, link-local, plain http.
pub(crate) const IMDS_TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// How long connecting to an identity endpoint may take: it is on this machine or link-local, so it answers
/// at once when it exists; off Azure the managed-identity step gives up after this.
pub(crate) const IDENTITY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Ends a call, retries included, after `limit`: the retry policy's own limit counts from the end of the
/// first attempt, so that alone a stalled server could hold a call for several attempt timeouts.
#[derive(Debug)]
pub(crate) struct CallBound {
    limit: Duration,
}

impl CallBound {
    /// The bound every backend shares, [`endpoint::OPERATION_TIMEOUT`].
    pub(crate) fn shared() -> Arc<dyn Policy> {
        Arc::new(CallBound {
            limit: endpoint::OPERATION_TIMEOUT,
        })
    }
}

#[async_trait]
impl Policy for CallBound {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        let Some((first, rest)) = next.split_first() else {
            return Err(azure_core::Error::with_message(
                ErrorKind::Other,
                "skm: no policy after the call bound",
            ));
        };
        let host = request.url().host_str().unwrap_or_default().to_string();
        match tokio::time::timeout(self.limit, first.send(ctx, request, rest)).await {
            Ok(answer) => answer,
            // `Io`: the backend maps it to "unavailable", as a timeout of one attempt.
            Err(_) => Err(azure_core::Error::with_message(
                ErrorKind::Io,
                format!(
                    "no answer from {host} within {} s (every attempt of one request, each timing out after {} s)",
                    self.limit.as_secs(),
                    endpoint::ATTEMPT_TIMEOUT.as_secs()
                ),
            )),
        }
    }
}

/// The managed identity's transport: plain http allowed, but only to the instance metadata service's token
/// URL or to a loopback `IDENTITY_ENDPOINT`; no proxy, no redirects, short timeouts. A connection that
/// cannot be made is a credential error (not retried): the identity endpoint does not exist here.
#[derive(Debug)]
pub(crate) struct IdentityTransport {
    client: reqwest::Client,
    allowed: Vec<Url>,
    /// Why `IDENTITY_ENDPOINT` was not allowed, when it was set and refused.
    refused: Option<String>,
}

impl IdentityTransport {
    /// A transport for the instance metadata service and `identity_endpoint` (the process's
    /// `IDENTITY_ENDPOINT`, which the SDK's managed-identity credential reads), if that is on loopback.
    pub(crate) fn new(identity_endpoint: Option<&str>) -> Result<IdentityTransport, Error> {
        let mut allowed = vec![Url::parse(IMDS_TOKEN_URL).expect("a valid constant URL")];
        let mut refused = None;
        if let Some(raw) = identity_endpoint.map(str::trim).filter(|r| !r.is_empty()) {
            match endpoint::check("IDENTITY_ENDPOINT", raw, false, "") {
                Ok(url) if endpoint::is_loopback(&url) => allowed.push(url),
                Ok(url) => {
                    refused = Some(format!(
                        "IDENTITY_ENDPOINT is on `{}`, not on this machine: skm sends managed-identity requests \
                         only to a loopback IDENTITY_ENDPOINT (App Service, Container Apps) or to the instance \
                         metadata service (169.254.169.254)",
                        url.host_str().unwrap_or_default().escape_debug()
                    ))
                }
                Err(e) => refused = Some(e.to_string()),
            }
        }
        let client = reqwest::Client::builder()
            // The request carries IDENTITY_HEADER and the answer a token, both in clear text: never a proxy.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(IDENTITY_CONNECT_TIMEOUT)
            .timeout(endpoint::ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| {
                Error::config(format!(
                    "cannot build the HTTP client for Azure's managed identity: {e}"
                ))
            })?;
        Ok(IdentityTransport {
            client,
            allowed,
            refused,
        })
    }

    /// Whether `url` is one of the allowed endpoints: same scheme, host, port and path.
    fn allows(&self, url: &Url) -> bool {
        self.allowed.iter().any(|a| {
            a.scheme() == url.scheme()
                && a.host() == url.host()
                && a.port_or_known_default() == url.port_or_known_default()
                && a.path() == url.path()
        })
    }
}

#[async_trait]
impl HttpClient for IdentityTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let url = request.url();
        if !self.allows(url) {
            let why = self.refused.clone().unwrap_or_else(|| {
                "skm sends managed-identity requests only to a loopback IDENTITY_ENDPOINT or to the instance \
                 metadata service (169.254.169.254)"
                    .into()
            });
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                format!(
                    "refused to send a managed-identity request to `{}`: {why}",
                    url.host_str().unwrap_or_default().escape_debug()
                ),
            ));
        }
        match HttpClient::execute_request(&self.client, request).await {
            Err(e) if matches!(e.kind(), ErrorKind::Connection) => {
                let origin = format!(
                    "{}://{}{}",
                    url.scheme(),
                    url.host_str().unwrap_or_default(),
                    url.port().map(|p| format!(":{p}")).unwrap_or_default()
                );
                let text = endpoint::one_line(&e);
                Err(azure_core::Error::with_error(
                    ErrorKind::Credential,
                    e,
                    format!("the managed-identity endpoint {origin} cannot be reached (not on Azure?): {text}"),
                ))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_requests_go_only_to_imds_or_a_loopback_identity_endpoint() {
        let at = |s: &str| Url::parse(s).unwrap();
        let t = IdentityTransport::new(Some("http://127.0.0.1:41234/msi/token")).unwrap();
        assert!(t.allows(&at(
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2019-08-01"
        )));
        assert!(t.allows(&at("http://127.0.0.1:41234/msi/token?resource=x")));
        for refused in [
            "http://169.254.169.254/other",
            "https://169.254.169.254/metadata/identity/oauth2/token",
            "http://127.0.0.1:41235/msi/token",
            "http://127.0.0.1:41234/other",
            "http://evil.example/metadata/identity/oauth2/token",
            "https://my-vault.vault.azure.net/secrets/x",
        ] {
            assert!(!t.allows(&at(refused)), "{refused}");
        }
        // Not on loopback, or not an acceptable endpoint at all: only IMDS remains, and the reason is kept.
        for bad in [
            "http://10.0.0.4:8081/msi/token",
            "https://identity.example/msi/token",
            "http://127.0.0.1:x@evil.example/msi/token",
        ] {
            let t = IdentityTransport::new(Some(bad)).unwrap();
            assert_eq!(t.allowed.len(), 1, "{bad}");
            let why = t.refused.clone().unwrap_or_default();
            assert!(why.contains("IDENTITY_ENDPOINT"), "{bad}: {why}");
        }
        let t = IdentityTransport::new(None).unwrap();
        assert_eq!(t.allowed.len(), 1);
        assert!(t.refused.is_none());
    }
}
