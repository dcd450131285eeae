//! Every command's help says what is built: no help text promises a
//! feature "later" or denies one that exists. Walks `pouch --help` and the
//! help of every subcommand, nested ones included.

mod common;

use common::pouch;

/// Words a help text uses when it is out of step with the code.
const STALE: &[&str] = &[
    "not built",
    "not yet",
    "not implemented",
    "unimplemented",
    "todo",
    "fixme",
    "coming soon",
    "in a later",
    "will be added",
];

fn help(args: &[&str]) -> String {
    let out = pouch().args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help page lists under "Commands:".
fn subcommands(page: &str) -> Vec<String> {
    page.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_help_text_promises_or_denies_what_is_built() {
    let mut pages = vec![(Vec::<String>::new(), help(&[]))];
    let mut seen = 0;
    while let Some((path, page)) = pages.pop() {
        seen += 1;
        let lower = page.to_lowercase();
        for word in STALE {
            assert!(
                !lower.contains(word),
                "`pouch {} --help` says {word:?}:\n{page}",
                path.join(" ")
            );
        }
        for sub in subcommands(&page) {
            let mut deeper = path.clone();
            deeper.push(sub);
            let args: Vec<&str> = deeper.iter().map(String::as_str).collect();
            pages.push((deeper.clone(), help(&args)));
        }
    }
    // The walk reached the nested commands (migrate start, exclude add, ...).
    assert!(seen >= 20, "only {seen} help pages found");
}
