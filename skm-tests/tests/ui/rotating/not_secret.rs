use skm::{Rotating, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt")]
    jwt: Rotating<String>,
}

fn main() {}
