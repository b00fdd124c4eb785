//! The README's main command: load a typed secrets struct on the embedded default, with no server.
//!
//! Run with `cargo run --example quickstart`. Values come from `examples/quickstart.env` (shipped with the
//! example) and the declared defaults; each field is printed redacted, with where it came from.

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
    let dotenv = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.env");
    // The `.env` shipped with the example is the whole environment here, so that a stray variable in the
    // caller's shell cannot change what the demo prints.
    let loader = Loader::new()
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
