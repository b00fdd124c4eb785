use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", version_stage = "AWSPREVIOUS", version_id = "a1b2c3")]
    jwt: SecretString,
}

fn main() {}
