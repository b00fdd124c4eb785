use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "DB_PASSWORD", not = [])]
    password: SecretString,
}

fn main() {}
