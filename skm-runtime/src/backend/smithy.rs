//! What the two AWS SDK backends (`aws`: Secrets Manager, `ssm`: Parameter Store) configure alike on the
//! SDK's runtime: the HTTP client with skm's proxy rule, the default timeouts and the retry classifier that
//! makes a refused connection final. One copy, so that the two cannot drift apart.

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use aws_smithy_types::timeout::TimeoutConfig;

use crate::backend::endpoint;
use crate::Error;

/// 3 s to connect, 5 s per attempt, 12 s per call with its retries (`backend/endpoint.rs`).
pub(crate) fn default_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(endpoint::CONNECT_TIMEOUT)
        .operation_attempt_timeout(endpoint::ATTEMPT_TIMEOUT)
        .operation_timeout(endpoint::OPERATION_TIMEOUT)
        .build()
}

/// The SDK's HTTPS client with skm's proxy rule: plain-http and loopback requests connect directly unless
/// `proxy_plain`; `https://` requests to other hosts use `HTTPS_PROXY`/`ALL_PROXY`, honouring `NO_PROXY`. (The
/// SDK's default client sends everything, plain http included, through `HTTP_PROXY`.)
pub(crate) fn http_client(proxy_plain: bool) -> Result<SharedHttpClient, Error> {
    let proxies = endpoint::EnvProxies::from_env();
    let proxy = if proxy_plain {
        ProxyConfig::from_env()
    } else {
        match &proxies.https {
            None => ProxyConfig::disabled(),
            Some(p) => {
                let mut direct = vec!["localhost", "127.0.0.0/8", "::1"];
                if let Some(rules) = proxies.no_proxy.as_deref() {
                    direct.push(rules);
                }
                ProxyConfig::https(p.as_str())
                    .map_err(|e| Error::config(format!("HTTPS_PROXY (or ALL_PROXY) is not a proxy URL: {e}")))?
                    .no_proxy(direct.join(","))
            }
        }
    };
    Ok(
        aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
            let mut connector = aws_smithy_http_client::Connector::builder()
                .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc));
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector.set_proxy_config(Some(proxy.clone()));
            connector.build()
        }),
    )
}

/// A retry classifier that forbids retrying a refused connection, which the SDK's transient-error classifier
/// would retry with backoff: a `RetryForbidden` ends the classification, whatever runs after it.
#[derive(Debug)]
pub(crate) struct RefusedIsFinal;

impl ClassifyRetry for RefusedIsFinal {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let refused = match ctx.output_or_error() {
            Some(Err(e)) => e.as_connector_error().is_some_and(|c| endpoint::refused(c)),
            _ => false,
        };
        if refused {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "skm: a refused connection is final"
    }
}
