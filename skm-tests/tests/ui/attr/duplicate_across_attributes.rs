use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "JWT_SECRET")]
    #[secret(env = "JWT_SECRET_KEY")]
    jwt: SecretString,
}

fn main() {}
