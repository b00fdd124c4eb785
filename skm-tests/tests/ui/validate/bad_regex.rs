use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "API_KEY", pattern = "^sk-(live|test")]
    api_key: SecretString,
}

fn main() {}
