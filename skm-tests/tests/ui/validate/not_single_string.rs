use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "DB_PASSWORD", not = "changeme")]
    password: SecretString,
}

fn main() {}
