use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "JWT_SECRET", key = "secret")]
    jwt: SecretString,
}

fn main() {}
