//! Rotating a password in the system that checks it: the [`Rotator`] trait, the AWS Secrets Manager
//! rotation protocol (feature `aws`) and a PostgreSQL rotator (feature `postgres`).
//!
//! A rotation has two sides: the store that keeps the password (AWS Secrets Manager with its staging
//! labels `AWSPENDING` / `AWSCURRENT` / `AWSPREVIOUS`, or another backend) and the target that checks it
//! (a database). A [`Rotator`] is the target's side: [`Rotator::set`] makes the pending password valid
//! there and [`Rotator::test`] proves it works. The store's side drives it:
//! - [`aws::AwsRotation`] (feature `aws`) implements the four steps the AWS rotation service calls a
//!   rotation Lambda with (`createSecret`, `setSecret`, `testSecret`, `finishSecret`), each idempotent,
//!   and [`aws::AwsRotation::rotate`] drives them itself the way the service does.
//! - [`postgres::PostgresRotator`] (feature `postgres`) is a rotator for a PostgreSQL role.
//!
//! # Example
//! A rotator for a system of your own:
//! ```
//! use skm_runtime::rotation::{RotationError, Rotator};
//! use secrecy::SecretString;
//!
//! struct Ldap;
//!
//! #[async_trait::async_trait]
//! impl Rotator for Ldap {
//!     fn target(&self) -> String {
//!         "LDAP user cn=app".into()
//!     }
//!     async fn set(&self, pending: &SecretString, current: Option<&SecretString>) -> Result<(), RotationError> {
//!         // Change the password (idempotent: the same `pending` may come again after a retry).
//!         Ok(())
//!     }
//!     async fn test(&self, pending: &SecretString) -> Result<(), RotationError> {
//!         // Bind with `pending`.
//!         Ok(())
//!     }
//! }
//! ```

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "postgres")]
pub mod postgres;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// The target side of a rotation: makes a new password valid in the system that checks it.
///
/// Both methods may be called more than once with the same value (the AWS rotation service retries a
/// failed step), so they must be idempotent.
#[async_trait]
pub trait Rotator: Send + Sync {
    /// What is rotated, for messages: `PostgreSQL role "app" on 127.0.0.1:5432`. Never a credential.
    fn target(&self) -> String;

    /// Makes `pending` the password in the target system. `current` is the password in use (for a target
    /// where a user changes their own password); a rotator with admin credentials of its own ignores it.
    ///
    /// # Errors
    /// [`RotationErrorKind::Set`] when the target refuses the change.
    async fn set(&self, pending: &SecretString, current: Option<&SecretString>) -> Result<(), RotationError>;

    /// Proves that `pending` works, by logging in with it.
    ///
    /// # Errors
    /// [`RotationErrorKind::Test`] when it does not.
    async fn test(&self, pending: &SecretString) -> Result<(), RotationError>;
}

/// What kind of failure a [`RotationError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationErrorKind {
    /// The target refused the new password ([`Rotator::set`]).
    Set,
    /// The new password does not work in the target ([`Rotator::test`]).
    Test,
    /// The secret store failed (a Secrets Manager call).
    Store,
    /// The secret or the request does not have the expected shape (not JSON, no such key, bad event).
    Invalid,
    /// The version named by the request token is not pending (or unknown) for this secret.
    NotPending,
}

/// A failed rotation step. Says which step, what state it left, and never a password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RotationError {
    kind: RotationErrorKind,
    message: String,
}

impl RotationError {
    /// An error of `kind` with a message for people (never a credential).
    ///
    /// # Example
    /// ```
    /// use skm_runtime::rotation::{RotationError, RotationErrorKind};
    /// let e = RotationError::new(RotationErrorKind::Test, "login as app failed: password authentication failed");
    /// assert_eq!(e.kind(), RotationErrorKind::Test);
    /// ```
    pub fn new(kind: RotationErrorKind, message: impl Into<String>) -> Self {
        RotationError {
            kind,
            message: message.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> RotationErrorKind {
        self.kind
    }

    /// The same error with `context` in front: `setSecret of db/app: ...`.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

/// The password inside a secret's text: the text itself when `key` is `None`, else the string at `key` of
/// the JSON object (`{"username": "app", "password": "..."}`, the shape AWS's database secrets have).
///
/// # Errors
/// [`RotationErrorKind::Invalid`] when the text is not a JSON object or has no string at `key`; the message
/// names the key, never the content.
///
/// # Example
/// ```
/// use secrecy::{ExposeSecret, SecretString};
/// use skm_runtime::rotation::password_in;
///
/// let secret = SecretString::from(r#"{"username": "app", "password": "s3cret"}"#);
/// assert_eq!(password_in(&secret, Some("password")).unwrap().expose_secret(), "s3cret");
/// assert_eq!(password_in(&secret, None).unwrap().expose_secret(), secret.expose_secret());
/// ```
pub fn password_in(secret: &SecretString, key: Option<&str>) -> Result<SecretString, RotationError> {
    let Some(key) = key else {
        return Ok(secret.clone());
    };
    let invalid = |what: &str| RotationError::new(RotationErrorKind::Invalid, what.to_string());
    let value: Value =
        serde_json::from_str(secret.expose_secret()).map_err(|_| invalid("the secret is not a JSON object"))?;
    match value.get(key) {
        Some(Value::String(s)) => Ok(SecretString::from(s.clone())),
        Some(_) => Err(invalid(&format!("`{key}` in the secret is not a string"))),
        None if value.is_object() => Err(invalid(&format!("the secret has no `{key}`"))),
        None => Err(invalid("the secret is not a JSON object")),
    }
}

/// `secret` with its password replaced by `password`: the whole text when `key` is `None`, else the string
/// at `key` of the JSON object, the other entries kept as they are.
///
/// # Errors
/// As [`password_in`].
///
/// # Example
/// ```
/// use secrecy::{ExposeSecret, SecretString};
/// use skm_runtime::rotation::with_password;
///
/// let secret = SecretString::from(r#"{"username":"app","password":"old"}"#);
/// let next = with_password(&secret, Some("password"), &SecretString::from("new")).unwrap();
/// let json: serde_json::Value = serde_json::from_str(next.expose_secret()).unwrap();
/// assert_eq!(json, serde_json::json!({"username": "app", "password": "new"}));
/// ```
pub fn with_password(
    secret: &SecretString,
    key: Option<&str>,
    password: &SecretString,
) -> Result<SecretString, RotationError> {
    let Some(key) = key else {
        return Ok(password.clone());
    };
    // Checks the shape first, with the same messages.
    password_in(secret, Some(key))?;
    let mut value: Value = serde_json::from_str(secret.expose_secret())
        .map_err(|_| RotationError::new(RotationErrorKind::Invalid, "the secret is not a JSON object"))?;
    value[key] = Value::String(password.expose_secret().to_string());
    Ok(SecretString::from(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_name_the_key_never_the_content() {
        let sentinel = SecretString::from(r#"{"password": 42, "other": "SENTINEL"}"#);
        let e = password_in(&sentinel, Some("password")).unwrap_err();
        assert_eq!(e.to_string(), "`password` in the secret is not a string");
        let e = password_in(&sentinel, Some("pw")).unwrap_err();
        assert_eq!(e.to_string(), "the secret has no `pw`");
        let e = password_in(&SecretString::from("SENTINEL not json"), Some("pw")).unwrap_err();
        assert_eq!(e.to_string(), "the secret is not a JSON object");
        assert_eq!(e.kind(), RotationErrorKind::Invalid);
    }
}
