use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret")]
    jwt: SecretString,
    // Same path, other key: fine.
    #[secret(path = "auth/jwt", key = "issuer")]
    issuer: SecretString,
    // Same path and key at another version: fine (rotation).
    #[secret(path = "auth/jwt", key = "secret", version_stage = "AWSPREVIOUS")]
    jwt_previous: SecretString,
    #[secret(path = "auth/jwt", key = "secret")]
    jwt_again: SecretString,
}

fn main() {}
