use skm::{SecretString, Secrets};

// Every mistake below is reported in one build, and `AppSecrets::load` still resolves.
#[derive(Secrets)]
#[secrets(prefix = "/myapp")]
struct AppSecrets {
    #[secret(pth = "auth/jwt")]
    jwt: SecretString,
    #[secret(env = "api-key", key = "secret")]
    api_key: SecretString,
    #[secret(path = "db", version = 0)]
    db_password: SecretString,
    #[secret(env = "SENTRY_DSN", default = "none")]
    sentry_dsn: Option<SecretString>,
    redis_url: SecretString,
}

fn main() {
    let _ = AppSecrets::load();
}
