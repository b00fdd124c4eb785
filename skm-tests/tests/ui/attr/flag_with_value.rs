use skm::Secrets;

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "PORT", plain = true)]
    port: u16,
}

fn main() {}
