use skm::{Rotating, SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt")]
    jwt: Option<Rotating<SecretString>>,
}

fn main() {}
