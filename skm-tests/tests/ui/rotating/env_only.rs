use skm::{Rotating, SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "JWT_SECRET")]
    jwt: Rotating<SecretString>,
}

fn main() {}
