use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret]
    jwt: SecretString,
}

fn main() {}
