use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "API_KEY", pattern = "^sk-\\p{Klingon}+$")]
    api_key: SecretString,
    #[secret(env = "TOKEN", pattern = "")]
    token: SecretString,
}

fn main() {}
