//! The AWS Secrets Manager rotation protocol (feature `aws`).
//!
//! The rotation service calls a rotation Lambda four times per rotation, with the secret, a client request
//! token (the id of the new version) and a step:
//! 1. `createSecret`: put a new value under the token with the `AWSPENDING` label (if not already there);
//! 2. `setSecret`: make the pending password valid in the target ([`Rotator::set`]);
//! 3. `testSecret`: prove it works ([`Rotator::test`]);
//! 4. `finishSecret`: move `AWSCURRENT` to the token's version (AWS moves `AWSPREVIOUS` to the old one).
//!
//! The service retries a failed step, so each one is idempotent: a repeated step finds its work done and
//! does nothing. [`AwsRotation::handle`] is the whole Lambda (see `examples/rotation_lambda.rs`);
//! [`AwsRotation::rotate`] plays the service's part too, for a rotation started by a tool.
//!
//! A secret is either the password itself or a JSON object whose `password` entry (see
//! [`AwsRotation::key`]) is replaced, the other entries kept; new passwords come from
//! `GetRandomPassword`, as in AWS's own rotation templates.

use std::fmt;

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::Client;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{password_in, with_password, RotationError, RotationErrorKind, Rotator};
use crate::backend::aws::AwsBackend;

/// The label of the version being rotated in.
pub const AWSPENDING: &str = "AWSPENDING";
/// The label of the version in use.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The label AWS moves to the version `AWSCURRENT` leaves.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// A rotation step, as the rotation service names it in the event's `Step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// `createSecret`.
    #[serde(rename = "createSecret")]
    CreateSecret,
    /// `setSecret`.
    #[serde(rename = "setSecret")]
    SetSecret,
    /// `testSecret`.
    #[serde(rename = "testSecret")]
    TestSecret,
    /// `finishSecret`.
    #[serde(rename = "finishSecret")]
    FinishSecret,
}

impl Step {
    /// The four steps in order.
    pub const ALL: [Step; 4] = [
        Step::CreateSecret,
        Step::SetSecret,
        Step::TestSecret,
        Step::FinishSecret,
    ];

    /// The name the service uses: `createSecret`...
    pub fn name(self) -> &'static str {
        match self {
            Step::CreateSecret => "createSecret",
            Step::SetSecret => "setSecret",
            Step::TestSecret => "testSecret",
            Step::FinishSecret => "finishSecret",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The event the rotation service invokes a rotation Lambda with.
///
/// # Example
/// ```
/// use skm_runtime::rotation::aws::{RotationEvent, Step};
/// let event: RotationEvent = serde_json::from_value(serde_json::json!({
///     "SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db/app-a1b2c3",
///     "ClientRequestToken": "8f2f9a3e-6d1c-4a4e-9b7d-2c1d2f3e4a5b",
///     "Step": "setSecret",
/// })).unwrap();
/// assert_eq!(event.step, Step::SetSecret);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationEvent {
    /// The secret's ARN (or name).
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    /// The id of the version being rotated in.
    #[serde(rename = "ClientRequestToken")]
    pub client_request_token: String,
    /// The step to run.
    #[serde(rename = "Step")]
    pub step: Step,
}

/// What [`AwsRotation::rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The new `AWSCURRENT` version (the client request token).
    pub version_id: String,
    /// The version now labelled `AWSPREVIOUS`.
    pub previous_version_id: Option<String>,
}

/// The four rotation steps for one [`Rotator`], against AWS Secrets Manager.
///
/// # Example
/// ```no_run
/// use skm_runtime::backend::aws::AwsBackend;
/// use skm_runtime::rotation::aws::{AwsRotation, RotationEvent};
/// # async fn demo(rotator: impl skm_runtime::rotation::Rotator, event: serde_json::Value)
/// #     -> Result<(), Box<dyn std::error::Error>> {
/// let aws = AwsBackend::from_env().await?;
/// let rotation = AwsRotation::from_backend(&aws, rotator);
/// rotation.handle(&serde_json::from_value::<RotationEvent>(event)?).await?;
/// # Ok(()) }
/// ```
pub struct AwsRotation<R> {
    client: Client,
    rotator: R,
    key: Option<String>,
    password_length: i64,
    exclude_characters: String,
}

impl<R> fmt::Debug for AwsRotation<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsRotation")
            .field("key", &self.key)
            .field("password_length", &self.password_length)
            .finish_non_exhaustive()
    }
}

/// A secret's versions and their labels.
struct Versions(Vec<(String, Vec<String>)>);

impl Versions {
    fn stages_of(&self, version: &str) -> Option<&[String]> {
        self.0.iter().find(|(v, _)| v == version).map(|(_, s)| s.as_slice())
    }

    fn labelled(&self, stage: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(v, _)| v.as_str())
    }
}

fn store_error<E>(what: &str, secret: &str, e: &SdkError<E>) -> RotationError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // AWS's codes and messages never hold a secret value.
    let detail = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(e).to_string(),
    };
    RotationError::new(RotationErrorKind::Store, format!("{what} of {secret} failed: {detail}"))
}

fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.code() == Some("ResourceNotFoundException")
}

/// A client request token: 32 random hex digits in the UUID layout AWS uses.
fn new_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    // Each `RandomState` is keyed from the OS's randomness (then incremented): unique enough for an id.
    let mut bits = [0u64; 2];
    for (i, b) in bits.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_usize(i);
        *b = h.finish();
    }
    let hex = format!("{:016x}{:016x}", bits[0], bits[1]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl<R: Rotator> AwsRotation<R> {
    /// Rotation with `client` for the target `rotator`; the password is the secret's `password` entry.
    pub fn new(client: Client, rotator: R) -> Self {
        AwsRotation {
            client,
            rotator,
            key: Some("password".into()),
            password_length: 32,
            // The characters AWS's database rotation templates exclude: they break connection strings.
            exclude_characters: "/@\"'\\".into(),
        }
    }

    /// Rotation through `backend`'s client (its region, endpoint, credentials and retries).
    pub fn from_backend(backend: &AwsBackend, rotator: R) -> Self {
        Self::new(backend.client().clone(), rotator)
    }

    /// The JSON entry holding the password (default `password`); `None` when the whole secret is the
    /// password.
    pub fn key(mut self, key: Option<&str>) -> Self {
        self.key = key.map(str::to_string);
        self
    }

    /// The length of generated passwords (default 32).
    pub fn password_length(mut self, length: u32) -> Self {
        self.password_length = i64::from(length);
        self
    }

    /// Characters generated passwords never contain (default `/@"'\`).
    pub fn exclude_characters(mut self, characters: impl Into<String>) -> Self {
        self.exclude_characters = characters.into();
        self
    }

    /// The rotator.
    pub fn rotator(&self) -> &R {
        &self.rotator
    }

    /// Runs one step of a rotation, as a rotation Lambda does: checks that the token's version is being
    /// rotated in, and does nothing when it is already `AWSCURRENT` or when the step's work is done.
    ///
    /// # Errors
    /// [`RotationErrorKind::NotPending`] when the token's version is not `AWSPENDING`; `Store` when a
    /// Secrets Manager call fails; `Invalid` when the secret has no password at the key; `Set` / `Test`
    /// from the rotator. The message names the step and the secret.
    pub async fn handle(&self, event: &RotationEvent) -> Result<(), RotationError> {
        let RotationEvent {
            secret_id,
            client_request_token: token,
            step,
        } = event;
        let context = format!("{step} of {secret_id}");
        let versions = self.versions(secret_id).await.map_err(|e| e.context(&context))?;
        match versions.stages_of(token) {
            // Before createSecret the service may or may not have registered the version yet.
            None if *step == Step::CreateSecret => {}
            None => {
                return Err(RotationError::new(
                    RotationErrorKind::NotPending,
                    format!("{context}: version {token} does not exist: no rotation with this token is in progress"),
                ))
            }
            Some(stages) if stages.iter().any(|s| s == AWSCURRENT) => {
                tracing::info!(target: "skm", secret = %secret_id, step = %step, "the version is already AWSCURRENT");
                return Ok(());
            }
            Some(stages) if !stages.iter().any(|s| s == AWSPENDING) => {
                return Err(RotationError::new(
                    RotationErrorKind::NotPending,
                    format!("{context}: version {token} is not AWSPENDING: no rotation with this token is in progress"),
                ))
            }
            Some(_) => {}
        }
        let result = match step {
            Step::CreateSecret => self.create_secret(secret_id, token).await,
            Step::SetSecret => self.set_secret(secret_id, token).await,
            Step::TestSecret => self.test_secret(secret_id, token).await,
            Step::FinishSecret => self.finish_secret(secret_id, token, &versions).await,
        };
        result.map_err(|e| e.context(&context))
    }

    async fn versions(&self, secret: &str) -> Result<Versions, RotationError> {
        let described = self
            .client
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .map_err(|e| store_error("DescribeSecret", secret, &e))?;
        let map = described.version_ids_to_stages().cloned().unwrap_or_default();
        Ok(Versions(map.into_iter().collect()))
    }

    /// The secret's text at `version` / `stage`; `None` when there is none.
    async fn value(
        &self,
        secret: &str,
        version: Option<&str>,
        stage: &str,
    ) -> Result<Option<SecretString>, RotationError> {
        let answer = self
            .client
            .get_secret_value()
            .secret_id(secret)
            .set_version_id(version.map(str::to_string))
            .version_stage(stage)
            .send()
            .await;
        match answer {
            Ok(out) => match out.secret_string() {
                Some(text) => Ok(Some(SecretString::from(text.to_string()))),
                None => Err(RotationError::new(
                    RotationErrorKind::Invalid,
                    format!("the {stage} version of {secret} is binary; rotation needs a text secret"),
                )),
            },
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(store_error("GetSecretValue", secret, &e)),
        }
    }

    async fn current(&self, secret: &str) -> Result<SecretString, RotationError> {
        self.value(secret, None, AWSCURRENT).await?.ok_or_else(|| {
            RotationError::new(
                RotationErrorKind::Invalid,
                format!("{secret} has no AWSCURRENT value to rotate from"),
            )
        })
    }

    async fn pending(&self, secret: &str, token: &str) -> Result<SecretString, RotationError> {
        self.value(secret, Some(token), AWSPENDING).await?.ok_or_else(|| {
            RotationError::new(
                RotationErrorKind::NotPending,
                format!("version {token} has no AWSPENDING value: run createSecret first"),
            )
        })
    }

    /// Step 1: puts a new value under `token` labelled `AWSPENDING`, unless that version already has one.
    ///
    /// # Errors
    /// As [`AwsRotation::handle`].
    pub async fn create_secret(&self, secret: &str, token: &str) -> Result<(), RotationError> {
        let current = self.current(secret).await?;
        if self.value(secret, Some(token), AWSPENDING).await?.is_some() {
            tracing::info!(target: "skm", secret = %secret, "createSecret: the pending version exists already");
            return Ok(());
        }
        let generated = self
            .client
            .get_random_password()
            .password_length(self.password_length)
            .exclude_characters(&self.exclude_characters)
            .send()
            .await
            .map_err(|e| store_error("GetRandomPassword", secret, &e))?;
        let password = generated
            .random_password()
            .map(|p| SecretString::from(p.to_string()))
            .ok_or_else(|| RotationError::new(RotationErrorKind::Store, "GetRandomPassword returned no password"))?;
        let next = with_password(&current, self.key.as_deref(), &password)?;
        use secrecy::ExposeSecret;
        self.client
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(token)
            .secret_string(next.expose_secret())
            .version_stages(AWSPENDING)
            .send()
            .await
            .map_err(|e| store_error("PutSecretValue", secret, &e))?;
        tracing::info!(target: "skm", secret = %secret, "createSecret: stored a new AWSPENDING version");
        Ok(())
    }

    /// Step 2: sets the pending password in the target ([`Rotator::set`], which is idempotent).
    ///
    /// # Errors
    /// As [`AwsRotation::handle`].
    pub async fn set_secret(&self, secret: &str, token: &str) -> Result<(), RotationError> {
        let key = self.key.as_deref();
        let pending = password_in(&self.pending(secret, token).await?, key)?;
        let current = match self.value(secret, None, AWSCURRENT).await? {
            Some(c) => Some(password_in(&c, key)?),
            None => None,
        };
        self.rotator.set(&pending, current.as_ref()).await
    }

    /// Step 3: tests the pending password in the target ([`Rotator::test`]).
    ///
    /// # Errors
    /// As [`AwsRotation::handle`].
    pub async fn test_secret(&self, secret: &str, token: &str) -> Result<(), RotationError> {
        let pending = password_in(&self.pending(secret, token).await?, self.key.as_deref())?;
        self.rotator.test(&pending).await
    }

    /// Step 4: moves `AWSCURRENT` to `token`'s version (Secrets Manager moves `AWSPREVIOUS` to the old one).
    async fn finish_secret(&self, secret: &str, token: &str, versions: &Versions) -> Result<(), RotationError> {
        let old = versions.labelled(AWSCURRENT);
        if old == Some(token) {
            return Ok(());
        }
        self.client
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(AWSCURRENT)
            .move_to_version_id(token)
            .set_remove_from_version_id(old.map(str::to_string))
            .send()
            .await
            .map_err(|e| store_error("UpdateSecretVersionStage", secret, &e))?;
        tracing::info!(target: "skm", secret = %secret, version = %token, "finishSecret: the new version is AWSCURRENT");
        Ok(())
    }

    /// Rotates `secret` now, playing the rotation service's part: a new token, the four steps, then the
    /// `AWSPENDING` label removed.
    ///
    /// When `testSecret` fails after `setSecret` changed the target, the target is set back to the
    /// `AWSCURRENT` password so that the stored current value keeps working (the rotation service itself
    /// would leave that to its retries).
    ///
    /// # Errors
    /// The failed step's error, followed by the state it left and how to finish: `AWSCURRENT` is never
    /// moved unless the new password passed the test.
    pub async fn rotate(&self, secret: &str) -> Result<Rotated, RotationError> {
        let token = new_token();
        for step in Step::ALL {
            let event = RotationEvent {
                secret_id: secret.to_string(),
                client_request_token: token.clone(),
                step,
            };
            if let Err(e) = self.handle(&event).await {
                return Err(self.explain_failure(secret, &token, step, e).await);
            }
        }
        let versions = self.versions(secret).await?;
        if versions
            .stages_of(&token)
            .is_some_and(|s| s.iter().any(|l| l == AWSPENDING))
        {
            self.client
                .update_secret_version_stage()
                .secret_id(secret)
                .version_stage(AWSPENDING)
                .remove_from_version_id(&token)
                .send()
                .await
                .map_err(|e| {
                    store_error("UpdateSecretVersionStage", secret, &e)
                        .context("the rotation finished, but the AWSPENDING label could not be removed")
                })?;
        }
        Ok(Rotated {
            version_id: token,
            previous_version_id: versions.labelled(AWSPREVIOUS).map(str::to_string),
        })
    }

    async fn explain_failure(&self, secret: &str, token: &str, step: Step, e: RotationError) -> RotationError {
        let state = match step {
            Step::CreateSecret => "nothing was changed".to_string(),
            Step::SetSecret => format!(
                "AWSCURRENT is unchanged and still valid in {}; version {token} (AWSPENDING) holds a password the \
                 target did not accept; rotating again replaces it",
                self.rotator.target()
            ),
            Step::TestSecret => {
                // The target has the pending password: put the current one back so that AWSCURRENT works.
                let restored = async {
                    let current = password_in(&self.current(secret).await?, self.key.as_deref())?;
                    let pending = password_in(&self.pending(secret, token).await?, self.key.as_deref())?;
                    self.rotator.set(&current, Some(&pending)).await
                }
                .await;
                match restored {
                    Ok(()) => format!(
                        "AWSCURRENT is unchanged; {} was set back to its password; version {token} (AWSPENDING) \
                         failed the test; rotating again replaces it",
                        self.rotator.target()
                    ),
                    Err(undo) => format!(
                        "AWSCURRENT is unchanged but setting {} back to its password failed too ({undo}): the target \
                         has the password of version {token} (AWSPENDING); finish by fixing the target and running \
                         finishSecret with that token, or set the target back to AWSCURRENT's password",
                        self.rotator.target()
                    ),
                }
            }
            Step::FinishSecret => format!(
                "{} already uses the password of version {token} (AWSPENDING), which passed the test; finish with \
                 `aws secretsmanager update-secret-version-stage --secret-id {secret} --version-stage AWSCURRENT \
                 --move-to-version-id {token} --remove-from-version-id <the current version>`",
                self.rotator.target()
            ),
        };
        let kind = e.kind();
        RotationError::new(kind, format!("{e}; {state}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_uuid_layout_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_ne!(a, b);
    }

    #[test]
    fn events_parse_as_the_service_sends_them() {
        for step in Step::ALL {
            let json = serde_json::json!({"SecretId": "s", "ClientRequestToken": "t", "Step": step.name()});
            let event: RotationEvent = serde_json::from_value(json).unwrap();
            assert_eq!(event.step, step);
        }
        let bad = serde_json::json!({"SecretId": "s", "ClientRequestToken": "t", "Step": "rotate"});
        assert!(serde_json::from_value::<RotationEvent>(bad).is_err());
    }
}
