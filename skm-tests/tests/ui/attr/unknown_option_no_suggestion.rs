use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", rotate = true)]
    jwt: SecretString,
}

fn main() {}
