//! The `pouch` command line.

fn main() {
    eprintln!("pouch: the sync engine is not wired in yet");
    std::process::exit(2);
}
