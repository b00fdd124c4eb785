//! The fixture of `pipeline/first_run.rs`: a first app whose `main` returns `Result<(), skm::Error>`.
use skm::{SecretString, Secrets};

#[derive(Secrets)]
#[allow(dead_code)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
    jwt_secret: SecretString,
    #[secret(path = "database/connection", key = "url", env = "DATABASE_URL")]
    database_url: SecretString,
}

#[tokio::main]
async fn main() -> Result<(), skm::Error> {
    let _secrets = AppSecrets::load().await?;
    Ok(())
}
