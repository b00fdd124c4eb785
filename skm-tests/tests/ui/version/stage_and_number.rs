use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", version_stage = "AWSPREVIOUS", version = 2)]
    jwt: SecretString,
}

fn main() {}
