use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "")]
    jwt: SecretString,
}

fn main() {}
