use skm::Secrets;

struct Port(u16);

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "PORT", plain)]
    port: Port,
}

fn main() {}
