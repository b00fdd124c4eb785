use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "jwt-secret")]
    jwt: SecretString,
}

fn main() {}
