use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(dynamic = "database/creds/app")]
    db: SecretString,
}

fn main() {}
