use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(pth = "auth/jwt")]
    jwt: SecretString,
}

fn main() {
    let _ = AppSecrets::load();
}
