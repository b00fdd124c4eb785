use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "JWT_SECRET", min_len = 0)]
    jwt: SecretString,
}

fn main() {}
