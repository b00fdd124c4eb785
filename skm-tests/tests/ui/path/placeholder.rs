use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "{profile}/auth/jwt")]
    jwt: SecretString,
}

fn main() {}
