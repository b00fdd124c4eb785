use skm::{Leased, Secrets};

#[derive(serde::Deserialize)]
struct DbCredentials {
    username: String,
}

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "database/creds/app")]
    db: Leased<DbCredentials>,
}

fn main() {}
