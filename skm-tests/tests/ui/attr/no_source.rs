use skm::Secrets;

#[derive(Secrets)]
struct AppSecrets {
    #[secret(default = "8080", plain)]
    port: u16,
}

fn main() {}
