use skm::{SecretString, Secrets};

#[derive(Secrets)]
#[allow(dead_code)]
struct AppSecrets {
    // Declared for Vault, in a build with the default features (no `vault`).
    #[secret(path = "db/password", backend = "vault")]
    db_password: SecretString,
    #[secret(path = "auth/jwt", backend = "local")]
    jwt: SecretString,
}

fn main() {}
