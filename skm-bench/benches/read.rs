//! The read path with criterion: `cargo bench -p skm-bench --bench read`.
//!
//! The same fixture and operations as the read section of `cargo run --release -p skm-bench`.

use criterion::{criterion_group, criterion_main, Criterion};
use skm_bench::read::ReadFixture;

fn read_path(c: &mut Criterion) {
    let fixture = ReadFixture::new();
    let mut group = c.benchmark_group("read");
    group.bench_function("field after load", |b| b.iter(|| fixture.read_field()));
    group.bench_function("watch.with", |b| b.iter(|| fixture.read_with()));
    group.bench_function("watch.get", |b| b.iter(|| fixture.read_get()));
    group.finish();
}

criterion_group!(benches, read_path);
criterion_main!(benches);
