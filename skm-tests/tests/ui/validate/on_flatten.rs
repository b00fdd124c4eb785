use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct DbSecrets {
    #[secret(path = "db", key = "password")]
    password: SecretString,
}

#[derive(Secrets)]
struct AppSecrets {
    #[secret(flatten, min_len = 32, not = ["changeme"])]
    db: DbSecrets,
}

fn main() {}
