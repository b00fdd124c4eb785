use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(var = "JWT_SECRET")]
    jwt: SecretString,
}

fn main() {}
