use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "DB_PASSWORD", backend = "vault")]
    db_password: SecretString,
}

fn main() {}
