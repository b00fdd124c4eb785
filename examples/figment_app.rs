//! A Rocket-style app whose configuration lives in figment: a `Rocket.toml`-like file with profiles,
//! environment overrides, and skm's secrets merged on top (no Rocket dependency needed).
//!
//! Run it: `DB_PASSWORD=hunter2 cargo run -p skm-tests --example figment_app` (or put `DB_PASSWORD` in a file under
//! `SKM_SECRETS_DIR`, or in a backend).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Deserialize;
use skm::{Loader, SecretString, Secrets};

/// The secrets this app declares.
#[derive(Secrets)]
pub struct AppSecrets {
    #[secret(path = "app/db", key = "password", env = "DB_PASSWORD")]
    pub db_password: SecretString,
    #[secret(path = "app/api", key = "port", env = "API_PORT", plain, default = "8000")]
    pub api_port: skm::SecretBox<u16>,
}

/// The app's typed configuration, as Rocket would extract it.
#[derive(Debug, Deserialize)]
pub struct Config {
    pub address: String,
    pub workers: u16,
    pub api_port: u16,
    /// A plain string from here on: figment has no secret types (see `skm::figment`).
    pub db_password: String,
}

/// A Rocket-style TOML file: `[default]`, `[debug]`, `[release]` tables, one figment profile each.
pub struct TomlFile(pub PathBuf);

impl Provider for TomlFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", self.0.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let text = std::fs::read_to_string(&self.0).map_err(|e| figment::Error::from(e.to_string()))?;
        let tables: BTreeMap<String, Dict> = toml::from_str(&text).map_err(|e| figment::Error::from(e.to_string()))?;
        Ok(tables.into_iter().map(|(p, d)| (Profile::new(&p), d)).collect())
    }
}

/// Builds the app's figment: the TOML file, then skm's secrets (which win), in profile `profile`.
/// Extract with `extract_lossy`: skm offers every value as a string, and `api_port` is a `u16`.
///
/// # Errors
/// skm cannot resolve a declared secret.
pub async fn figment(toml: &Path, loader: &Loader, profile: &str) -> Result<Figment, skm::Error> {
    let secrets = skm::figment::provider::<AppSecrets>(loader).await?;
    Ok(Figment::new()
        .merge(TomlFile(toml.to_path_buf()))
        .merge(secrets)
        .select(profile))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("skm-figment-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let toml = dir.join("Rocket.toml");
    std::fs::write(
        &toml,
        "[default]\naddress = \"127.0.0.1\"\nworkers = 4\n\n[release]\naddress = \"0.0.0.0\"\nworkers = 16\n",
    )?;
    let figment = figment(&toml, &Loader::from_env().await?, "release").await?;
    std::fs::remove_dir_all(&dir)?;
    let config: Config = figment.extract_lossy()?;
    // Never print the password itself.
    println!(
        "address={} workers={} api_port={} db_password=({} bytes)",
        config.address,
        config.workers,
        config.api_port,
        config.db_password.len()
    );
    Ok(())
}
