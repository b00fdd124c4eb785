use skm::{SecretString, Secrets};

#[derive(Secrets)]
#[secrets(prefix = "myapp/{profile")]
struct AppSecrets {
    #[secret(path = "auth/jwt")]
    jwt: SecretString,
}

fn main() {}
