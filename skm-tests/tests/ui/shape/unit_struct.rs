use skm::Secrets;

#[derive(Secrets)]
struct AppSecrets;

fn main() {
    let _ = AppSecrets::load();
}
