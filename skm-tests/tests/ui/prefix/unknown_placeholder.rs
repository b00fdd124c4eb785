use skm::{SecretString, Secrets};

#[derive(Secrets)]
#[secrets(prefix = "myapp/{env}")]
struct AppSecrets {
    #[secret(path = "auth/jwt")]
    jwt: SecretString,
}

fn main() {}
