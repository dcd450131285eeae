//! Put and get throughput of the embedded store, beside the plain file
//! operations it is built from, on the same disk.
//!
//! Run: `cargo bench -p pouch-backend-own --bench store_throughput`
//!
//! - `put/*` stores fresh, incompressible blocks; each call fsyncs the
//!   volume and commits the index (two fsyncs). `write_fsync/*` appends the
//!   same bytes to a plain file with one `write` + `fdatasync` per call: the
//!   floor any durable store pays.
//! - `get/*` reads stored blocks back, verified (BLAKE3), from a warm page
//!   cache; `pread/*` reads the same bytes from a plain file without checks.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pouch_backend::{Block, conformance::noise};
use pouch_backend_own::storage::{Store, StoreOptions};

/// (label, block size, blocks per call)
const SHAPES: &[(&str, usize, usize)] = &[
    ("4KiB x1", 4 << 10, 1),
    ("4KiB x256", 4 << 10, 256),
    ("1MiB x1", 1 << 20, 1),
];

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir")
}

fn put(c: &mut Criterion) {
    let mut group = c.benchmark_group("put");
    group
        .measurement_time(Duration::from_secs(8))
        .sample_size(10);
    let mut seed = 0u64;
    for &(label, size, per_call) in SHAPES {
        group.throughput(Throughput::Bytes((size * per_call) as u64));
        let dir = scratch();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        group.bench_function(BenchmarkId::new("store", label), |b| {
            b.iter_custom(|iters| {
                let calls: Vec<Vec<Block>> = (0..iters)
                    .map(|_| {
                        (0..per_call)
                            .map(|_| {
                                seed += 1;
                                Block::encode(noise(seed, size))
                            })
                            .collect()
                    })
                    .collect();
                let start = Instant::now();
                for blocks in calls {
                    store.put_blocks(blocks).unwrap();
                }
                start.elapsed()
            })
        });
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("plain"))
            .unwrap();
        group.bench_function(BenchmarkId::new("write_fsync", label), |b| {
            b.iter_custom(|iters| {
                let calls: Vec<Bytes> = (0..iters)
                    .map(|_| {
                        seed += 1;
                        noise(seed, size * per_call)
                    })
                    .collect();
                let start = Instant::now();
                for bytes in calls {
                    file.write_all(&bytes).unwrap();
                    file.sync_data().unwrap();
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn get(c: &mut Criterion) {
    let mut group = c.benchmark_group("get");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    for &(label, size) in &[("4KiB", 4usize << 10), ("1MiB", 1 << 20)] {
        let count = ((64 << 20) / size).min(4096);
        group.throughput(Throughput::Bytes(size as u64));
        let dir = scratch();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let raws: Vec<Bytes> = (0..count as u64).map(|i| noise(i + 1, size)).collect();
        let ids: Vec<_> = raws.iter().map(|r| pouch_backend::BlockId::of(r)).collect();
        store
            .put_blocks(raws.iter().cloned().map(Block::encode).collect())
            .unwrap();
        let mut i = 0;
        group.bench_function(BenchmarkId::new("store", label), |b| {
            b.iter(|| {
                i = (i + 7919) % count;
                store.get_block(ids[i]).unwrap()
            })
        });
        let plain = dir.path().join("plain");
        std::fs::write(&plain, raws.concat()).unwrap();
        let file = std::fs::File::open(&plain).unwrap();
        let mut buf = vec![0u8; size];
        group.bench_function(BenchmarkId::new("pread", label), |b| {
            b.iter(|| {
                i = (i + 7919) % count;
                file.read_exact_at(&mut buf, (i * size) as u64).unwrap();
                buf[0]
            })
        });
    }
    group.finish();
}

criterion_group!(benches, put, get);
criterion_main!(benches);
