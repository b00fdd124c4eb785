//! Offer skm's secrets to an application that keeps its configuration in [figment](https://docs.rs/figment)
//! (Rocket and many services do).
//!
//! An app that keeps references to secrets in its own sources instead (`database_url =
//! "ref+vault://secret/db#url"` in its TOML) resolves them with [`refs`], and never declares a struct.
//!
//! [`provider`] loads the declared secrets once (the same pipeline as [`Loader::load`]) and returns a
//! synchronous figment [`Provider`] holding the winning values, keyed by field name (a flattened field
//! `db.url` nests as `db` → `url`). Merge it into the app's figment like any other provider; every value
//! carries skm's provenance as figment [`Metadata`], so an extraction error names where the value came from:
//! `... for key "port (file: /run/secrets/PORT)" in skm secrets`.
//!
//! Every value is offered as a string, exactly as written (`"007"` stays `"007"`). For a field of another
//! type (`port: u16`), extract with [`Figment::extract_lossy`](figment::Figment::extract_lossy), which
//! reads `"8000"` as a number, as Rocket does with environment variables.
//!
//! **Values given to figment are plain strings there.** Figment keeps them in ordinary `String`s that are
//! never wiped, its error messages quote a value that has the wrong type (`found string "..."`), and the
//! typed config you extract holds whatever types you chose. Use this for apps already built around figment;
//! where you can, load the secrets into a `#[derive(Secrets)]` struct instead, which keeps them in
//! `secrecy` types and never quotes them.
//!
//! ```
//! use figment::{providers::Serialized, Figment};
//! use skm::{Loader, SecretString, Secrets};
//!
//! #[derive(Secrets)]
//! struct AppSecrets {
//!     #[secret(path = "db", key = "password", env = "DB_PASSWORD")]
//!     db_password: SecretString,
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     port: u16,
//!     db_password: String,
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let loader = Loader::new().no_dotenv().env_vars([("DB_PASSWORD", "hunter2")]);
//! let secrets = skm::figment::provider::<AppSecrets>(&loader).await?;
//! let config: Config = Figment::new()
//!     .merge(Serialized::default("port", 8000))
//!     .merge(secrets)
//!     .extract_lossy()
//!     .unwrap();
//! assert_eq!((config.port, config.db_password.as_str()), (8000, "hunter2"));
//! # Ok::<(), skm::Error>(())
//! # }).unwrap();
//! ```

pub mod refs;

use std::collections::HashMap;
use std::sync::Arc;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use skm_runtime::{Error, Loader, Origin, Provenance, Secrets};

/// The name figment shows for values from skm (`... in skm secrets`).
pub const NAME: &str = "skm secrets";

/// Loads `T`'s declared secrets with `loader` and returns them as a figment [`Provider`].
///
/// # Example
/// See the [module docs](self).
///
/// # Errors
/// As [`Loader::load`]: every field that cannot be resolved, never a value. Types are checked by figment
/// when the app extracts its configuration.
pub async fn provider<T: Secrets>(loader: &Loader) -> Result<SecretsProvider, Error> {
    let fields = T::spec().resolve(loader.resolved_profile()?.as_deref())?;
    let raw = loader.load_raw(T::spec().name, &fields).await?;
    let mut data = Dict::new();
    let mut origins = HashMap::new();
    for field in &raw.fields {
        let value = match field.expose_str() {
            Some(text) => Value::from(text.to_string()),
            // Figment has no byte strings; a binary secret becomes a sequence of numbers, as serde's does.
            None => Value::from(field.expose_bytes().to_vec()),
        };
        insert_path(&mut data, &field.field, value);
        origins.insert(field.field.clone(), field.origin.clone());
    }
    Ok(SecretsProvider {
        data,
        origins: Arc::new(origins),
        profile: Profile::Default,
        provenance: raw.provenance,
    })
}

/// skm's secrets as a figment [`Provider`]; made by [`provider`].
///
/// Its `Debug` shows field names only. The values inside are plain strings (see the [module docs](self)).
pub struct SecretsProvider {
    data: Dict,
    origins: Arc<HashMap<String, Origin>>,
    profile: Profile,
    provenance: Provenance,
}

impl std::fmt::Debug for SecretsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsProvider")
            .field("fields", &self.origins.keys().collect::<Vec<_>>())
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl SecretsProvider {
    /// Offers the values in figment profile `profile` instead of the default profile.
    pub fn profile(mut self, profile: impl Into<Profile>) -> Self {
        self.profile = profile.into();
        self
    }

    /// Where each value came from (no values).
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }
}

impl Provider for SecretsProvider {
    fn metadata(&self) -> Metadata {
        let origins = self.origins.clone();
        // A key path is shown with the skm source that supplied it: `port (file: /run/secrets/PORT)`.
        Metadata::named(NAME).interpolater(move |_: &Profile, keys: &[&str]| {
            let id = keys.join(".");
            match origins.get(&id) {
                Some(origin) => format!("{id} ({origin})"),
                None => id,
            }
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(self.profile.clone().collect(self.data.clone()))
    }
}

fn insert_path(dict: &mut Dict, dotted: &str, value: Value) {
    match dotted.split_once('.') {
        None => {
            dict.insert(dotted.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = dict.entry(head.to_string()).or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}
