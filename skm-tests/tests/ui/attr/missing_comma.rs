use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt" key = "secret")]
    jwt: SecretString,
}

fn main() {}
