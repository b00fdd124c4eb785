use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "SENTRY_DSN", default = "none")]
    sentry_dsn: Option<SecretString>,
}

fn main() {}
