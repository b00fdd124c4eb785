use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets(SecretString);

fn main() {
    let _ = AppSecrets::load();
}
