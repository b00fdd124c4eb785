//! AWS Secrets Manager (cargo feature `aws`), through the official `aws-sdk-secretsmanager`.
//!
//! # Mapping
//! - A field's `path` is the `SecretId`: a secret name (`auth/jwt`), a full ARN, or a partial ARN (without
//!   the six random characters AWS appends).
//! - `SecretString` becomes [`SecretValue::Text`]; a `key` then reads a property of the JSON object it
//!   holds (the key is matched exactly, so `a.b` and `a/b` are keys, not paths). `SecretBinary` becomes
//!   [`SecretValue::Binary`].
//! - Versions: current (`AWSCURRENT`) by default; `version_stage = "AWSPREVIOUS"` reads a staging label and
//!   `version_id = "..."` a version id; [`VersionPin::Previous`](crate::VersionPin::Previous) is
//!   `AWSPREVIOUS`. Numbered versions (`version = 3`) belong to Vault and the local
//!   store and fail as [`FailureKind::Invalid`](crate::backend::FailureKind::Invalid).
//!
//! # Requests
//! One [`fetch`](Backend::fetch) deduplicates its requests, then reads every *current* version with
//! `BatchGetSecretValue` (`SecretIdList`, 20 ids per call, several calls in flight) and each pinned version
//! with `GetSecretValue`. At most [`AwsBackendBuilder::max_in_flight`] requests (default 8) are in flight, through the shared
//! [`FanOut`] in spawned mode.
//! If the caller may not call `BatchGetSecretValue` (`AccessDeniedException` on the call itself), or the
//! endpoint does not know it (`UnknownOperationException` from an older emulator), the backend falls back
//! to `GetSecretValue` per secret, logs a warning once, and keeps doing so for its lifetime.
//!
//! # At fleet scale: the adaptive default
//! AWS limits each operation per account and region: `BatchGetSecretValue` 100/s (not adjustable),
//! `GetSecretValue` 10,000/s, `DescribeSecret` 40,000/s. Batching is best for one process (5 requests for
//! 100 secrets), but a deploy that starts 2,000 instances at once needs 10,000 batch calls: 100 s of the
//! batch quota, against 20 s of the single-get quota. The default, [`FetchStrategy::Adaptive`], therefore:
//! - batches while the batch quota lasts, with no SDK retry on the batch call itself;
//! - when a batch is throttled (or fails transiently), reads that chunk's secrets with concurrent
//!   `GetSecretValue` calls at once, and reads current versions that way for [`BATCH_COOLDOWN`] (30 s),
//!   then tries batches again; single gets keep the SDK's retries (exponential backoff with full jitter,
//!   from 1 s for throttling), so a fleet spreads out instead of retrying in step;
//! - on hot reload, checks for changes with `DescribeSecret` (the 40,000/s quota; no value crosses the
//!   network) and fetches only the secrets whose version moved. Without `secretsmanager:DescribeSecret` it
//!   logs a warning once and refetches values as before.
//!
//! [`AwsBackendBuilder::strategy`] (or [`AwsBackend::with_strategy`]) fixes the behaviour instead:
//! [`FetchStrategy::Batch`] always batches (and the SDK retries throttled batches), [`FetchStrategy::Single`]
//! always uses `GetSecretValue`. Tune concurrency with [`AwsBackendBuilder::max_in_flight`].
//!
//! Retries are the SDK's standard mode (exponential backoff with jitter, for throttling, 5xx and transient
//! network errors) with [`DEFAULT_MAX_ATTEMPTS`] (5) attempts instead of the SDK's 3
//! ([`AwsBackendBuilder::max_attempts`], [`AwsBackendBuilder::backoff`], [`AwsBackendBuilder::retry_config`]). The SDK sets no per-attempt
//! timeout: bound a whole load with [`Loader::deadline`](crate::Loader::deadline).
//!
//! # Failures
//! Errors are told apart by AWS error code, never by HTTP status: `ResourceNotFoundException` (and a secret
//! scheduled for deletion) is *not found*, `AccessDeniedException` and credential errors are *forbidden*,
//! `DecryptionFailure` and `KMS*` errors are *decryption*, `ThrottlingException` after retries is
//! *throttled*, timeouts and connection failures are *unavailable*, anything else is *other*. Messages carry
//! AWS's code and message, never a value.
//!
//! # Environment
//! [`AwsBackend::from_env`] (which `AppSecrets::load()` uses when `AWS_REGION` is set) reads what every
//! AWS SDK reads:
//!
//! | variable | meaning |
//! |---|---|
//! | `AWS_REGION`, `AWS_DEFAULT_REGION` | the region (required, here or in the profile) |
//! | `AWS_PROFILE` | the profile of `~/.aws/config` / `~/.aws/credentials` |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | static credentials |
//! | `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN` | web identity (EKS IRSA) |
//! | `AWS_CONTAINER_CREDENTIALS_*` | ECS / EKS Pod Identity credentials |
//! | `AWS_EC2_METADATA_DISABLED` | `true` stops the instance-metadata lookup |
//! | `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL` | another endpoint (VPC endpoint, emulator); plain `http://` only to a loopback IP literal |
//! | `SKM_AWS_ALLOW_HTTP` | `1`: allow a plain-`http://` endpoint on another host (values cross the network unencrypted) |
//! | `AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE` | the retry policy |
//! | `AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE` | where the profile files are |
//!
//! # IAM permissions
//! Loading needs `secretsmanager:BatchGetSecretValue` on `*` (it has no resource) and
//! `secretsmanager:GetSecretValue` on each secret; without the first, loading still works, one request
//! per secret. `ListSecrets` is not needed (it is only for batches by filter, which skm does not use).
//! Hot reload with the default strategy also uses `secretsmanager:DescribeSecret` on each secret (optional:
//! without it, a refresh refetches values). Secrets encrypted with a customer-managed KMS key also need `kms:Decrypt` on it.
//!
//! ```json
//! {
//!   "Version": "2012-10-17",
//!   "Statement": [
//!     { "Effect": "Allow", "Action": "secretsmanager:BatchGetSecretValue", "Resource": "*" },
//!     { "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
//!       "Resource": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:myapp/*" }
//!   ]
//! }
//! ```
//!
//! The [`AdminBackend`] operations (the `skm` tool) use `CreateSecret`, `PutSecretValue`, `TagResource`
//! (with tags), `ListSecrets`, `DeleteSecret` and `ListSecretVersionIds`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;

use super::fanout::FanOut;
#[cfg(doc)]
use super::SecretValue;
use super::{
    AdminBackend, AdminError, Backend, DeleteMode, FetchError, FetchRequest, FetchResult, ListEntry, PutRequest,
    VersionInfo,
};
use crate::Error;

mod admin;
mod builder;
mod doctor;
mod error;
mod fetch;
pub mod policy;
mod versions;

pub(crate) use doctor::{doctor, registry_build};

pub use builder::AwsBackendBuilder;
pub use fetch::BATCH_COOLDOWN;

/// How the backend reads current versions (see the [module documentation](self#at-fleet-scale-the-adaptive-default)).
///
/// ```
/// use skm_runtime::backend::aws::{AwsBackend, FetchStrategy};
/// let builder = AwsBackend::builder().strategy(FetchStrategy::Single);
/// assert_eq!(FetchStrategy::default(), FetchStrategy::Adaptive);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FetchStrategy {
    /// Batch while the batch quota lasts; a throttled batch moves to concurrent single gets for
    /// [`BATCH_COOLDOWN`]; hot reload checks versions with `DescribeSecret`.
    #[default]
    Adaptive,
    /// Always `BatchGetSecretValue` (20 ids a call); the SDK retries throttled calls. Hot reload refetches.
    Batch,
    /// Always `GetSecretValue`, one call per secret. Hot reload refetches.
    Single,
}

/// The AWS SDK configuration crate this backend is built on, re-exported so that
/// [`AwsBackend::from_client`] needs no separate dependency (and no version to keep in step).
pub use aws_config;
/// The AWS Secrets Manager SDK this backend is built on, re-exported for [`AwsBackend::from_client`] and
/// [`AwsBackend::client`].
pub use aws_sdk_secretsmanager;

/// Requests in flight per fetch unless configured otherwise.
const DEFAULT_MAX_IN_FLIGHT: usize = 8;

/// Attempts per request (the first included) unless the builder, `AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE` or the
/// profile says otherwise: with 5, a load survives a service failing 30 % of requests 99.7 % of the time
/// (the SDK's default of 3: 97.3 %). Backoff is the SDK's standard mode: exponential with full jitter.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// How long the adaptive strategy keeps trying a throttled `GetSecretValue` by default: a fleet starting at
/// once can use up the region's quota for several seconds, and the SDK's retry token bucket runs dry long
/// before the quota refills (measured in `skm-bench --only fleet`).
pub const DEFAULT_THROTTLE_PATIENCE: Duration = Duration::from_secs(30);

/// AWS Secrets Manager as a [`Backend`] and [`AdminBackend`].
///
/// Cloning is cheap and shares the client and what the backend learned (a refused batch call).
///
/// # Example
/// ```no_run
/// use skm_runtime::backend::aws::AwsBackend;
/// use skm_runtime::Loader;
/// # async fn f() -> Result<(), skm_runtime::Error> {
/// let backend = AwsBackend::from_env().await?; // AWS_REGION, AWS_PROFILE, ... as the AWS CLI reads them
/// let loader = Loader::new().backend(backend);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AwsBackend {
    client: Client,
    max_in_flight: usize,
    batch_refused: Arc<AtomicBool>,
    strategy: FetchStrategy,
    /// How long an adaptive backend keeps trying a throttled `GetSecretValue`.
    throttle_patience: Duration,
    /// The backoff of throttled single gets' patience, when set ([`AwsBackendBuilder::backoff`]).
    backoff: Option<(Duration, Duration)>,
    /// Until when an adaptive backend reads current versions one by one after a throttled batch.
    batch_paused_until: Arc<Mutex<Option<Instant>>>,
    /// `DescribeSecret` was refused: hot reload refetches values.
    describe_refused: Arc<AtomicBool>,
}

impl fmt::Debug for AwsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsBackend")
            .field("region", &self.region())
            .field("max_in_flight", &self.max_in_flight)
            .field("batch_refused", &self.batch_refused())
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl AwsBackend {
    /// A builder starting from the SDK's default configuration chain.
    pub fn builder() -> AwsBackendBuilder {
        AwsBackendBuilder::default()
    }

    /// A backend configured from the environment and AWS profile files, as the AWS CLI is (see the
    /// [module documentation](self) for the variables).
    ///
    /// # Errors
    /// [`Error::Config`] when no region is configured.
    pub async fn from_env() -> Result<Self, Error> {
        Self::builder().build().await
    }

    /// A backend using a client configured elsewhere (for example shared with the rest of an application).
    ///
    /// # Example
    /// ```no_run
    /// use skm_runtime::backend::aws::{aws_config, aws_sdk_secretsmanager, AwsBackend};
    /// # async fn f() {
    /// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    /// let backend = AwsBackend::from_client(aws_sdk_secretsmanager::Client::new(&config));
    /// # }
    /// ```
    pub fn from_client(client: Client) -> Self {
        AwsBackend {
            client,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            batch_refused: Arc::new(AtomicBool::new(false)),
            strategy: FetchStrategy::default(),
            throttle_patience: DEFAULT_THROTTLE_PATIENCE,
            backoff: None,
            batch_paused_until: Arc::new(Mutex::new(None)),
            describe_refused: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sets how current versions are read (default [`FetchStrategy::Adaptive`]).
    pub fn with_strategy(mut self, strategy: FetchStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// How long the adaptive strategy keeps trying a throttled `GetSecretValue`, past the SDK's own
    /// retries, with jittered exponential backoff (default [`DEFAULT_THROTTLE_PATIENCE`]); zero leaves
    /// throttling to the SDK. [`Loader::deadline`](crate::Loader::deadline) still bounds the whole load.
    pub fn with_throttle_patience(mut self, patience: Duration) -> Self {
        self.throttle_patience = patience;
        self
    }

    /// The strategy in use.
    pub fn strategy(&self) -> FetchStrategy {
        self.strategy
    }

    /// Whether an adaptive backend is reading current versions one by one after a throttled batch.
    pub fn batch_paused(&self) -> bool {
        let until = *self.batch_paused_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|t| Instant::now() < t)
    }

    /// Pauses batching for [`BATCH_COOLDOWN`]; `true` if it was not paused already (to log once).
    fn pause_batches(&self) -> bool {
        let was = self.batch_paused();
        *self.batch_paused_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + BATCH_COOLDOWN);
        !was
    }

    /// Sets how many requests one fetch keeps in flight (at least 1; default 8).
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// Sets how many requests one fetch keeps in flight.
    #[deprecated(
        since = "0.1.0",
        note = "renamed `with_max_in_flight`, the name every backend shares"
    )]
    pub fn with_max_concurrency(self, max: usize) -> Self {
        self.with_max_in_flight(max)
    }

    /// The fan-out of one fetch: the bound, and under the adaptive strategy the patience of throttled single
    /// gets with its backoff (the SDK retries each call underneath: the fan-out tries an attempt once).
    fn fan_out(&self, adaptive: bool) -> FanOut {
        let patience = if adaptive {
            self.throttle_patience
        } else {
            Duration::ZERO
        };
        let fan = FanOut::new(self.max_in_flight).throttle_patience(patience);
        match self.backoff {
            Some(range) => fan.backoff_range(range),
            None => fan,
        }
    }

    /// The SDK client, for operations skm does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The configured region.
    pub fn region(&self) -> Option<String> {
        self.client.config().region().map(ToString::to_string)
    }

    /// Whether `BatchGetSecretValue` was refused, so that this backend now reads secrets one by one.
    pub fn batch_refused(&self) -> bool {
        self.batch_refused.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Backend for AwsBackend {
    fn name(&self) -> String {
        match self.region() {
            Some(region) => format!("AWS Secrets Manager ({region})"),
            None => "AWS Secrets Manager".into(),
        }
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        fetch::fetch(self, requests).await
    }

    /// Adaptive only: `DescribeSecret` per distinct secret (the 40,000/s quota), so that hot reload
    /// refetches only what changed; `None` (refetch) for the fixed strategies or without the permission.
    async fn current_versions(&self, requests: &[FetchRequest]) -> Option<Vec<Result<String, FetchError>>> {
        versions::current_versions(self, requests).await
    }
}

#[async_trait]
impl AdminBackend for AwsBackend {
    /// `CreateSecret` (with tags and description); if the secret exists, `PutSecretValue` adds a version
    /// (unless `create_only`). Returns the new `VersionId`.
    async fn put(&self, request: PutRequest) -> Result<String, AdminError> {
        admin::put(self, request).await
    }

    /// `ListSecrets` filtered by name, every page, then an exact prefix match; secrets scheduled for
    /// deletion are left out.
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        admin::list(self, prefix).await
    }

    /// `DeleteSecret`: [`DeleteMode::Default`] keeps it recoverable for 30 days,
    /// [`DeleteMode::RecoveryDays`] for 7 to 30 days, [`DeleteMode::Force`] deletes it at once (and, as in
    /// AWS, succeeds when the secret does not exist).
    async fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
        admin::delete(self, path, mode).await
    }

    /// `ListSecretVersionIds`, unlabelled versions included, newest first, with their staging labels.
    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        admin::versions(self, path).await
    }
}
