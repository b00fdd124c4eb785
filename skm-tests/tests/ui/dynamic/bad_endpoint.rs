use skm::{Leased, Secrets};

#[derive(serde::Deserialize)]
struct DbCredentials {
    username: String,
}

#[derive(Secrets)]
struct AppSecrets {
    #[secret(dynamic = "")]
    empty: Leased<DbCredentials>,
    #[secret(dynamic = "/database/creds/app/")]
    slashes: Leased<DbCredentials>,
    #[secret(dynamic = "database/creds/my app")]
    spaced: Leased<DbCredentials>,
}

fn main() {}
