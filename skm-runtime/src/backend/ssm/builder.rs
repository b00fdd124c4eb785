//! [`SsmBackendBuilder`]: the AWS SDK's default configuration chain with explicit overrides on top, as the
//! AWS Secrets Manager backend's builder has them (the same variables, defaults and HTTP stack).

use std::fmt;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_ssm::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_ssm::config::timeout::TimeoutConfig;
use aws_sdk_ssm::config::{Credentials, ProvideCredentials, Region, SharedCredentialsProvider};
use aws_sdk_ssm::Client;

use super::{SsmBackend, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_THROTTLE_PATIENCE};
use crate::backend::endpoint;
use crate::backend::fanout::ReadOptions;
use crate::backend::smithy::{default_timeouts, http_client, RefusedIsFinal};
use crate::Error;

/// Configures an [`SsmBackend`]. Anything not set comes from the AWS SDK's default chain (environment,
/// `~/.aws/config` and `~/.aws/credentials`, container and instance metadata).
///
/// # Example
/// ```no_run
/// use skm_runtime::backend::ssm::SsmBackend;
/// # async fn f() -> Result<(), skm_runtime::Error> {
/// let backend = SsmBackend::builder()
///     .region("eu-west-1")
///     .endpoint_url("http://127.0.0.1:5000") // an emulator such as moto
///     .static_credentials("test", "test")
///     .max_in_flight(4)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct SsmBackendBuilder {
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
    retry: Option<RetryConfig>,
    retry_partition: Option<RetryPartition>,
    /// In flight, attempts, backoff, patience.
    read: ReadOptions,
    timeout: Option<TimeoutConfig>,
    allow_insecure_http: bool,
    proxy_plain: bool,
    kms_key_id: Option<String>,
}

impl fmt::Debug for SsmBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credential providers may hold keys: say only whether one is set.
        f.debug_struct("SsmBackendBuilder")
            .field("region", &self.region)
            .field("profile", &self.profile)
            .field("endpoint_url", &self.endpoint_url)
            .field("credentials", &self.credentials.as_ref().map(|_| "set"))
            .field("retry", &self.retry)
            .field("retry_partition", &self.retry_partition)
            .field("read", &self.read)
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("proxy_plain", &self.proxy_plain)
            .field("kms_key_id", &self.kms_key_id)
            .finish()
    }
}

impl SsmBackendBuilder {
    /// The region, e.g. `eu-west-1` (default: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The named profile of `~/.aws/config` to read (default: `AWS_PROFILE`, else `default`).
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Sends requests to this endpoint instead of AWS's (a VPC endpoint, an emulator). Overrides
    /// `AWS_ENDPOINT_URL_SSM` and `AWS_ENDPOINT_URL`. Plain `http://` only for a loopback host unless
    /// [`allow_insecure_http`](Self::allow_insecure_http); a user name or password in the URL is refused.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Uses `provider` for credentials instead of the default chain.
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.credentials = Some(SharedCredentialsProvider::new(provider));
        self
    }

    /// Uses a fixed access key: for emulators and tests.
    pub fn static_credentials(self, access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        self.credentials_provider(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "skm-static",
        ))
    }

    /// The retry policy (default: the SDK's standard mode with [`DEFAULT_MAX_ATTEMPTS`] attempts, or what
    /// `AWS_RETRY_MODE` / `AWS_MAX_ATTEMPTS` / the profile choose).
    pub fn retry_config(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The SDK's retry partition (clients in one partition share one retry token bucket): give a client its
    /// own when other clients' retries in the process must not use up its retries.
    pub fn retry_partition(mut self, partition: RetryPartition) -> Self {
        self.retry_partition = Some(partition);
        self
    }

    /// The number of attempts per request, the first included (`1` disables the SDK's retries).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.read = self.read.max_attempts(attempts);
        self
    }

    /// The SDK's backoff between attempts (about `first`, doubling up to `max`); the patience with throttled
    /// calls waits with the same range.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.read = self.read.backoff(first, max);
        self
    }

    /// Requests in flight, attempts, backoff and patience at once; what `options` leaves unset keeps what
    /// was set before (or the default).
    pub fn read_options(mut self, options: ReadOptions) -> Self {
        self.read = self.read.overlay(options);
        self
    }

    /// How many `GetParameters` calls one fetch keeps in flight; default 10, at least 1.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.read = self.read.max_in_flight(max);
        self
    }

    /// How long a throttled call is tried again past the SDK's retries (default
    /// [`DEFAULT_THROTTLE_PATIENCE`], 30 s; zero: the SDK's retries only).
    pub fn throttle_patience(mut self, patience: Duration) -> Self {
        self.read = self.read.throttle_patience(patience);
        self
    }

    /// Connect, per-attempt and per-operation timeouts. Default: 3 s to connect, 5 s per attempt, 12 s per
    /// call with its retries (those of the AWS Secrets Manager backend). Bound a whole load with
    /// [`Loader::deadline`](crate::Loader::deadline).
    pub fn timeout_config(mut self, timeout: TimeoutConfig) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Allows a plain-`http://` endpoint on a host that is not loopback (env `SKM_AWS_ALLOW_HTTP=1`).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Lets plain-`http://` and loopback requests go through the environment's proxy too (env
    /// `SKM_AWS_PROXY_PLAIN=1`). By default only `https://` requests to other hosts use `HTTPS_PROXY`.
    pub fn proxy_plain(mut self, allow: bool) -> Self {
        self.proxy_plain = allow;
        self
    }

    /// The KMS key (id, ARN or alias) the `SecureString`s that `put` writes are encrypted with (default: the
    /// account's `alias/aws/ssm`).
    pub fn kms_key_id(mut self, key: impl Into<String>) -> Self {
        self.kms_key_id = Some(key.into());
        self
    }

    /// Resolves the configuration and builds the backend. Contacts nothing when a region is configured.
    ///
    /// # Errors
    /// [`Error::Config`] when no region can be found, or the endpoint override is not a URL, holds a user name
    /// or password, or is plain `http://` on a host that is not loopback (without
    /// [`allow_insecure_http`](Self::allow_insecure_http)).
    pub async fn build(self) -> Result<SsmBackend, Error> {
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let yes = |n: &str| env(n).is_some_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"));
        let allow_http = self.allow_insecure_http || yes("SKM_AWS_ALLOW_HTTP");
        let proxy_plain = self.proxy_plain || yes("SKM_AWS_PROXY_PLAIN");
        // Every source is checked; the first that is set (the SDK's precedence) is the one used, parsed.
        let mut endpoint = None;
        for (source, url) in [
            ("endpoint_url(..)", self.endpoint_url.clone()),
            ("AWS_ENDPOINT_URL_SSM", env("AWS_ENDPOINT_URL_SSM")),
            ("AWS_ENDPOINT_URL", env("AWS_ENDPOINT_URL")),
        ] {
            if let Some(url) = url {
                let checked = check_endpoint(source, &url, allow_http)?;
                endpoint.get_or_insert(checked);
            }
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client(proxy_plain)?);
        if let Some(region) = self.region {
            loader = loader.region(Region::new(region));
        }
        if let Some(profile) = self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(credentials) = self.credentials {
            loader = loader.credentials_provider(credentials);
        }
        loader = loader.timeout_config(self.timeout.unwrap_or_else(default_timeouts));
        let shared = loader.load().await;
        if let Some(url) = shared.endpoint_url() {
            let checked = check_endpoint("the AWS profile's endpoint_url", url, allow_http)?;
            endpoint.get_or_insert(checked);
        }
        if shared.region().is_none() {
            return Err(Error::config(
                "AWS SSM Parameter Store needs a region: set AWS_REGION (e.g. AWS_REGION=eu-west-1), add `region` \
                 to the AWS profile, or call `SsmBackend::builder().region(..)`"
                    .into(),
            ));
        }

        let mut config = aws_sdk_ssm::config::Builder::from(&shared).retry_classifier(RefusedIsFinal);
        let ignore_configured = yes("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
        if let Some(url) = endpoint.filter(|_| self.endpoint_url.is_some() || !ignore_configured) {
            config = config.endpoint_url(url.as_str().trim_end_matches('/'));
        }
        // The SDK's 3 attempts become 5 unless the environment or the profile chose a policy.
        let sdk_default = shared.retry_config().is_none_or(|r| *r == RetryConfig::standard())
            && std::env::var_os("AWS_MAX_ATTEMPTS").is_none();
        let max_attempts = self
            .read
            .max_attempts
            .or((self.retry.is_none() && sdk_default).then_some(DEFAULT_MAX_ATTEMPTS));
        if self.retry.is_some() || max_attempts.is_some() || self.read.backoff.is_some() {
            let mut retry = self
                .retry
                .or_else(|| shared.retry_config().cloned())
                .unwrap_or_else(RetryConfig::standard);
            if let Some(attempts) = max_attempts {
                retry = retry.with_max_attempts(attempts);
            }
            if let Some((first, max)) = self.read.backoff {
                retry = retry.with_initial_backoff(first).with_max_backoff(max);
            }
            config = config.retry_config(retry);
        }
        if let Some(partition) = self.retry_partition {
            config = config.retry_partition(partition);
        }
        let mut backend = SsmBackend::from_client(Client::from_conf(config.build()))
            .with_max_in_flight(self.read.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT))
            .with_throttle_patience(self.read.throttle_patience.unwrap_or(DEFAULT_THROTTLE_PATIENCE));
        backend.backoff = self.read.backoff;
        backend.kms_key_id = self.kms_key_id;
        Ok(backend)
    }
}

fn check_endpoint(source: &str, url: &str, allow_http: bool) -> Result<url::Url, Error> {
    endpoint::check(
        source,
        url,
        allow_http,
        "SKM_AWS_ALLOW_HTTP=1 (SsmBackendBuilder::allow_insecure_http)",
    )
}

#[cfg(test)]
mod tests {
    use super::check_endpoint;

    #[test]
    fn plain_http_endpoints_only_on_loopback() {
        assert!(check_endpoint("t", "http://127.0.0.1:5000", false).is_ok());
        assert!(check_endpoint("t", "https://ssm.vpce.example", false).is_ok());
        assert!(check_endpoint("t", "http://10.0.0.1:5000", false).is_err());
        assert!(check_endpoint("t", "http://10.0.0.1:5000", true).is_ok());
        assert!(check_endpoint("t", "http://127.0.0.1@evil.com", true).is_err());
    }
}
