use skm::{Leased, Secrets};

#[derive(serde::Deserialize)]
struct DbCredentials {
    username: String,
}

#[derive(Secrets)]
struct AppSecrets {
    #[secret(dynamic = "database/creds/app", path = "database/static", env = "DB_CREDS")]
    db: Leased<DbCredentials>,
}

fn main() {}
