use skm::{SecretString, Secrets};

#[derive(Secrets)]
enum AppSecrets {
    Jwt(SecretString),
}

fn main() {
    let _ = AppSecrets::load();
}
