use skm::Secrets;

#[derive(Secrets)]
struct AppSecrets {
    #[secret(env = "JWT_SECRET")]
    jwt: String,
}

fn main() {}
