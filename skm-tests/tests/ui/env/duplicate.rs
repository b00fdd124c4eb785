use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "API_KEY")]
    stripe_key: SecretString,
    #[secret(env = "API_KEY")]
    sendgrid_key: SecretString,
}

fn main() {}
