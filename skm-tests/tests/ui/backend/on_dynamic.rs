use skm::{Leased, Secrets};

#[derive(serde::Deserialize)]
struct DbCredentials {
    username: String,
}

#[derive(Secrets)]
struct AppSecrets {
    #[secret(dynamic = "database/creds/app", backend = "vault")]
    db: Leased<DbCredentials>,
}

fn main() {}
