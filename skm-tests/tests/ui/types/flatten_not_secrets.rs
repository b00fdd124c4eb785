use skm::Secrets;

struct DbSecrets;

#[derive(Secrets)]
struct AppSecrets {
    #[secret(flatten)]
    db: DbSecrets,
}

fn main() {}
