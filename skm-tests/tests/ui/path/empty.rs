use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "")]
    jwt: SecretString,
}

fn main() {}
