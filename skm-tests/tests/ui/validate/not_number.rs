use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "PIN", not = [1234, "0000"])]
    pin: SecretString,
}

fn main() {}
