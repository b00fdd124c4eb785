//! The HTTP client: vaultrs's, with a redirect policy and proxy rules that keep the token where it may go.
//!
//! reqwest follows redirects and resends every header but a few standard credentials; `X-Vault-Token` is
//! not one of them. A server (or whatever answers in its place on a loopback port) could otherwise bounce
//! the token to plain `http://` across the network, past the check on `VAULT_ADDR`.

use reqwest::redirect::{Attempt, Policy};

use super::builder::{Proxies, VaultBuilder};
use crate::backend::endpoint::{self, is_loopback};

/// At most this many redirects per request.
const MAX_REDIRECTS: usize = 5;

/// The client vaultrs builds for `b` (timeout, CA certificates, verification), except that a redirect is
/// followed only to `https://`, or to plain `http://` on loopback (anywhere with `allow_insecure_http`),
/// exactly where `VAULT_ADDR` itself may point. `identity` is the client certificate, given for
/// `SKM_VAULT_AUTH=cert` only.
pub(super) fn client(
    b: &VaultBuilder,
    address: &url::Url,
    identity: Option<reqwest::Identity>,
) -> Result<reqwest::Client, String> {
    let allow_http = b.allow_insecure_http;
    let policy = Policy::custom(move |attempt: Attempt<'_>| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let url = attempt.url();
        match url.scheme() {
            "https" => attempt.follow(),
            "http" if allow_http || is_loopback(url) => attempt.follow(),
            scheme => {
                let refused = format!(
                    "refused to follow a redirect to {scheme}://{}: it would send the Vault token in clear text to \
                     a host that is not loopback",
                    url.host_str().unwrap_or_default()
                );
                attempt.error(refused)
            }
        }
    });
    let mut builder = reqwest::Client::builder()
        .tls_backend_rustls()
        // Never reqwest's own reading of the environment's proxies: it would send a plain-http or loopback
        // request, token included, in clear text to the proxy (issue 17). `proxy` applies skm's rule per URL.
        .no_proxy()
        .proxy(proxy(&b.proxies))
        .redirect(policy)
        .timeout(b.timeout)
        // A refused or unroutable address fails within it, whatever the per-request timeout.
        .connect_timeout(endpoint::CONNECT_TIMEOUT.min(b.timeout))
        .tls_danger_accept_invalid_certs(b.skip_verify);
    if address.scheme() == "http" {
        // As vaultrs does (reqwest issue 2988): no certificate store is needed for plain http.
        builder = builder.tls_certs_only(Vec::new());
    } else {
        for path in &b.ca_certs {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("cannot parse the CA file {}: {e}", path.display()))?;
            builder = builder.tls_certs_merge(certs);
        }
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// The proxy for each request: `https` targets that are not loopback use the https proxy (a CONNECT tunnel,
/// so TLS ends at Vault); plain-http and loopback targets use none unless `plain` opts in. Decided per URL,
/// so a redirect to a loopback address is not proxied either.
pub(super) fn proxy(p: &Proxies) -> reqwest::Proxy {
    let no_proxy = p.no_proxy.as_deref().and_then(reqwest::NoProxy::from_string);
    let p = p.clone();
    reqwest::Proxy::custom(move |url| proxy_for(&p, url)).no_proxy(no_proxy)
}

/// The proxy for one URL, before `NO_PROXY`.
fn proxy_for(p: &Proxies, url: &url::Url) -> Option<String> {
    match url.scheme() {
        "https" if p.plain || !is_loopback(url) => p.https.clone(),
        "http" if p.plain => p.http.clone(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_remote_https_goes_through_a_proxy_by_default() {
        let mut p = Proxies {
            https: Some("http://ps:1".into()),
            http: Some("http://p:1".into()),
            no_proxy: None,
            plain: false,
        };
        let at = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            proxy_for(&p, &at("https://vault.example:8200")).as_deref(),
            Some("http://ps:1")
        );
        for direct in [
            "http://127.0.0.1:8200",
            "https://127.0.0.1:8200",
            "http://vault.example",
            "https://[::1]",
        ] {
            assert_eq!(proxy_for(&p, &at(direct)), None, "{direct}");
        }
        p.plain = true;
        assert_eq!(
            proxy_for(&p, &at("http://127.0.0.1:8200")).as_deref(),
            Some("http://p:1")
        );
        assert_eq!(
            proxy_for(&p, &at("https://127.0.0.1:8200")).as_deref(),
            Some("http://ps:1")
        );
    }
}
