// The store has key `secret` of `auth/jwt` in profile `staging` (the snapshot `skm prepare` wrote after the
// key was added): the declarations compile.
use skm::{SecretString, Secrets};

#[derive(Secrets)]
#[secrets(prefix = "myapp/{profile}")]
struct JwtKeyPresent {
    #[secret(path = "auth/jwt", key = "secret", min_len = 16)]
    jwt: SecretString,
    #[secret(path = "db", key = "port", plain)]
    port: u16,
}

fn main() {
    assert_eq!(<JwtKeyPresent as Secrets>::spec().fields.len(), 2);
}
