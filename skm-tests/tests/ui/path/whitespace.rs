use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt secret")]
    jwt: SecretString,
}

fn main() {}
