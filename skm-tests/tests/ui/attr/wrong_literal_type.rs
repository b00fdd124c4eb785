use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = 5)]
    jwt: SecretString,
}

fn main() {}
