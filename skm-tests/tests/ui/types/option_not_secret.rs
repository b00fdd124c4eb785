use skm::Secrets;

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "SENTRY_DSN")]
    sentry_dsn: Option<String>,
}

fn main() {}
