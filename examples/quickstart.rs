//! The README's main command: load a typed secrets struct on the embedded default, with no server.
//!
//! Run with `cargo run --example quickstart`. The embedded default is the local encrypted store (`.skm/` in
//! the working directory, key in your config directory): on first run the example seeds it, then every run
//! loads from it, from `examples/quickstart.env` (shipped with the example) and from the declared defaults,
//! and prints each field redacted, with where it came from.

use skm::backend::local::LocalStore;
use skm::backend::{AdminBackend, PutRequest, SecretValue};
use skm::{Layer, Loader, SecretBox, SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
    jwt_secret: SecretString,
    #[secret(path = "database/connection", key = "url", env = "DATABASE_URL")]
    database_url: SecretString,
    #[secret(path = "database/connection", key = "pool_size", env = "DATABASE_POOL_SIZE", plain)]
    database_pool_size: u32,
    #[secret(path = "payments/stripe", key = "api_key", env = "STRIPE_API_KEY")]
    stripe_api_key: Option<SecretString>,
    #[secret(env = "SESSION_TTL_SECONDS", default = "3600")]
    session_ttl: SecretBox<u64>,
}

#[tokio::main]
async fn main() -> Result<(), skm::Error> {
    // `SKM_LOCAL_PATH`, `SKM_LOCAL_KEY` and `SKM_LOCAL_KEY_FILE` are honoured; the default is `./.skm`.
    let store = LocalStore::from_env()?;
    if store.list("").await?.is_empty() {
        seed(&store).await?;
        println!("Seeded the local store at {} (first run).", store.path().display());
    }

    let dotenv = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.env");
    // The store and the `.env` shipped with the example are the whole environment here, so that a stray
    // variable in the caller's shell cannot change what the demo prints.
    let loader = Loader::new()
        .backend(store)
        .dotenv(dotenv)
        .env_vars(Vec::<(String, String)>::new())
        .precedence(Layer::DEFAULT_ORDER);
    let loaded = loader.load_report::<AppSecrets>().await?;
    let s = &loaded.value;

    println!(
        "Loaded `AppSecrets` ({}):",
        loaded.provenance.backend.as_deref().unwrap_or("no backend")
    );
    let shown = [
        ("jwt_secret", format!("{:?}", s.jwt_secret)),
        ("database_url", format!("{:?}", s.database_url)),
        ("database_pool_size", format!("{} (plain)", s.database_pool_size)),
        ("stripe_api_key", format!("{:?}", s.stripe_api_key)),
        ("session_ttl", format!("{:?}", s.session_ttl)),
    ];
    for (field, value) in shown {
        let origin = loaded
            .provenance
            .get(field)
            .map(ToString::to_string)
            .unwrap_or_default();
        println!("  {field:<20} {value:<32} <- {origin}");
    }
    for w in &loaded.provenance.warnings {
        println!("  warning: {w}");
    }
    Ok(())
}

/// Writes demo values: a random JWT key, so nothing secret is committed, and the database URL. The pool
/// size stays in `.env` to show the layers side by side.
async fn seed(store: &LocalStore) -> Result<(), skm::Error> {
    let mut jwt = [0u8; 32];
    getrandom::fill(&mut jwt)
        .map_err(|e| skm::Error::Config(skm::ConfigError::new("no OS randomness").with_source(e)))?;
    let jwt: String = jwt.iter().map(|b| format!("{b:02x}")).collect();
    store
        .put(PutRequest::new("auth/jwt", SecretValue::map([("secret", jwt)])))
        .await?;
    store
        .put(PutRequest::new(
            "database/connection",
            SecretValue::map([("url", "postgres://app:from-the-store@localhost:5432/app")]),
        ))
        .await?;
    Ok(())
}
