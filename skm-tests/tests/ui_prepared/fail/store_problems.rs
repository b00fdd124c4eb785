// One of each problem a snapshot shows, over two profiles: `auth/api` is missing in `prod`; `db#port` does not
// parse as u16 in `staging`; `auth/jwt#secret` fails `min_len` in `prod`; `auth/new` was declared after the
// snapshot was written. `auth/opt` is missing too, but the field has an env fallback: no error.
use skm::{SecretString, Secrets};

#[derive(Secrets)]
#[secrets(prefix = "myapp/{profile}")]
struct StoreProblems {
    #[secret(path = "auth/api")]
    api: SecretString,
    #[secret(path = "db", key = "port", plain)]
    port: u16,
    #[secret(path = "auth/jwt", key = "secret", min_len = 32)]
    jwt: SecretString,
    #[secret(path = "auth/opt", env = "OPT_TOKEN")]
    opt: SecretString,
    #[secret(path = "auth/new")]
    new: SecretString,
}

fn main() {}
