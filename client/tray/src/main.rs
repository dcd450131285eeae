//! `pouch-tray`, the desktop tray app: built in its own issue. Until then it
//! says so instead of pretending to work.

fn main() {
    eprintln!("pouch-tray is not built yet; use the `pouch` command line");
    std::process::exit(2);
}
