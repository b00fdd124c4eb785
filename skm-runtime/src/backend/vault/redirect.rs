//! The HTTP client: vaultrs's, with a redirect policy that keeps the token where it may go.
//!
//! reqwest follows redirects and resends every header but a few standard credentials; `X-Vault-Token` is
//! not one of them. A server (or whatever answers in its place on a loopback port) could otherwise bounce
//! the token to plain `http://` across the network, past the check on `VAULT_ADDR`.

use reqwest::redirect::{Attempt, Policy};

use super::config::{is_loopback, VaultBuilder};

/// At most this many redirects per request.
const MAX_REDIRECTS: usize = 5;

/// The client vaultrs builds for `b` (timeout, CA certificates, verification), except that a redirect is
/// followed only to `https://`, or to plain `http://` on loopback (anywhere with `allow_insecure_http`),
/// exactly where `VAULT_ADDR` itself may point.
pub(super) fn client(b: &VaultBuilder, address: &url::Url) -> Result<reqwest::Client, String> {
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
        .redirect(policy)
        .timeout(b.timeout)
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
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}
