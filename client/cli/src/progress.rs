//! Progress output: a bar on a terminal, a few plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use pouch_core::{Phase, Progress};

/// Builds the progress reporter that suits stderr.
pub fn for_stderr() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bar(Mutex::new(None)))
    } else {
        Box::new(Lines(Mutex::new(LineState::default())))
    }
}

struct Bar(Mutex<Option<ProgressBar>>);

impl Progress for Bar {
    fn phase(&self, phase: Phase, _items: u64, total_bytes: u64) {
        let bar = ProgressBar::new(total_bytes).with_message(phase.name());
        let template = match (phase.counts_bytes(), total_bytes) {
            (true, _) => "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            (false, 0) => "{msg:>12} {pos} blocks {per_sec}",
            (false, _) => "{msg:>12} [{bar:30}] {pos}/{len} blocks eta {eta}",
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("a valid template")
                .progress_chars("=> "),
        );
        if let Some(old) = self.0.lock().expect("progress lock").replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = self.0.lock().expect("progress lock").as_ref() {
            bar.inc(bytes);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = self.0.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }
}

#[derive(Default)]
struct LineState {
    name: &'static str,
    total: u64,
    done: u64,
    last_tenth: u64,
}

/// One line when a phase starts and one per tenth done: readable in logs.
struct Lines(Mutex<LineState>);

impl Progress for Lines {
    fn phase(&self, phase: Phase, items: u64, total_bytes: u64) {
        let name = phase.name();
        *self.0.lock().expect("progress lock") = LineState {
            name,
            total: total_bytes,
            ..LineState::default()
        };
        if phase.counts_bytes() {
            eprintln!("{name} {items} ({})", indicatif::HumanBytes(total_bytes));
        } else {
            eprintln!("{name} {items} blocks");
        }
    }

    fn advance(&self, bytes: u64) {
        let mut state = self.0.lock().expect("progress lock");
        state.done += bytes;
        if let Some(tenth) = (state.done * 10).checked_div(state.total) {
            let tenth = tenth.min(10);
            if tenth > state.last_tenth {
                state.last_tenth = tenth;
                eprintln!("{} {}%", state.name, tenth * 10);
            }
        }
    }
}
