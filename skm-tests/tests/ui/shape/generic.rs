use skm::Secrets;

#[derive(Secrets)]
struct AppSecrets<T> {
    #[secret(env = "TOKEN")]
    token: T,
}

fn main() {
    let _ = AppSecrets::<skm::SecretString>::load();
}
