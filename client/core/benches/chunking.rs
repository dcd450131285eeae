//! Chunk+hash throughput (FastCDC + BLAKE3 per chunk, as a sync does it)
//! beside plain BLAKE3 over the same in-memory buffer.
//!
//! Run: `cargo bench -p pouch-core --bench chunking`

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pouch_backend::conformance::noise;

fn chunking(c: &mut Criterion) {
    let data = noise(7, 256 << 20);
    let mut group = c.benchmark_group("256MiB");
    group
        .throughput(Throughput::Bytes(data.len() as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("blake3 (one pass, one thread)", |b| {
        b.iter(|| blake3::hash(&data))
    });
    group.bench_function("pouch chunk+hash (fastcdc + blake3 per chunk)", |b| {
        b.iter(|| pouch_core::chunk::blocklist(&data[..]).unwrap())
    });
    group.finish();
}

criterion_group!(benches, chunking);
criterion_main!(benches);
