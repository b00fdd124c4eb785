//! [`GcpBackendBuilder`]: the project, endpoint and credentials, from explicit settings or the environment.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use google_cloud_auth::credentials::{anonymous, Builder as AdcBuilder, Credentials};
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicy, RetryPolicyExt};
use google_cloud_gax::retry_result::RetryResult;
use google_cloud_gax::retry_state::RetryState;
use google_cloud_gax::throttle_result::ThrottleResult;
use google_cloud_secretmanager_v1::client::SecretManagerService;

use super::{GcpBackend, Inner, Replication, DEFAULT_MAX_IN_FLIGHT, DEFAULT_THROTTLE_PATIENCE};
use crate::backend::endpoint;
use crate::backend::fanout::ReadOptions;
use crate::Error;

/// Google's endpoint, used unless `SKM_GCP_ENDPOINT` or [`GcpBackendBuilder::endpoint`] says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://secretmanager.googleapis.com";

/// Attempts per request, the first included, unless [`GcpBackendBuilder::max_attempts`] says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The client's backoff between attempts unless [`GcpBackendBuilder::backoff`] says otherwise.
const DEFAULT_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How long the metadata server may take to say which project this is.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the project came from, for `skm doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectSource {
    /// [`GcpBackendBuilder::project`].
    Explicit,
    /// An environment variable (`GOOGLE_CLOUD_PROJECT` or `GCP_PROJECT_ID`).
    Env(&'static str),
    /// The credentials file's `project_id` or `quota_project_id`.
    CredentialsFile(PathBuf),
    /// The active gcloud configuration's `core/project`.
    Gcloud(PathBuf),
    /// The metadata server (`computeMetadata/v1/project/project-id`).
    MetadataServer,
}

impl fmt::Display for ProjectSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectSource::Explicit => f.write_str("set by the builder"),
            ProjectSource::Env(var) => write!(f, "{var}"),
            ProjectSource::CredentialsFile(p) => write!(f, "credentials file {}", p.display()),
            ProjectSource::Gcloud(p) => write!(f, "gcloud configuration {}", p.display()),
            ProjectSource::MetadataServer => f.write_str("metadata server"),
        }
    }
}

/// Configures a [`GcpBackend`]. Anything not set comes from the environment, as
/// [`GcpBackend::from_env`] documents.
///
/// # Example
/// ```no_run
/// use skm_runtime::backend::gcp::GcpBackend;
/// # async fn f() -> Result<(), skm_runtime::Error> {
/// let backend = GcpBackend::builder()
///     .project("my-project")
///     .endpoint("http://127.0.0.1:8085") // an emulator: plain http on a loopback IP, no credentials sent
///     .max_in_flight(16)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct GcpBackendBuilder {
    project: Option<String>,
    endpoint: Option<String>,
    credentials: Option<Credentials>,
    /// In flight, attempts, backoff, patience.
    read: ReadOptions,
    attempt_timeout: Option<Duration>,
    replication: Replication,
    proxy_plain: bool,
}

impl fmt::Debug for GcpBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials may hold keys: say only whether they are set.
        f.debug_struct("GcpBackendBuilder")
            .field("project", &self.project)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials.as_ref().map(|_| "set"))
            .field("read", &self.read)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("replication", &self.replication)
            .field("proxy_plain", &self.proxy_plain)
            .finish()
    }
}

impl GcpBackendBuilder {
    /// The project whose secrets paths name (default: `GOOGLE_CLOUD_PROJECT`, `GCP_PROJECT_ID`, then the
    /// credentials).
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Sends requests here instead of [`DEFAULT_ENDPOINT`] (default: `SKM_GCP_ENDPOINT`): a regional
    /// endpoint, a private one, or an emulator. `https://` anywhere; plain `http://` (in any letter case)
    /// only on a loopback host (`127.0.0.1`, `[::1]`, or `localhost` when it resolves to loopback only), and
    /// then no credentials are looked up or sent. A user name or password in the URL is refused.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Uses these credentials instead of Application Default Credentials.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// How many requests one fetch keeps in flight (default 100, at least 1).
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

    /// The client's backoff between attempts: about `first` (full jitter), doubling up to `max` (default 100 ms
    /// to 5 s); [`throttle_patience`](Self::throttle_patience) waits with the same range.
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

    /// How long an access still throttled after the client's retries is tried again, with jittered
    /// exponential backoff (default [`DEFAULT_THROTTLE_PATIENCE`](super::DEFAULT_THROTTLE_PATIENCE), 30 s);
    /// zero leaves throttling to the client's retries. [`Loader::deadline`](crate::Loader::deadline) still
    /// bounds a load.
    ///
    /// ```
    /// # async fn f() -> Result<(), skm_runtime::Error> {
    /// use std::time::Duration;
    /// use skm_runtime::backend::gcp::GcpBackend;
    /// let backend = GcpBackend::builder()
    ///     .project("my-project")
    ///     .throttle_patience(Duration::from_secs(10))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn throttle_patience(mut self, patience: Duration) -> Self {
        self.read = self.read.throttle_patience(patience);
        self
    }

    /// Attempts per request, the first included (default [`DEFAULT_MAX_ATTEMPTS`]; `1` disables retries).
    /// Retried: `UNAVAILABLE`, HTTP 503, `RESOURCE_EXHAUSTED` (429) and I/O errors, with exponential backoff
    /// and full jitter.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.read = self.read.max_attempts(attempts);
        self
    }

    /// A timeout for each attempt (default 5 s; connecting included). All attempts of one call together stop
    /// after 12 s, below the loader's deadline ([`Loader::deadline`](crate::Loader::deadline)).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Where secrets this backend creates are replicated (default [`Replication::Automatic`]).
    pub fn replication(mut self, replication: Replication) -> Self {
        self.replication = replication;
        self
    }

    /// Lets plain-`http://` and loopback requests go through the environment's proxy (env
    /// `SKM_GCP_PROXY_PLAIN=1`). Without it, a plain-http or loopback endpoint that `HTTP_PROXY`,
    /// `HTTPS_PROXY` or `ALL_PROXY` would carry (it is not in `NO_PROXY`) is refused at build: Google's client
    /// reads those variables itself and offers no way to bypass them for one endpoint.
    pub fn proxy_plain(mut self, allow: bool) -> Self {
        self.proxy_plain = allow;
        self
    }

    /// Resolves the configuration and builds the backend.
    ///
    /// Contacts nothing when the project is known: credentials are resolved on the first request. When no
    /// project is set and the credentials do not name one, the metadata server is asked (2 s timeout).
    ///
    /// # Errors
    /// [`Error::Config`] when the endpoint is not allowed (not a URL, userinfo, plain http off loopback, or a
    /// plain-http or loopback endpoint a proxy variable would carry), no project can be found, or the
    /// credentials cannot be loaded.
    pub async fn build(self) -> Result<GcpBackend, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let proxy_plain = self.proxy_plain
            || var("SKM_GCP_PROXY_PLAIN").is_some_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"));
        let endpoint = match self.endpoint.or_else(|| var("SKM_GCP_ENDPOINT")) {
            Some(e) => Some(check_endpoint(&e, proxy_plain, &endpoint::EnvProxies::from_env())?),
            None => None,
        };
        let emulator = endpoint.as_ref().is_some_and(|e| e.starts_with("http://"));
        let (credentials, credentials_source) = match (self.credentials, emulator) {
            (Some(c), _) => (c, "set by the builder".to_string()),
            // An emulator on loopback: nothing is looked up, no token is sent anywhere.
            (None, true) => (
                anonymous::Builder::new().build(),
                "anonymous (loopback emulator)".to_string(),
            ),
            (None, false) => {
                let adc = AdcBuilder::default().build().map_err(|e| {
                    Error::config(format!(
                        "Google Application Default Credentials cannot be loaded: {e}; run `gcloud auth \
                         application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or run on GCP"
                    ))
                })?;
                (adc, adc_source(&var))
            }
        };
        let (project, project_source) = match self.project {
            Some(p) => (p, ProjectSource::Explicit),
            // With an emulator nothing about credentials is read, so the project must be given.
            None => find_project(&var, !emulator).await?,
        };
        if project.is_empty() || project.contains('/') {
            return Err(Error::config(format!("`{project}` is not a GCP project id or number")));
        }

        let retry = RefusedIsFinal(
            Aip194Strict
                .continue_on_too_many_requests()
                .with_attempt_limit(self.read.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS))
                .with_time_limit(endpoint::OPERATION_TIMEOUT),
        );
        let (first, max) = self.read.backoff.unwrap_or(DEFAULT_BACKOFF);
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_delay(first)
            .with_maximum_delay(max)
            .build()
            .map_err(|e| Error::config(format!("backoff: {e}")))?;
        let mut client = SecretManagerService::builder()
            .with_credentials(credentials)
            .with_retry_policy(retry)
            .with_backoff_policy(backoff);
        if let Some(e) = &endpoint {
            client = client.with_endpoint(e.clone());
        }
        // Google's client has no connect timeout: the attempt timeout bounds connecting too.
        client = client.with_attempt_timeout(self.attempt_timeout.unwrap_or(endpoint::ATTEMPT_TIMEOUT));
        let client = client
            .build()
            .await
            .map_err(|e| Error::config(format!("cannot build the Secret Manager client: {e}")))?;
        Ok(GcpBackend {
            inner: Arc::new(Inner {
                client,
                project,
                project_source,
                endpoint: endpoint.unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
                credentials_source,
                max_in_flight: self.read.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
                throttle_patience: self.read.throttle_patience.unwrap_or(DEFAULT_THROTTLE_PATIENCE),
                backoff: self.read.backoff,
                replication: self.replication,
            }),
        })
    }
}

/// Google's retry policy, except that a refused connection is final: nothing listens there, and retrying
/// it with backoff only delays the answer (4.5 s with the default attempts).
#[derive(Debug)]
struct RefusedIsFinal<P>(P);

impl<P: RetryPolicy> RetryPolicy for RefusedIsFinal<P> {
    fn on_error(&self, state: &RetryState, error: google_cloud_gax::error::Error) -> RetryResult {
        if endpoint::refused(&error) {
            return RetryResult::Permanent(error);
        }
        self.0.on_error(state, error)
    }

    fn on_throttle(&self, state: &RetryState, error: google_cloud_gax::error::Error) -> ThrottleResult {
        self.0.on_throttle(state, error)
    }

    fn remaining_time(&self, state: &RetryState) -> Option<Duration> {
        self.0.remaining_time(state)
    }
}

/// The endpoint, normalised: `https://` anywhere; `http://` only on a loopback host, so that a token never
/// crosses a network in clear text (`backend/endpoint.rs`). A plain-http or loopback endpoint that a proxy
/// variable would carry is refused unless `proxy_plain`: Google's client reads the variables itself.
fn check_endpoint(endpoint: &str, proxy_plain: bool, proxies: &endpoint::EnvProxies) -> Result<String, Error> {
    let url = endpoint::check("SKM_GCP_ENDPOINT", endpoint, false, "")?;
    if !proxy_plain && endpoint::direct_only(&url) {
        if let Some(proxy) = proxies.for_url(&url) {
            let host = url.host_str().unwrap_or_default();
            return Err(Error::config(format!(
                "SKM_GCP_ENDPOINT `{}` is plain http or loopback, and the proxy variables (HTTP_PROXY, HTTPS_PROXY \
                 or ALL_PROXY) would send its requests through the proxy `{}` in clear text; Google's client \
                 cannot bypass them for one endpoint. Add `{host}` to NO_PROXY, unset the proxy variables for \
                 this process, or opt in with SKM_GCP_PROXY_PLAIN=1 (GcpBackendBuilder::proxy_plain)",
                url.as_str().trim_end_matches('/'),
                proxy_display(proxy)
            )));
        }
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A proxy URL without its user name or password, for messages.
fn proxy_display(proxy: &str) -> String {
    match url::Url::parse(proxy) {
        Ok(u) => {
            format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default())
                + &u.port().map(|p| format!(":{p}")).unwrap_or_default()
        }
        Err(_) => "(unparsable)".into(),
    }
}

/// Where Application Default Credentials come from, as Google's libraries search (AIP-4110).
fn adc_source(var: &(dyn Fn(&str) -> Option<String> + Sync)) -> String {
    let describe = |path: PathBuf, how: &str| {
        let kind = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_else(|| "unreadable".into());
        format!("{how} {} ({kind})", path.display())
    };
    if let Some(p) = var("GOOGLE_APPLICATION_CREDENTIALS") {
        return describe(PathBuf::from(p), "GOOGLE_APPLICATION_CREDENTIALS");
    }
    match well_known_adc(var) {
        Some(p) if p.is_file() => describe(p, "gcloud application-default file"),
        _ => "metadata server (GCE, GKE, Cloud Run)".into(),
    }
}

fn well_known_adc(var: &(dyn Fn(&str) -> Option<String> + Sync)) -> Option<PathBuf> {
    gcloud_dir(var).map(|d| d.join("application_default_credentials.json"))
}

fn gcloud_dir(var: &(dyn Fn(&str) -> Option<String> + Sync)) -> Option<PathBuf> {
    if let Some(dir) = var("CLOUDSDK_CONFIG") {
        return Some(PathBuf::from(dir));
    }
    if cfg!(windows) {
        var("APPDATA").map(|d| PathBuf::from(d).join("gcloud"))
    } else {
        var("HOME").map(|d| PathBuf::from(d).join(".config/gcloud"))
    }
}

/// The project: `GOOGLE_CLOUD_PROJECT`, `GCP_PROJECT_ID`, then, unless talking to an emulator (which gets no
/// credentials, so none are looked up), the credentials file, gcloud's active configuration, and (only when
/// credentials would come from it) the metadata server.
async fn find_project(
    var: &(dyn Fn(&str) -> Option<String> + Sync),
    from_credentials: bool,
) -> Result<(String, ProjectSource), Error> {
    for name in ["GOOGLE_CLOUD_PROJECT", "GCP_PROJECT_ID"] {
        if let Some(p) = var(name) {
            return Ok((p.trim().to_string(), ProjectSource::Env(name)));
        }
    }
    if !from_credentials {
        return Err(Error::config(
            "an emulator endpoint (SKM_GCP_ENDPOINT=http://...) needs the project in GOOGLE_CLOUD_PROJECT or \
             GCP_PROJECT_ID, or `GcpBackend::builder().project(..)`"
                .into(),
        ));
    }
    let file = var("GOOGLE_APPLICATION_CREDENTIALS")
        .map(PathBuf::from)
        .or_else(|| well_known_adc(var).filter(|p| p.is_file()));
    if let Some(path) = &file {
        let json = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let named = json.as_ref().and_then(|j| {
            ["project_id", "quota_project_id"]
                .iter()
                .find_map(|k| j.get(*k).and_then(|v| v.as_str()).filter(|s| !s.is_empty()))
                .map(str::to_string)
        });
        if let Some(p) = named {
            return Ok((p, ProjectSource::CredentialsFile(path.clone())));
        }
    }
    if let Some((p, config)) = gcloud_project(var) {
        return Ok((p, ProjectSource::Gcloud(config)));
    }
    if file.is_none() {
        if let Some(p) = metadata_project(var).await {
            return Ok((p, ProjectSource::MetadataServer));
        }
    }
    Err(Error::config(
        "Google Cloud Secret Manager needs a project: set GOOGLE_CLOUD_PROJECT (or GCP_PROJECT_ID), run \
         `gcloud config set project PROJECT`, or call `GcpBackend::builder().project(..)`"
            .into(),
    ))
}

/// `core/project` of gcloud's active configuration.
fn gcloud_project(var: &(dyn Fn(&str) -> Option<String> + Sync)) -> Option<(String, PathBuf)> {
    let dir = gcloud_dir(var)?;
    let active = var("CLOUDSDK_ACTIVE_CONFIG_NAME")
        .or_else(|| std::fs::read_to_string(dir.join("active_config")).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let path = dir.join("configurations").join(format!("config_{active}"));
    let text = std::fs::read_to_string(&path).ok()?;
    let mut in_core = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_core = line == "[core]";
        } else if in_core {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "project" && !v.trim().is_empty() {
                    return Some((v.trim().to_string(), path));
                }
            }
        }
    }
    None
}

/// The metadata server's project id, if one answers within [`METADATA_TIMEOUT`].
async fn metadata_project(var: &(dyn Fn(&str) -> Option<String> + Sync)) -> Option<String> {
    let host = var("GCE_METADATA_HOST").unwrap_or_else(|| "metadata.google.internal".into());
    let url = format!("http://{host}/computeMetadata/v1/project/project-id");
    // Plain http to the metadata server: never through a proxy, which would see the answer in clear text.
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(METADATA_TIMEOUT)
        .timeout(METADATA_TIMEOUT)
        .build()
        .ok()?;
    let answer = client.get(url).header("Metadata-Flavor", "Google").send().await.ok()?;
    if !answer.status().is_success() {
        return None;
    }
    let text = answer.text().await.ok()?;
    Some(text.trim().to_string()).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        let none = endpoint::EnvProxies::default();
        let check = |e: &str| check_endpoint(e, false, &none);
        assert!(check("https://secretmanager.googleapis.com/").is_ok());
        assert_eq!(check("http://127.0.0.1:8085/").unwrap(), "http://127.0.0.1:8085");
        assert_eq!(check("HTTP://127.0.0.1:8085").unwrap(), "http://127.0.0.1:8085");
        assert!(check("http://[::1]:8085").is_ok());
        assert!(check("http://127.3.2.1").is_ok());
        assert!(check("http://10.0.0.1:8085")
            .unwrap_err()
            .to_string()
            .contains("not a loopback"));
        assert!(check("ftp://127.0.0.1").is_err());
        // Issue 25, finding 2: this passed the loopback check and sent the requests to evil.example.
        let e = check("http://127.0.0.1:x@evil.example").unwrap_err().to_string();
        assert!(e.contains("evil.example"), "{e}");
        assert!(check("HTTP://evil.example").is_err());
    }

    #[test]
    fn a_proxy_that_would_carry_plain_or_loopback_requests_is_refused() {
        let proxies = endpoint::EnvProxies::from_vars(|n| match n {
            "HTTP_PROXY" | "HTTPS_PROXY" => Some("http://user:pw@proxy.example:3128".into()),
            _ => None,
        });
        let e = check_endpoint("http://127.0.0.1:8085", false, &proxies)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("NO_PROXY") && e.contains("proxy.example:3128") && !e.contains("pw"),
            "{e}"
        );
        assert!(check_endpoint("https://127.0.0.1:8085", false, &proxies).is_err());
        assert!(check_endpoint("http://127.0.0.1:8085", true, &proxies).is_ok());
        assert!(check_endpoint("https://secretmanager.googleapis.com", false, &proxies).is_ok());
        let bypassed = endpoint::EnvProxies {
            no_proxy: Some("localhost,127.0.0.1".into()),
            ..proxies
        };
        assert!(check_endpoint("http://127.0.0.1:8085", false, &bypassed).is_ok());
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skm-gcp-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn gcloud_config_project() {
        let dir = scratch("gcloud");
        std::fs::create_dir_all(dir.join("configurations")).unwrap();
        std::fs::write(dir.join("active_config"), "work\n").unwrap();
        std::fs::write(
            dir.join("configurations/config_work"),
            "[compute]\nproject = nope\n[core]\naccount = a@b.c\nproject = from-gcloud\n",
        )
        .unwrap();
        let d = dir.to_string_lossy().to_string();
        let var = move |n: &str| (n == "CLOUDSDK_CONFIG").then(|| d.clone());
        assert_eq!(gcloud_project(&var).unwrap().0, "from-gcloud");
    }

    #[tokio::test]
    async fn project_order_env_then_credentials_file() {
        let file = scratch("adc").join("sa.json");
        std::fs::write(&file, r#"{"type":"service_account","project_id":"from-file"}"#).unwrap();
        let f = file.to_string_lossy().to_string();
        let both = |n: &str| match n {
            "GCP_PROJECT_ID" => Some("from-env".to_string()),
            "GOOGLE_APPLICATION_CREDENTIALS" => Some(f.clone()),
            _ => None,
        };
        assert_eq!(
            find_project(&both, true).await.unwrap().1,
            ProjectSource::Env("GCP_PROJECT_ID")
        );
        let file_only = |n: &str| (n == "GOOGLE_APPLICATION_CREDENTIALS").then(|| f.clone());
        let (p, source) = find_project(&file_only, true).await.unwrap();
        assert_eq!(p, "from-file");
        assert_eq!(source, ProjectSource::CredentialsFile(file.clone()));
        // An emulator reads no credentials file, not even for the project.
        let e = find_project(&file_only, false).await.unwrap_err().to_string();
        assert!(e.contains("emulator"), "{e}");
        // Nothing anywhere; the metadata server is a closed loopback port, so nothing is really contacted.
        let none = |n: &str| (n == "GCE_METADATA_HOST").then(|| "127.0.0.1:9".to_string());
        let e = find_project(&none, true).await.unwrap_err().to_string();
        assert!(e.contains("GOOGLE_CLOUD_PROJECT"), "{e}");
    }

    #[test]
    fn read_knobs_share_every_builders_names_and_the_old_ones_still_work() {
        use crate::backend::fanout::ReadOptions;
        use std::time::Duration;
        let b = GcpBackendBuilder::default()
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
        let old = GcpBackendBuilder::default().max_concurrency(3);
        assert_eq!(old.read.max_in_flight, Some(3));
        let all = GcpBackendBuilder::default().read_options(ReadOptions::new().max_attempts(9));
        assert_eq!(all.read.max_attempts, Some(9));
    }
}
