use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/../jwt")]
    jwt: SecretString,
}

fn main() {}
