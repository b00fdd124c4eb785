use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(prefix = "myapp", path = "auth/jwt")]
    jwt: SecretString,
}

fn main() {}
