use skm::{Rotating, SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", version_stage = "AWSPREVIOUS")]
    jwt: Rotating<SecretString>,
}

fn main() {}
