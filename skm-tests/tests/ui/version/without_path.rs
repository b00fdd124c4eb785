use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "JWT_SECRET", version = 2)]
    jwt: SecretString,
}

fn main() {}
