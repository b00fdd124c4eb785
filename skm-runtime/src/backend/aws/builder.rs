//! [`AwsBackendBuilder`]: the SDK's default configuration chain with explicit overrides on top.

use std::fmt;

use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::config::{Credentials, ProvideCredentials, Region, SharedCredentialsProvider};
use aws_sdk_secretsmanager::Client;

use super::{AwsBackend, DEFAULT_MAX_IN_FLIGHT};
use crate::backend::endpoint;
use crate::backend::fanout::ReadOptions;
use crate::backend::smithy::{default_timeouts, http_client, RefusedIsFinal};
use crate::Error;

/// Configures an [`AwsBackend`]. Anything not set comes from the AWS SDK's default chain (environment,
/// `~/.aws/config` and `~/.aws/credentials`, container and instance metadata), as
/// [`AwsBackend::from_env`] documents.
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use skm_runtime::backend::aws::AwsBackend;
/// # async fn f() -> Result<(), skm_runtime::Error> {
/// let backend = AwsBackend::builder()
///     .region("eu-west-1")
///     .endpoint_url("http://127.0.0.1:5000") // an emulator such as moto or LocalStack
///     .static_credentials("test", "test")
///     .max_attempts(5)
///     .max_in_flight(4)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct AwsBackendBuilder {
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
    retry: Option<RetryConfig>,
    retry_partition: Option<RetryPartition>,
    /// In flight, attempts, backoff, patience.
    read: ReadOptions,
    strategy: Option<super::FetchStrategy>,
    timeout: Option<TimeoutConfig>,
    allow_insecure_http: bool,
    proxy_plain: bool,
}

impl fmt::Debug for AwsBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credential providers may hold keys: say only whether one is set.
        f.debug_struct("AwsBackendBuilder")
            .field("region", &self.region)
            .field("profile", &self.profile)
            .field("endpoint_url", &self.endpoint_url)
            .field("credentials", &self.credentials.as_ref().map(|_| "set"))
            .field("retry", &self.retry)
            .field("read", &self.read)
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("proxy_plain", &self.proxy_plain)
            .field("retry_partition", &self.retry_partition)
            .finish()
    }
}

impl AwsBackendBuilder {
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

    /// Sends requests to this endpoint instead of AWS's, e.g. a VPC endpoint or an emulator.
    ///
    /// Overrides `AWS_ENDPOINT_URL_SECRETS_MANAGER` and `AWS_ENDPOINT_URL`. Plain `http://` (in any letter
    /// case) is accepted only for a loopback host (`127.0.0.1`, `[::1]`, or `localhost` when it resolves to
    /// loopback only), since requests carry signed credentials and return secret values; see
    /// [`allow_insecure_http`](Self::allow_insecure_http). A user name or password in the URL is refused.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Uses `provider` for credentials instead of the default chain.
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.credentials = Some(SharedCredentialsProvider::new(provider));
        self
    }

    /// Uses a fixed access key: for emulators and tests. Production code should rely on the default chain
    /// (roles, SSO, instance profiles) rather than long-lived keys.
    pub fn static_credentials(self, access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        self.credentials_provider(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "skm-static",
        ))
    }

    /// The retry policy (default: the SDK's standard mode, exponential backoff with jitter, with
    /// [`DEFAULT_MAX_ATTEMPTS`](super::DEFAULT_MAX_ATTEMPTS) attempts instead of the SDK's 3; or
    /// `AWS_RETRY_MODE` / `AWS_MAX_ATTEMPTS` / the profile's settings when they differ from the SDK's).
    pub fn retry_config(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The SDK's retry partition: clients in one partition share one retry token bucket, which standard
    /// retry mode spends on every retry and refuses retries from when it runs out (default: the SDK's, one
    /// per service and region for the whole process). Give a client its own when other clients' retries in
    /// the same process must not use up its retries (tests that count attempts, for one).
    pub fn retry_partition(mut self, partition: RetryPartition) -> Self {
        self.retry_partition = Some(partition);
        self
    }

    /// The number of attempts per request, the first included (`1` disables retries). Keeps the rest of
    /// the retry policy.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.read = self.read.max_attempts(attempts);
        self
    }

    /// The SDK's backoff between attempts: about `first` (full jitter), doubling up to `max` (default: the
    /// SDK's standard mode, 1 s then doubling up to 20 s); the adaptive strategy's patience with throttled
    /// single gets waits with the same range (default 100 ms to 6.4 s). Keeps the rest of the retry policy.
    pub fn backoff(mut self, first: std::time::Duration, max: std::time::Duration) -> Self {
        self.read = self.read.backoff(first, max);
        self
    }

    /// Requests in flight, attempts, backoff and patience at once; what `options` leaves unset keeps what
    /// was set before (or the default). The same as calling [`max_in_flight`](Self::max_in_flight),
    /// [`max_attempts`](Self::max_attempts), [`backoff`](Self::backoff) and
    /// [`throttle_patience`](Self::throttle_patience).
    pub fn read_options(mut self, options: ReadOptions) -> Self {
        self.read = self.read.overlay(options);
        self
    }

    /// Connect, per-attempt and per-operation timeouts. Default: 3 s to connect, 5 s per attempt, 12 s per
    /// call with its retries, so that an endpoint that accepts connections and never answers fails well
    /// within the loader's deadline; a refused connection is not retried.
    ///
    /// Bound a whole load with [`Loader::deadline`](crate::Loader::deadline).
    pub fn timeout_config(mut self, timeout: TimeoutConfig) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many requests one [`fetch`](crate::backend::Backend::fetch) keeps in flight at once
    /// (`BatchGetSecretValue` chunks and `GetSecretValue` calls together); default 8, at least 1.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.read = self.read.max_in_flight(max);
        self
    }

    /// How many requests one fetch keeps in flight.
    #[deprecated(
        since = "0.1.0",
        note = "renamed `max_in_flight`, the name every backend builder shares"
    )]
    pub fn max_concurrency(self, max: usize) -> Self {
        self.max_in_flight(max)
    }

    /// Allows a plain-`http://` endpoint on a host that is not loopback (env `SKM_AWS_ALLOW_HTTP=1`): values
    /// then cross the network unencrypted. Only on a network you trust.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Lets plain-`http://` and loopback requests go through the environment's proxy (`HTTP_PROXY`,
    /// `ALL_PROXY`) too (env `SKM_AWS_PROXY_PLAIN=1`), which shows signed requests and secret values to the
    /// proxy in clear text. By default only `https://` requests to other hosts use a proxy (`HTTPS_PROXY`, a
    /// CONNECT tunnel: TLS ends at AWS), honouring `NO_PROXY`.
    pub fn proxy_plain(mut self, allow: bool) -> Self {
        self.proxy_plain = allow;
        self
    }

    /// How current versions are read: [`FetchStrategy::Adaptive`](super::FetchStrategy::Adaptive) (the
    /// default) batches while the batch quota lasts and moves to single gets when throttled;
    /// [`Batch`](super::FetchStrategy::Batch) and [`Single`](super::FetchStrategy::Single) fix one way.
    pub fn strategy(mut self, strategy: super::FetchStrategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// How long the adaptive strategy keeps trying a throttled `GetSecretValue` past the SDK's retries
    /// (default [`DEFAULT_THROTTLE_PATIENCE`](super::DEFAULT_THROTTLE_PATIENCE), 30 s; zero: the SDK's
    /// retries only). See [`AwsBackend::with_throttle_patience`](super::AwsBackend::with_throttle_patience).
    pub fn throttle_patience(mut self, patience: std::time::Duration) -> Self {
        self.read = self.read.throttle_patience(patience);
        self
    }

    /// Resolves the configuration and builds the backend.
    ///
    /// Contacts nothing when a region is configured: credentials are resolved on the first request. When
    /// no region is set anywhere, the SDK asks the instance-metadata service (unless
    /// `AWS_EC2_METADATA_DISABLED=true`).
    ///
    /// # Errors
    /// [`Error::Config`] when no region can be found, or the endpoint override is not a URL, holds a user name
    /// or password, or is plain `http://` on a host that is not loopback (without
    /// [`allow_insecure_http`](Self::allow_insecure_http)).
    pub async fn build(self) -> Result<AwsBackend, Error> {
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let yes = |n: &str| env(n).is_some_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"));
        let allow_http = self.allow_insecure_http || yes("SKM_AWS_ALLOW_HTTP");
        let proxy_plain = self.proxy_plain || yes("SKM_AWS_PROXY_PLAIN");
        // Every source is checked, and the first that is set (the SDK's own precedence) is the one requests go
        // to, in its parsed form: the SDK never reads the text differently from the check.
        let mut endpoint = None;
        for (source, url) in [
            ("endpoint_url(..)", self.endpoint_url.clone()),
            (
                "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                env("AWS_ENDPOINT_URL_SECRETS_MANAGER"),
            ),
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
        // The profile's `endpoint_url` arrives here too.
        if let Some(url) = shared.endpoint_url() {
            let checked = check_endpoint("the AWS profile's endpoint_url", url, allow_http)?;
            endpoint.get_or_insert(checked);
        }
        if shared.region().is_none() {
            return Err(Error::config(
                "AWS Secrets Manager needs a region: set AWS_REGION (e.g. AWS_REGION=eu-west-1), add `region` \
                 to the AWS profile, or call `AwsBackend::builder().region(..)`"
                    .into(),
            ));
        }

        let mut config = aws_sdk_secretsmanager::config::Builder::from(&shared)
            // Nothing listens on a refused port: answer at once instead of backing off up to 5 times.
            .retry_classifier(RefusedIsFinal);
        let ignore_configured = yes("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
        // Set on the service's own config so that it wins over the environment's endpoint variables.
        if let Some(url) = endpoint.filter(|_| self.endpoint_url.is_some() || !ignore_configured) {
            config = config.endpoint_url(url.as_str().trim_end_matches('/'));
        }
        // The SDK's own default (3 attempts) loses 2.7 % of loads to a service failing 30 % of requests; keep
        // its policy but with more attempts, unless the environment or the profile chose a policy.
        let sdk_default = shared.retry_config().is_none_or(|r| *r == RetryConfig::standard())
            && std::env::var_os("AWS_MAX_ATTEMPTS").is_none();
        let max_attempts = self
            .read
            .max_attempts
            .or((self.retry.is_none() && sdk_default).then_some(super::DEFAULT_MAX_ATTEMPTS));
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
        let mut backend = AwsBackend::from_client(Client::from_conf(config.build()))
            .with_max_in_flight(self.read.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT))
            .with_strategy(self.strategy.unwrap_or_default())
            .with_throttle_patience(self.read.throttle_patience.unwrap_or(super::DEFAULT_THROTTLE_PATIENCE));
        backend.backoff = self.read.backoff;
        Ok(backend)
    }
}

/// Refuses an endpoint that is not a URL, holds userinfo, or is plain `http://` on a host that is not
/// loopback (unless `allow_http`); see `backend/endpoint.rs`.
pub(super) fn check_endpoint(source: &str, url: &str, allow_http: bool) -> Result<url::Url, Error> {
    endpoint::check(
        source,
        url,
        allow_http,
        "SKM_AWS_ALLOW_HTTP=1 (AwsBackendBuilder::allow_insecure_http)",
    )
}

#[cfg(test)]
mod tests {
    use super::check_endpoint;

    #[test]
    fn plain_http_endpoints_only_on_loopback() {
        for ok in [
            "https://vpce.example",
            "http://127.0.0.1:5000",
            "http://[::1]:5000/x",
            "http://127.9.0.1",
        ] {
            assert!(check_endpoint("t", ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:5000",
            "http://127.0.0.1.evil.com",
            "http://sm.internal",
            // Issue 25, finding 2: the scheme in capitals was not recognised as plain http.
            "HTTP://sm.internal:5000",
            "Http://10.0.0.1",
        ] {
            assert!(check_endpoint("t", bad, false).is_err(), "{bad}");
            assert!(check_endpoint("t", bad, true).is_ok(), "{bad}");
        }
        // Userinfo is refused even with the opt-in: the host is what follows the `@`.
        for bad in ["http://127.0.0.1@evil.com", "http://127.0.0.1:x@evil.example"] {
            assert!(check_endpoint("t", bad, false).is_err(), "{bad}");
            assert!(check_endpoint("t", bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn read_knobs_share_every_builders_names_and_the_old_ones_still_work() {
        use crate::backend::fanout::ReadOptions;
        use std::time::Duration;
        let b = super::AwsBackendBuilder::default()
            .max_in_flight(4)
            .max_attempts(2)
            .backoff(Duration::from_millis(10), Duration::from_millis(40))
            .throttle_patience(Duration::from_secs(1));
        assert_eq!(
            b.read,
            ReadOptions::new()
                .max_in_flight(4)
                .max_attempts(2)
                .backoff(Duration::from_millis(10), Duration::from_millis(40))
                .throttle_patience(Duration::from_secs(1))
        );
        #[allow(deprecated)]
        let old = super::AwsBackendBuilder::default().max_concurrency(3);
        assert_eq!(old.read.max_in_flight, Some(3));
        let all = super::AwsBackendBuilder::default().read_options(ReadOptions::new().max_attempts(9));
        assert_eq!(all.read.max_attempts, Some(9));
    }
}
