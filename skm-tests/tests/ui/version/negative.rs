use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", version = -1)]
    jwt: SecretString,
}

fn main() {}
