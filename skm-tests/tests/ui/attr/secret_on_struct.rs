use skm::{SecretString, Secrets};

#[derive(Secrets)]
#[secret(prefix = "myapp")]
struct AppSecrets {
    #[secret(path = "auth/jwt")]
    jwt: SecretString,
}

fn main() {}
