use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", path = "auth/token")]
    jwt: SecretString,
}

fn main() {}
