use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", version = "3")]
    jwt: SecretString,
}

fn main() {}
