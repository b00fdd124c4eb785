use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "db/password", backend = "hashicorp")]
    db_password: SecretString,
}

fn main() {}
