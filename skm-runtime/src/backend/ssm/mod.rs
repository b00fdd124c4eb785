//! AWS Systems Manager Parameter Store (cargo feature `ssm`), through the official `aws-sdk-ssm`.
//!
//! # Mapping
//! - A field's `path` is a parameter name. **A leading `/` is added by rule**: `auth/jwt` and `/auth/jwt`
//!   both read the parameter `/auth/jwt`, so paths are written as in every other backend and parameters live
//!   in Parameter Store's hierarchy (which `GetParametersByPath` and path-scoped IAM policies need). A full
//!   ARN (`arn:aws:ssm:eu-west-1:123456789012:parameter/auth/jwt`, a parameter shared from another account)
//!   is used as it is. A top-level name without a slash (`jwt`, not `/jwt`) is therefore out of reach.
//! - `String`, `SecureString` (decrypted) and `StringList` values become [`SecretValue::Text`]; a `key` then
//!   reads a property of the JSON object the value holds, as for AWS Secrets Manager.
//! - Versions: current by default; `path = "auth/jwt:3"` or `version = 3` reads version 3, and
//!   `version_stage = "blue"` (or `path = "auth/jwt:blue"`) the version carrying that label: Parameter
//!   Store's own `name:selector` syntax. A `version_id` is a version number. [`VersionPin::Previous`]
//!   reads the current version's number, then the one before it (two requests).
//!
//! # Requests
//! One [`fetch`](Backend::fetch) deduplicates its requests, then reads them with `GetParameters`
//! (`WithDecryption=true`, 10 names per call, AWS's limit): `ceil(n/10)` requests for `n` parameters, several
//! in flight at once (at most [`SsmBackendBuilder::max_in_flight`], default 10: the 100 parameters of a large service in one wave of 10 calls) through the shared
//! [`FanOut`] in spawned mode. A name AWS does not know comes back in `InvalidParameters`: that field is *not
//! found*, the rest of its batch loads. A name Parameter Store would refuse (a space, a `*`) fails as
//! *invalid* before any request, so that it cannot fail the nine others of its batch.
//!
//! Retries are the SDK's standard mode with [`DEFAULT_MAX_ATTEMPTS`] (5) attempts; a call still throttled
//! after them is tried again with jittered backoff for [`DEFAULT_THROTTLE_PATIENCE`] (30 s), as the AWS
//! Secrets Manager backend does, since a fleet starting at once can use up the region's quota (40 reads per
//! second by default) for several seconds. Every call runs under the connect (3 s), per-attempt (5 s) and
//! per-call (12 s) timeouts ([`SsmBackendBuilder::timeout_config`]).
//!
//! # Failures
//! By AWS error code: `ParameterNotFound`, `ParameterVersionNotFound` and `InvalidParameters` are *not
//! found*; `AccessDeniedException` and credential errors *forbidden*; `ThrottlingException` after retries
//! *throttled*; `InvalidKeyId` and KMS errors *decryption*; timeouts, connection failures and
//! `InternalServerError` *unavailable*. Messages carry AWS's code and message, never a value.
//!
//! # Environment
//! [`SsmBackend::from_env`] (which `SKM_BACKEND=ssm` uses: Parameter Store has no signal of its own, it
//! shares AWS Secrets Manager's variables, so `AWS_REGION` alone still selects `aws`) reads what every AWS SDK
//! reads: `AWS_REGION`, `AWS_PROFILE`, the credential variables and files, and
//!
//! | variable | meaning |
//! |---|---|
//! | `AWS_ENDPOINT_URL_SSM`, `AWS_ENDPOINT_URL` | another endpoint (VPC endpoint, emulator); plain `http://` only to a loopback IP literal |
//! | `SKM_AWS_ALLOW_HTTP` | `1`: allow a plain-`http://` endpoint on another host (values cross the network unencrypted) |
//! | `SKM_AWS_PROXY_PLAIN` | `1`: send plain-`http://` and loopback requests through `HTTP_PROXY` too |
//!
//! # IAM permissions
//! Loading needs `ssm:GetParameters` on each declared parameter, and `kms:Decrypt` on the key of
//! `SecureString`s encrypted with a customer-managed key (the AWS-managed `alias/aws/ssm` needs nothing more).
//! `skm policy --for ssm [--kms-key ARN]` renders exactly that ([`policy`]). The [`AdminBackend`] operations
//! (the `skm` tool) use `PutParameter` (`AddTagsToResource` with tags), `GetParametersByPath`,
//! `DeleteParameter` and `GetParameterHistory`.
//!
//! # Example
//! ```no_run
//! use skm_runtime::backend::ssm::SsmBackend;
//! use skm_runtime::Loader;
//! # async fn f() -> Result<(), skm_runtime::Error> {
//! let backend = SsmBackend::builder().region("eu-west-1").build().await?;
//! let loader = Loader::new().backend(backend);
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ssm::Client;

use super::fanout::FanOut;
use super::{
    AdminBackend, AdminError, Backend, DeleteMode, FetchRequest, FetchResult, ListEntry, PutRequest, VersionInfo,
};
#[cfg(doc)]
use super::{SecretValue, VersionPin};
use crate::Error;

mod admin;
mod builder;
mod doctor;
mod error;
mod fetch;
mod name;
pub mod policy;

pub(crate) use doctor::{doctor, registry_build};

pub use builder::SsmBackendBuilder;

/// The AWS SSM SDK this backend is built on, re-exported for [`SsmBackend::from_client`] and
/// [`SsmBackend::client`].
pub use aws_sdk_ssm;

/// Requests in flight per fetch unless configured otherwise.
const DEFAULT_MAX_IN_FLIGHT: usize = 10;

/// Attempts per request (the first included) unless the builder, `AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE` or the
/// profile says otherwise: the AWS Secrets Manager backend's default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// How long a throttled `GetParameters` is tried again past the SDK's retries by default (the AWS Secrets
/// Manager backend's patience).
pub const DEFAULT_THROTTLE_PATIENCE: Duration = Duration::from_secs(30);

/// AWS Systems Manager Parameter Store as a [`Backend`] and [`AdminBackend`].
///
/// Cloning is cheap and shares the client.
#[derive(Clone)]
pub struct SsmBackend {
    client: Client,
    max_in_flight: usize,
    throttle_patience: Duration,
    /// The backoff of throttled calls' patience, when set ([`SsmBackendBuilder::backoff`]).
    backoff: Option<(Duration, Duration)>,
    /// The KMS key `put` encrypts new `SecureString`s with (`None`: `alias/aws/ssm`).
    kms_key_id: Option<String>,
}

impl fmt::Debug for SsmBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsmBackend")
            .field("region", &self.region())
            .field("max_in_flight", &self.max_in_flight)
            .field("throttle_patience", &self.throttle_patience)
            .field("kms_key_id", &self.kms_key_id)
            .finish_non_exhaustive()
    }
}

impl SsmBackend {
    /// A builder starting from the SDK's default configuration chain.
    pub fn builder() -> SsmBackendBuilder {
        SsmBackendBuilder::default()
    }

    /// A backend configured from the environment and AWS profile files, as the AWS CLI is (see the
    /// [module documentation](self)).
    ///
    /// # Errors
    /// [`Error::Config`] when no region is configured or the endpoint override is refused.
    pub async fn from_env() -> Result<Self, Error> {
        Self::builder().build().await
    }

    /// A backend using a client configured elsewhere.
    ///
    /// # Example
    /// ```no_run
    /// use skm_runtime::backend::ssm::{aws_sdk_ssm, SsmBackend};
    /// # async fn f(config: &aws_sdk_ssm::config::Config) {
    /// let backend = SsmBackend::from_client(aws_sdk_ssm::Client::from_conf(config.clone()));
    /// # }
    /// ```
    pub fn from_client(client: Client) -> Self {
        SsmBackend {
            client,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            throttle_patience: DEFAULT_THROTTLE_PATIENCE,
            backoff: None,
            kms_key_id: None,
        }
    }

    /// Sets how many requests one fetch keeps in flight (at least 1; default 10).
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// How long a throttled call is tried again past the SDK's retries (default
    /// [`DEFAULT_THROTTLE_PATIENCE`]; zero leaves throttling to the SDK).
    pub fn with_throttle_patience(mut self, patience: Duration) -> Self {
        self.throttle_patience = patience;
        self
    }

    /// Encrypts the `SecureString`s [`put`](AdminBackend::put) creates with this KMS key (id, ARN or
    /// alias) instead of the account's `alias/aws/ssm`.
    pub fn with_kms_key_id(mut self, key: impl Into<String>) -> Self {
        self.kms_key_id = Some(key.into());
        self
    }

    /// The fan-out of one fetch: the bound, and the patience of throttled calls with its backoff (the SDK
    /// retries each call underneath: the fan-out tries an attempt once).
    fn fan_out(&self) -> FanOut {
        let fan = FanOut::new(self.max_in_flight).throttle_patience(self.throttle_patience);
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
}

#[async_trait]
impl Backend for SsmBackend {
    fn name(&self) -> String {
        match self.region() {
            Some(region) => format!("AWS SSM Parameter Store ({region})"),
            None => "AWS SSM Parameter Store".into(),
        }
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        fetch::fetch(self, requests).await
    }
}

#[async_trait]
impl AdminBackend for SsmBackend {
    /// `PutParameter` as a `SecureString` (with tags and description) that must not exist yet; if it
    /// exists, `PutParameter` with `Overwrite` adds a version (unless `create_only`), leaving its tags as
    /// they are. Returns the new version number. Binary values are refused: Parameter Store holds text.
    async fn put(&self, request: PutRequest) -> Result<String, AdminError> {
        admin::put(self, request).await
    }

    /// `GetParametersByPath` (recursive, without decryption: only names are kept) under the prefix's
    /// directory, every page, then an exact prefix match. Names are shown as the prefix spells them: without
    /// the leading `/` when the prefix has none.
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        admin::list(self, prefix).await
    }

    /// `DeleteParameter`. Parameter Store keeps nothing recoverable: [`DeleteMode::Default`] and
    /// [`DeleteMode::Force`] delete at once (`Force` also succeeds when the parameter does not exist);
    /// [`DeleteMode::RecoveryDays`] is refused as unsupported.
    async fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
        admin::delete(self, path, mode).await
    }

    /// `GetParameterHistory`, newest first: each version's number, with its labels (and `current` on the
    /// newest).
    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        admin::versions(self, path).await
    }
}
