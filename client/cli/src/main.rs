//! `pouch`: the headless command line. Thin glue: it reads the config,
//! opens the backend the config names ([`store`], the only module that
//! names concrete backends), and drives `pouch-core` ([`session`],
//! [`commands`]).

/// `println!` for human-readable output: control characters and
/// bidirectional overrides (in paths, device names and messages that may
/// come from the namespace journal) are escaped. `--json` output is printed
/// with `println!`, exact.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", pouch_protocol::display::printable(&format!($($arg)*)))
    };
}

/// [`say!`] to stderr.
macro_rules! tell {
    ($($arg:tt)*) => {
        eprintln!("{}", pouch_protocol::display::printable(&format!($($arg)*)))
    };
}

mod assets;
mod cli;
mod commands;
mod progress;
mod session;
mod store;
mod time;

use std::process::ExitCode;

use clap::Parser;

/// jemalloc hands memory freed after a sync back to the system within
/// seconds (its decay purging), where glibc's allocator keeps a fragmented
/// heap: an idle daemon that tracked 100,000 files stays small (see
/// BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POUCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pouch: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            tell!("pouch: {}", pouch_backend::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
