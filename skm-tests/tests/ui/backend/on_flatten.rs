use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct Db {
    #[secret(path = "db/password")]
    password: SecretString,
}

#[derive(Secrets)]
struct AppSecrets {
    #[secret(flatten, backend = "vault")]
    db: Db,
}

fn main() {}
