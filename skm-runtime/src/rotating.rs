//! Rotation grace: a field that holds the current and the previous version of a secret.

use std::fmt;
use std::iter::{Chain, Once};

/// The current version of a secret and, during a rotation, the one before it.
///
/// Declare a field as `Rotating<SecretString>` (with a `path`: versions live in backends) and the loader
/// reads both the backend's current version and its previous one (AWS `AWSPREVIOUS`, Vault KV v2 latest − 1,
/// the local store's previous version). A JWT verifier then accepts tokens signed with either key while
/// clients catch up with a rotation.
///
/// The previous version is `None` when the secret has only one version, when the current value came from
/// a lower layer (env, `.env`, a default) rather than the backend, or when it could not be read or failed the
/// field's validators (each with a warning; in strict mode a failed read is an error).
///
/// `Debug` defers to `T`, so for secret types it shows nothing secret.
///
/// # Example
/// ```
/// use skm_runtime::Rotating;
/// use secrecy::{ExposeSecret, SecretString};
///
/// let keys = Rotating::new(SecretString::from("new-key"), Some(SecretString::from("old-key")));
/// let accepted: Vec<&str> = keys.iter().map(|k| k.expose_secret()).collect();
/// assert_eq!(accepted, ["new-key", "old-key"]);
/// let debug = format!("{keys:?}");
/// assert!(!debug.contains("new-key") && !debug.contains("old-key"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Rotating<T> {
    current: T,
    previous: Option<T>,
}

/// The iterator of [`Rotating::iter`]: the current version, then the previous one if any.
pub type Iter<'a, T> = Chain<Once<&'a T>, std::option::Iter<'a, T>>;

impl<T> Rotating<T> {
    /// A value from its current and previous versions.
    pub fn new(current: T, previous: Option<T>) -> Self {
        Rotating { current, previous }
    }

    /// The current version: the one to sign or encrypt with.
    pub fn current(&self) -> &T {
        &self.current
    }

    /// The previous version, still accepted during a rotation.
    pub fn previous(&self) -> Option<&T> {
        self.previous.as_ref()
    }

    /// Every version to accept, the current first.
    pub fn iter(&self) -> Iter<'_, T> {
        std::iter::once(&self.current).chain(self.previous.iter())
    }

    /// The current and previous versions, by value.
    pub fn into_parts(self) -> (T, Option<T>) {
        (self.current, self.previous)
    }
}

impl<'a, T> IntoIterator for &'a Rotating<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for Rotating<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotating")
            .field("current", &self.current)
            .field("previous", &self.previous)
            .finish()
    }
}
