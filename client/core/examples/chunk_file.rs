//! Cuts and hashes one file as a scan does (`chunk::blocklist_of_file`:
//! the rolling hash and BLAKE3 on two threads), and with `--one-thread`
//! as before (`chunk::blocklist`), printing the seconds it took and the
//! blocks. For `bench/chunk_hash.py`, which times it beside `b3sum`.
//!
//! Run: `cargo run --release -p pouch-core --example chunk_file -- FILE [--one-thread]`

use std::time::Instant;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: chunk_file FILE [--one-thread]");
    let one_thread = args.next().as_deref() == Some("--one-thread");
    let file = std::fs::File::open(&path)?;
    let size = file.metadata()?.len();
    let start = Instant::now();
    let (blocks, bytes) = if one_thread {
        pouch_core::chunk::blocklist(std::io::BufReader::with_capacity(1 << 20, file))?
    } else {
        pouch_core::chunk::blocklist_of_file(file, size)?
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{secs:.4} s, {} blocks, {bytes} bytes, {:.2} GiB/s",
        blocks.len(),
        bytes as f64 / secs / (1u64 << 30) as f64
    );
    Ok(())
}
