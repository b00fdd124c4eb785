//! Tokens: logging in, and keeping the token alive in the background.
//!
//! One background task per backend renews the token at about two thirds of its TTL (never per request).
//! When a renewal fails, or the server grants less than asked (the max TTL is near), the task logs in again
//! with the configured method; a plain token cannot, so it only warns. The task holds a weak reference and is
//! aborted when the backend is dropped.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use vaultrs::client::VaultClient;

use std::path::Path;

use secrecy::SecretString;

use super::config::{JwtSource, VaultAuth};
use super::errors::VaultFailure;
use super::{login, redirect, Inner};
use crate::backend::{FailureKind, FetchError};

/// Renew when this share of the TTL has passed.
const RENEW_AT: f64 = 2.0 / 3.0;
/// How often a non-expiring token is looked at again (it may have been revoked or replaced).
const IDLE_CHECK: Duration = Duration::from_secs(3600);
/// The first retry delay after a failed login or renewal; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// The shortest sleep between two maintenance steps.
const MIN_STEP: Duration = Duration::from_millis(100);

/// The token in use and what the server said about its lifetime.
pub(crate) struct TokenState {
    /// A client carrying the token; `None` until a login succeeds.
    pub client: Option<Arc<VaultClient>>,
    /// The TTL at `measured`; `None` when unknown, zero when the token never expires.
    pub ttl: Option<Duration>,
    /// When `ttl` was measured.
    pub measured: Instant,
    /// Whether the server allows renewing it.
    pub renewable: bool,
    /// The TTL to ask for at each renewal (the token's creation TTL).
    pub increment: Option<Duration>,
    /// The last failure to obtain a token, reported by fetches while there is none.
    pub failure: Option<FetchError>,
    /// The token was rejected (revoked or expired) and cannot be replaced: stop renewing.
    pub dead: bool,
    /// Consecutive failures, for the retry backoff.
    pub failures: u32,
}

impl TokenState {
    pub(crate) fn empty() -> Self {
        TokenState {
            client: None,
            ttl: None,
            measured: Instant::now(),
            renewable: false,
            increment: None,
            failure: None,
            dead: false,
            failures: 0,
        }
    }

    /// Whether the token's TTL has run out (as far as we know).
    pub(crate) fn expired(&self) -> bool {
        match self.ttl {
            Some(ttl) if !ttl.is_zero() => self.measured.elapsed() >= ttl,
            _ => false,
        }
    }

    fn remaining(&self) -> Option<Duration> {
        self.ttl
            .filter(|t| !t.is_zero())
            .map(|ttl| ttl.saturating_sub(self.measured.elapsed()))
    }
}

/// A client for `token` sharing `base`'s connection pool and settings.
pub(crate) fn client_with_token(base: &VaultClient, token: &str) -> VaultClient {
    let mut settings = base.settings.clone();
    settings.token = token.to_string();
    let mut middle = base.middle.clone();
    middle.token = token.to_string();
    VaultClient {
        http: rustify::clients::reqwest::Client {
            http: base.http.http.clone(),
            base: base.http.base.clone(),
        },
        middle,
        settings,
    }
}

impl Inner {
    /// The client to use for a request: logs in first when there is no token yet or it has expired (the
    /// background task normally prevents that; a suspended machine or a down server can defeat it).
    pub(crate) async fn client(&self) -> Result<Arc<VaultClient>, FetchError> {
        if self.cert_renewed() {
            // The platform renewed the certificate: log in with it (a renewal must present the certificate
            // that logged in). If the new one is refused, the current token serves while it lasts.
            tracing::debug!(target: "skm", "the Vault client certificate changed on disk; logging in again");
            if let Ok(client) = self.login_if_needed().await {
                return Ok(client);
            }
        }
        {
            let state = self.token.read().unwrap_or_else(|p| p.into_inner());
            match &state.client {
                Some(c) if !(state.expired() && self.auth.can_login()) => return Ok(c.clone()),
                None if !self.auth.can_login() => {
                    return Err(state
                        .failure
                        .clone()
                        .unwrap_or_else(|| FetchError::new(FailureKind::Forbidden, "no Vault token")))
                }
                // Expired, or never logged in: log in now.
                _ => {}
            }
        }
        self.login_if_needed().await
    }

    /// Logs in unless another caller did while we waited for the lock.
    async fn login_if_needed(&self) -> Result<Arc<VaultClient>, FetchError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let _guard = self.login_lock.lock().await;
        if self.generation.load(Ordering::SeqCst) != generation {
            let state = self.token.read().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = &state.client {
                return Ok(c.clone());
            }
        }
        self.login().await
    }

    /// Logs in with the configured method and installs the new token.
    pub(crate) async fn login(&self) -> Result<Arc<VaultClient>, FetchError> {
        // The client that logs in, and from which the token's client is made: `base`, except for certificate
        // auth, whose client presents the certificate as it is on disk now (renewals must present it too).
        let mut cert_base: Option<VaultClient> = None;
        let result = match &self.auth {
            VaultAuth::Token => {
                return Err(FetchError::new(
                    FailureKind::Forbidden,
                    "token auth cannot log in again: give skm a new VAULT_TOKEN, or use SKM_VAULT_AUTH=approle, \
                     kubernetes, jwt or cert",
                ))
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let (role_id, secret_id) = match (role_id.read("AppRole role id"), secret_id.read("AppRole secret id"))
                {
                    (Ok(r), Ok(s)) => (r, s),
                    (Err(e), _) | (_, Err(e)) => return Err(self.login_failed(FetchError::new(FailureKind::Other, e))),
                };
                vaultrs::auth::approle::login(&self.base, mount, role_id.expose_secret(), secret_id.expose_secret())
                    .await
            }
            VaultAuth::Kubernetes { mount, role, jwt } => {
                let jwt = match jwt.read("Kubernetes service-account token") {
                    Ok(j) => j,
                    Err(e) => return Err(self.login_failed(FetchError::new(FailureKind::Other, e))),
                };
                vaultrs::auth::kubernetes::login(&self.base, mount, role, jwt.expose_secret()).await
            }
            VaultAuth::Jwt { mount, role, jwt } => {
                let token = match self.jwt(jwt).await {
                    Ok(t) => t,
                    Err(e) => return Err(self.login_failed(e)),
                };
                vaultrs::auth::oidc::login(&self.base, mount, token.expose_secret(), Some(role.clone())).await
            }
            VaultAuth::Cert { mount, role, cert, key } => {
                let client = match self.cert_client(cert, key) {
                    Ok(c) => c,
                    Err(e) => return Err(self.login_failed(FetchError::new(FailureKind::Other, e))),
                };
                let endpoint = login::CertLogin {
                    mount: mount.clone(),
                    role: role.clone(),
                };
                let result = vaultrs::api::auth(&client, endpoint).await;
                cert_base = Some(client);
                result
            }
        };
        match result {
            Ok(auth) => {
                let base = cert_base.as_ref().unwrap_or(&self.base);
                let client = Arc::new(client_with_token(base, &auth.client_token));
                let ttl = Duration::from_secs(auth.lease_duration);
                let mut state = self.token.write().unwrap_or_else(|p| p.into_inner());
                *state = TokenState {
                    client: Some(client.clone()),
                    ttl: Some(ttl),
                    measured: Instant::now(),
                    renewable: auth.renewable,
                    increment: (!ttl.is_zero()).then_some(ttl),
                    failure: None,
                    dead: false,
                    failures: 0,
                };
                drop(state);
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.logins.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(target: "skm", method = %self.auth.describe(), ttl_s = ttl.as_secs(),
                    renewable = auth.renewable, "logged in to Vault");
                self.wake.notify_one();
                Ok(client)
            }
            Err(e) => {
                let f = VaultFailure::from_client(&e);
                let kind = match f.kind() {
                    // Vault answers a bad role id or secret id with 400 "invalid role or secret ID".
                    FailureKind::Other if f.status == Some(400) => FailureKind::Forbidden,
                    k => k,
                };
                let detail = format!(
                    "{} login failed{}: {}{}",
                    self.auth.describe(),
                    self.namespace_note(),
                    f.describe(),
                    self.login_hint(&f)
                );
                Err(self.login_failed(FetchError::new(kind, detail)))
            }
        }
    }

    /// What the user can check after a refused JWT or certificate login (never the credential itself).
    fn login_hint(&self, f: &VaultFailure) -> String {
        if f.transport || !matches!(f.status, Some(400 | 401 | 403)) {
            return String::new();
        }
        match &self.auth {
            VaultAuth::Jwt { jwt, .. } => format!(
                " ({} was refused: check its expiry, that the mount trusts its signer, and the role's bound \
                 audiences and claims)",
                jwt.describe()
            ),
            VaultAuth::Cert { cert, .. } => format!(
                " (the client certificate {} was refused: it must be signed by a CA a certificate role of this \
                 mount trusts, and be valid now)",
                cert.display()
            ),
            _ => String::new(),
        }
    }

    /// The JWT for a login, obtained now: the file is re-read, GitHub Actions is asked for a new one.
    async fn jwt(&self, source: &JwtSource) -> Result<SecretString, FetchError> {
        match source {
            JwtSource::Credential(c) => c.read("JWT").map_err(|e| FetchError::new(FailureKind::Other, e)),
            JwtSource::GithubActions {
                url,
                request_token,
                audience,
            } => {
                let Some(http) = &self.actions_http else {
                    return Err(FetchError::new(
                        FailureKind::Other,
                        "no client for the GitHub Actions endpoint",
                    ));
                };
                login::github_actions_jwt(http, url, request_token, audience.as_deref()).await
            }
        }
    }

    /// A login client presenting the certificate and key as they are on disk now, and records their stamp.
    fn cert_client(&self, cert: &Path, key: &Path) -> Result<VaultClient, String> {
        // Stamped before reading, and whether or not the files can be used: a renewal between the two is seen
        // at the next check, and a broken file is not re-read at every fetch (the renewal task retries it).
        *self.cert_stamp.lock().unwrap_or_else(|p| p.into_inner()) = login::cert_stamp(cert, key);
        let identity = login::read_identity(cert, key)?;
        let address = self.transport.checked_address().map_err(|e| e.to_string())?;
        let http = redirect::client(&self.transport, &address, Some(identity))?;
        Ok(VaultClient {
            http: rustify::clients::reqwest::Client {
                http,
                base: self.base.http.base.clone(),
            },
            middle: self.base.middle.clone(),
            settings: self.base.settings.clone(),
        })
    }

    /// For certificate auth: whether the certificate or key file changed since the last login attempt (the
    /// platform renewed it), so that the next login presents the new one.
    fn cert_renewed(&self) -> bool {
        let VaultAuth::Cert { cert, key, .. } = &self.auth else {
            return false;
        };
        let now = login::cert_stamp(cert, key);
        let seen = self.cert_stamp.lock().unwrap_or_else(|p| p.into_inner());
        now.is_some() && *seen != now
    }

    fn login_failed(&self, e: FetchError) -> FetchError {
        tracing::warn!(target: "skm", method = %self.auth.describe(), error = %e, "Vault login failed");
        let mut state = self.token.write().unwrap_or_else(|p| p.into_inner());
        state.failure = Some(e.clone());
        state.failures = state.failures.saturating_add(1);
        e
    }

    /// Learns a given token's TTL (token auth), so that the renewer knows when to act. `false` when no
    /// answer arrived (Vault unreachable, or no token).
    pub(crate) async fn lookup(&self) -> bool {
        let Some(client) = self.token.read().unwrap_or_else(|p| p.into_inner()).client.clone() else {
            return false;
        };
        match vaultrs::token::lookup_self(&*client).await {
            Ok(info) => {
                let mut state = self.token.write().unwrap_or_else(|p| p.into_inner());
                state.ttl = Some(Duration::from_secs(info.ttl));
                state.measured = Instant::now();
                state.renewable = info.renewable.unwrap_or(false);
                let creation = if info.creation_ttl > 0 {
                    info.creation_ttl
                } else {
                    info.ttl
                };
                state.increment = (creation > 0).then(|| Duration::from_secs(creation));
                state.failures = 0;
                state.failure = None;
                tracing::debug!(target: "skm", ttl_s = info.ttl, renewable = state.renewable, "Vault token looked up");
                true
            }
            Err(e) => {
                let f = VaultFailure::from_client(&e);
                let mut state = self.token.write().unwrap_or_else(|p| p.into_inner());
                state.failures = state.failures.saturating_add(1);
                if f.kind() == FailureKind::Forbidden {
                    // A bad token fails every read with 403 anyway; the reads report it per secret.
                    tracing::warn!(target: "skm", error = %f.describe(), "the Vault token was rejected");
                    state.dead = true;
                } else {
                    tracing::debug!(target: "skm", error = %f.describe(), "Vault token lookup failed; will retry");
                }
                !f.transport
            }
        }
    }

    /// How long the renewer should sleep before acting, or `None` when it has nothing left to do.
    fn next_action_in(&self) -> Option<Duration> {
        let state = self.token.read().unwrap_or_else(|p| p.into_inner());
        let backoff = || {
            let exp = state.failures.saturating_sub(1).min(6);
            (FIRST_RETRY * 2u32.pow(exp)).min(MAX_RETRY)
        };
        if state.client.is_none() {
            // No token yet: retry the login (token auth always has a client).
            return Some(backoff());
        }
        if state.dead {
            return None;
        }
        let delay = match (state.ttl, state.remaining()) {
            // Unknown TTL (the lookup failed): look again soon.
            (None, _) => backoff(),
            // A token that never expires (root, or a TTL of 0).
            (Some(ttl), _) if ttl.is_zero() => IDLE_CHECK,
            // After a failure, at the backoff's pace: if the token runs out meanwhile, the next fetch logs in.
            (Some(_), Some(_)) if state.failures > 0 => backoff(),
            (Some(ttl), Some(remaining)) => {
                let elapsed = ttl.saturating_sub(remaining);
                ttl.mul_f64(RENEW_AT).saturating_sub(elapsed)
            }
            (Some(_), None) => IDLE_CHECK,
        };
        // Certificate auth also watches the certificate file.
        let delay = match self.auth {
            VaultAuth::Cert { .. } => delay.min(login::CERT_CHECK),
            _ => delay,
        };
        // Never spin, whatever the server says.
        Some(delay.max(MIN_STEP))
    }

    /// One step of token maintenance: renew, or log in again, or look the token up.
    async fn maintain(&self) {
        if self.cert_renewed() {
            tracing::debug!(target: "skm", "the Vault client certificate changed on disk; logging in again");
            let _ = self.login_if_needed().await;
            return;
        }
        let (client, ttl, renewable, increment, expired, failing) = {
            let state = self.token.read().unwrap_or_else(|p| p.into_inner());
            (
                state.client.clone(),
                state.ttl,
                state.renewable,
                state.increment,
                state.expired(),
                state.failures > 0,
            )
        };
        let Some(client) = client.filter(|_| !(failing && self.auth.can_login())) else {
            // No token yet, or the last renewal or login failed: only a login helps.
            let _ = self.login_if_needed().await;
            return;
        };
        let Some(ttl) = ttl else {
            let _ = self.lookup().await;
            return;
        };
        if ttl.is_zero() {
            return;
        }
        if !renewable || expired {
            if self.auth.can_login() {
                let _ = self.login_if_needed().await;
            } else {
                tracing::warn!(target: "skm",
                    "the Vault token has expired or cannot be renewed; token auth cannot log in again");
                self.token.write().unwrap_or_else(|p| p.into_inner()).dead = true;
            }
            return;
        }
        let asked = increment.unwrap_or(ttl).max(Duration::from_secs(1));
        let increment_text = format!("{}s", asked.as_secs());
        match vaultrs::token::renew_self(&*client, Some(&increment_text)).await {
            Ok(auth) => {
                self.renewals.fetch_add(1, Ordering::SeqCst);
                let granted = Duration::from_secs(auth.lease_duration);
                {
                    let mut state = self.token.write().unwrap_or_else(|p| p.into_inner());
                    state.ttl = Some(granted);
                    state.measured = Instant::now();
                    state.renewable = auth.renewable;
                    state.failures = 0;
                }
                tracing::debug!(target: "skm", granted_s = granted.as_secs(), "renewed the Vault token");
                if granted < asked {
                    // The max TTL caps the token: it will expire whatever we do.
                    if self.auth.can_login() {
                        tracing::debug!(target: "skm", "the Vault token reached its max TTL; logging in again");
                        let _ = self.login_if_needed().await;
                    } else {
                        tracing::warn!(target: "skm", expires_in_s = granted.as_secs(),
                            "the Vault token reaches its max TTL soon; token auth cannot log in again");
                        if granted.is_zero() {
                            self.token.write().unwrap_or_else(|p| p.into_inner()).dead = true;
                        }
                    }
                }
            }
            Err(e) => {
                let f = VaultFailure::from_client(&e);
                tracing::debug!(target: "skm", error = %f.describe(), "renewing the Vault token failed");
                if self.auth.can_login() {
                    let _ = self.login_if_needed().await;
                    return;
                }
                let mut state = self.token.write().unwrap_or_else(|p| p.into_inner());
                if f.kind() == FailureKind::Forbidden {
                    tracing::warn!(target: "skm", error = %f.describe(),
                        "the Vault token can no longer be renewed (revoked or expired); token auth cannot log in again");
                    state.dead = true;
                } else {
                    state.failures = state.failures.saturating_add(1);
                }
            }
        }
    }
}

/// The background task: sleeps until the next action, or until woken by a new token, then acts.
pub(crate) async fn renew_loop(inner: Weak<Inner>) {
    loop {
        // Never hold a strong reference while sleeping, so that dropping the backend frees it.
        let (delay, wake) = {
            let Some(inner) = inner.upgrade() else { return };
            (inner.next_action_in(), inner.wake.clone())
        };
        match delay {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = wake.notified() => continue,
                }
            }
            None => wake.notified().await,
        }
        let Some(inner) = inner.upgrade() else { return };
        inner.maintain().await;
    }
}
