use skm::{Leased, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(dynamic = "database/creds/app")]
    db: Leased,
}

fn main() {}
