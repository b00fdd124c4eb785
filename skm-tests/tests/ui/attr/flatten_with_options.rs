use skm::{SecretString, Secrets};

#[derive(Secrets)]
struct DbSecrets {
    #[secret(path = "db", key = "url")]
    url: SecretString,
}

#[derive(Secrets)]
struct AppSecrets {
    #[secret(flatten, path = "prod")]
    db: DbSecrets,
}

fn main() {}
