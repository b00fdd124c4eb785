use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "JWT_SECRET")]
    jwt: SecretString,
    api_key: SecretString,
}

fn main() {}
