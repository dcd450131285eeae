//! Shell completions and man pages, generated from the clap definitions
//! at package build time (`pouch generate-assets DIR`, hidden).

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

/// Writes `DIR/completions/{pouch.bash,_pouch,pouch.fish}` and
/// `DIR/man/pouch.1` plus one page per subcommand (`pouch-sync.1`, …).
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    let mut cmd = crate::cli::Cli::command();
    let completions = dir.join("completions");
    let man = dir.join("man");
    for sub in [&completions, &man] {
        std::fs::create_dir_all(sub).with_context(|| format!("cannot create {}", sub.display()))?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "pouch", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    clap_mangen::generate_to(cmd, &man).context("writing man pages")?;
    Ok(())
}
