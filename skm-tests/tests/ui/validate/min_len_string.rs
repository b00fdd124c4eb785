use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "JWT_SECRET", min_len = "32")]
    jwt: SecretString,
    #[secret(env = "API_KEY", min_len = -1)]
    api_key: SecretString,
}

fn main() {}
