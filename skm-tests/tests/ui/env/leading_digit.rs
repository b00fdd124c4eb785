use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "1PASSWORD_TOKEN")]
    token: SecretString,
}

fn main() {}
