use skm::Secrets;

#[derive(Secrets)]
union AppSecrets {
    port: u16,
}

fn main() {
    let _ = AppSecrets::load();
}
