//! Where a network backend may send its requests: one rule for AWS, GCP, Azure and Vault.
//!
//! - [`check`] parses an endpoint with the `url` crate (the WHATWG parser browsers use) instead of comparing
//!   prefixes: the scheme is case-insensitive (`HTTP://` is plain http), userinfo (`http://127.0.0.1:x@evil`)
//!   is refused, and plain `http://` is accepted only for a loopback host ([`is_loopback`]) unless the
//!   backend's explicit opt-in is given. Backends then send to the parsed, normalised URL, so that the client
//!   cannot read the text differently from the check.
//! - [`direct_only`]: plain-http and loopback targets never go through a proxy unless the user opts in, since
//!   the proxy would see the credentials and the values in clear text (or cannot reach our loopback anyway).
//! - [`CONNECT_TIMEOUT`], [`ATTEMPT_TIMEOUT`] and [`OPERATION_TIMEOUT`]: the same bounds on every backend, all
//!   below the loader's whole-load deadline, so that no call waits forever and a failure names its backend.

// Each item serves some of the network backends; a build with only some of them leaves others unused.
#![allow(dead_code)]

use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use url::{Host, Url};

use crate::Error;

/// How long establishing a connection (TCP and TLS) may take: a refused or unroutable endpoint fails within it.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one attempt of one request may take, from sending to the last byte of the answer: an endpoint that
/// accepts connections and never answers fails within it.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call may take with all its retries: below the loader's default whole-load deadline (30 s), so
/// that the backend's own error, naming what it waited for, arrives first.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(12);

/// Checks an endpoint and returns it parsed.
///
/// `source` names where it came from in the error (`AWS_ENDPOINT_URL`, `VAULT_ADDR`...); `allow_http` is the
/// backend's explicit opt-in to plain http on any host, and `opt_in` says how to give it (e.g.
/// `SKM_AWS_ALLOW_HTTP=1`), or is empty when the backend has none.
///
/// Refused: text that is not a URL, a scheme other than `http`/`https`, a URL without a host, userinfo, and
/// plain `http://` to a host that is not loopback without `allow_http`.
pub(crate) fn check(source: &str, raw: &str, allow_http: bool, opt_in: &str) -> Result<Url, Error> {
    let shown = raw.trim();
    let url = Url::parse(shown).map_err(|e| {
        Error::config(format!(
            "{source}=`{}` is not a URL ({e}): write e.g. https://host:port",
            shown.escape_debug()
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        // `http://127.0.0.1:x@evil.example` is a request to evil.example: a prefix check would take it for
        // loopback. Credentials never belong in an endpoint either.
        return Err(Error::config(format!(
            "{source}: refusing an endpoint with a user name or password before the host (`user@host`): the \
             request would go to `{}`, and credentials do not belong in a URL",
            url.host_str().unwrap_or_default().escape_debug()
        )));
    }
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => {
            return Err(Error::config(format!(
                "{source}=`{}` has no host: write e.g. https://host:port",
                shown.escape_debug()
            )))
        }
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http || is_loopback(&url) => Ok(url),
        "http" => {
            let how = if opt_in.is_empty() {
                String::new()
            } else {
                format!(", or, on a network you trust, opt in with {opt_in}")
            };
            Err(Error::config(format!(
                "{source}: refusing the plain http:// endpoint on `{}`, which is not a loopback address: requests \
                 carry credentials and answers carry secret values. Use https://, or 127.0.0.1, [::1] or \
                 localhost for a local server{how}",
                host.escape_debug()
            )))
        }
        other => Err(Error::config(format!(
            "{source}: the scheme `{}` is not supported: use https:// (or http:// on loopback)",
            other.escape_debug()
        ))),
    }
}

/// Whether `url`'s host is this machine: a loopback IP (127.0.0.0/8, `::1`, or `::ffff:127.x.y.z`), or the
/// name `localhost` when the system resolves it to loopback addresses only (through `/etc/hosts`; a resolver
/// that maps it anywhere else makes it an ordinary name).
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => loopback_ip(IpAddr::V6(ip)),
        Some(Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => {
            let port = url.port_or_known_default().unwrap_or(80);
            match (name, port).to_socket_addrs() {
                Ok(addrs) => {
                    let addrs: Vec<_> = addrs.collect();
                    !addrs.is_empty() && addrs.iter().all(|a| loopback_ip(a.ip()))
                }
                Err(_) => false,
            }
        }
        Some(Host::Domain(_)) | None => false,
    }
}

fn loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Whether requests to `url` must bypass every proxy (unless the user opts in): plain http, whose proxy would
/// read credentials and values in clear text, and loopback, which only this machine can reach.
pub(crate) fn direct_only(url: &Url) -> bool {
    url.scheme() != "https" || is_loopback(url)
}

/// The proxy variables of the environment, read as curl and reqwest read them (upper case first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EnvProxies {
    /// `HTTPS_PROXY`, else `ALL_PROXY`: for `https://` targets.
    pub https: Option<String>,
    /// `HTTP_PROXY`, else `ALL_PROXY`: for `http://` targets.
    pub http: Option<String>,
    /// `NO_PROXY`.
    pub no_proxy: Option<String>,
}

impl EnvProxies {
    /// Reads the variables through `var` (empty values count as unset).
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let either = |upper: &str| get(upper).or_else(|| get(&upper.to_ascii_lowercase()));
        EnvProxies {
            https: either("HTTPS_PROXY").or_else(|| either("ALL_PROXY")),
            http: either("HTTP_PROXY").or_else(|| either("ALL_PROXY")),
            no_proxy: either("NO_PROXY"),
        }
    }

    /// The process environment's.
    pub(crate) fn from_env() -> Self {
        Self::from_vars(|n| std::env::var(n).ok())
    }

    /// The proxy a client that reads these variables (reqwest, the AWS SDK's) would send a request for `url`
    /// through, or `None` when it would connect directly.
    pub(crate) fn for_url(&self, url: &Url) -> Option<&str> {
        let proxy = match url.scheme() {
            "https" => self.https.as_deref(),
            _ => self.http.as_deref(),
        }?;
        let host = url.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match &self.no_proxy {
            Some(rules) if no_proxy_matches(rules, host) => None,
            _ => Some(proxy),
        }
    }
}

/// `NO_PROXY` as curl and reqwest read it: `*`, IP addresses or networks (`10.0.0.0/8`), and domain names that
/// also match their subdomains (`example.com`, `.example.com`).
fn no_proxy_matches(rules: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let ip: Option<IpAddr> = host.parse().ok();
    rules.split(',').map(str::trim).filter(|r| !r.is_empty()).any(|rule| {
        if rule == "*" {
            return true;
        }
        if let Some(ip) = ip {
            let (net, bits) = match rule.split_once('/') {
                Some((net, bits)) => (net, bits.parse::<u32>().ok()),
                None => (rule, None),
            };
            return match (net.trim_matches(['[', ']']).parse::<IpAddr>(), ip) {
                (Ok(IpAddr::V4(n)), IpAddr::V4(a)) => {
                    let bits = bits.unwrap_or(32).min(32);
                    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
                    u32::from(n) & mask == u32::from(a) & mask
                }
                (Ok(IpAddr::V6(n)), IpAddr::V6(a)) => {
                    let bits = bits.unwrap_or(128).min(128);
                    let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
                    u128::from(n) & mask == u128::from(a) & mask
                }
                _ => false,
            };
        }
        let domain = rule.trim_start_matches('.').to_ascii_lowercase();
        host == domain || host.ends_with(&format!(".{domain}"))
    })
}

/// Whether an I/O error somewhere in `error`'s source chain is a refused connection: nothing listens there, so
/// trying again within the same load only delays the answer.
pub(crate) fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(error);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// An error and its causes on one line, `outer: inner: root cause`, each `Display` once: a cause whose text
/// its parent already shows is skipped, and no `Debug` of the SDKs' error structures is shown.
pub(crate) fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(error);
    while let Some(e) = cur {
        let text = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> bool {
        check("T", raw, false, "T_ALLOW=1").is_ok()
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for good in [
            "https://vpce.example",
            "HTTPS://vpce.example/x",
            "http://127.0.0.1:5000",
            "http://127.9.0.1",
            "http://[::1]:5000/x",
            "http://[::ffff:127.0.0.1]:1",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "HTTP://evil.example",
            "Http://10.0.0.1:5000",
            "http://127.0.0.1.evil.com",
            "http://127.0.0.1@evil.com",
            "http://127.0.0.1:x@evil.example",
            "https://user:pw@vault.example",
            "http://sm.internal",
            "ftp://127.0.0.1",
            "127.0.0.1:5000",
            "http://",
            "file:///etc/passwd",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        // The opt-in lets plain http reach any host, but never userinfo through.
        assert!(check("T", "http://sm.internal", true, "").is_ok());
        assert!(check("T", "HTTP://sm.internal", true, "").is_ok());
        assert!(check("T", "http://127.0.0.1:x@evil.example", true, "").is_err());
        let e = check("AWS_ENDPOINT_URL", "HTTP://evil.example", false, "SKM_AWS_ALLOW_HTTP=1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("AWS_ENDPOINT_URL") && e.contains("SKM_AWS_ALLOW_HTTP=1") && e.contains("evil.example"),
            "{e}"
        );
        let e = check("SKM_GCP_ENDPOINT", "http://127.0.0.1:x@evil.example", false, "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("evil.example") && !e.contains("x@"), "{e}");
    }

    #[test]
    fn localhost_counts_when_it_resolves_to_loopback_only() {
        let url = Url::parse("http://localhost:8200").unwrap();
        let resolved: Vec<_> = ("localhost", 8200)
            .to_socket_addrs()
            .map(|a| a.collect())
            .unwrap_or_default();
        let expected = !resolved.is_empty() && resolved.iter().all(|a| loopback_ip(a.ip()));
        assert_eq!(is_loopback(&url), expected, "{resolved:?}");
        assert!(!is_loopback(&Url::parse("http://localhost.evil.example").unwrap()));
        assert!(!is_loopback(&Url::parse("http://mylocalhost").unwrap()));
    }

    #[test]
    fn no_proxy_rules() {
        let p = EnvProxies::from_vars(|n| match n {
            "http_proxy" => Some("http://p:1".into()),
            "HTTPS_PROXY" => Some("http://ps:1".into()),
            "NO_PROXY" => Some("internal.example, 10.0.0.0/8, ::1".into()),
            _ => None,
        });
        let at = |s: &str| Url::parse(s).unwrap();
        assert_eq!(p.for_url(&at("http://127.0.0.1:1")), Some("http://p:1"));
        assert_eq!(p.for_url(&at("https://sm.example")), Some("http://ps:1"));
        assert_eq!(p.for_url(&at("https://a.internal.example")), None);
        assert_eq!(p.for_url(&at("http://10.1.2.3")), None);
        assert_eq!(p.for_url(&at("http://[::1]:8")), None);
        assert_eq!(p.for_url(&at("http://11.1.2.3")), Some("http://p:1"));
        assert!(direct_only(&at("http://sm.example")));
        assert!(direct_only(&at("https://127.0.0.1")));
        assert!(!direct_only(&at("https://sm.example")));
    }
}
