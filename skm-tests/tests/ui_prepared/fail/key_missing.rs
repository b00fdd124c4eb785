// The store's `auth/jwt` in profile `staging` has keys `Secret` and `issuer`, not `secret`: an error at the
// key, naming the profile and the snapshot's date, suggesting `Secret`.
use skm::{SecretString, Secrets};

#[derive(Secrets)]
#[secrets(prefix = "myapp/{profile}")]
struct JwtKeyMissing {
    #[secret(path = "auth/jwt", key = "secret", min_len = 16)]
    jwt: SecretString,
    #[secret(path = "db", key = "port", plain)]
    port: u16,
}

fn main() {}
