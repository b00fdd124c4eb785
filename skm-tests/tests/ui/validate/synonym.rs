use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "API_KEY", regex = "^sk-", min_length = 32)]
    api_key: SecretString,
}

fn main() {}
