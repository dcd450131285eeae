//! `pouch-tray`, the desktop tray app: an icon whose picture and tooltip
//! show what the sync daemon is doing, with a menu to open the folder and
//! recent files, pause and resume, and see the store. It is a client of the
//! daemon's control socket (the protocol `pouch status` speaks) and starts
//! a daemon when none runs.
//!
//! On Linux the icon is a StatusNotifierItem spoken over D-Bus (tray-icon's
//! `ksni` backend): no GTK, and panels show the tooltip.

mod icons;
mod link;
mod menu;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pouch_config::Config;
use tray_icon::TrayIconBuilder;
use tray_icon::menu::{MenuEvent, MenuId};

use crate::link::{Ask, Starter, Update};
use crate::menu::{Clicked, TrayMenu};
use crate::view::{Seen, View};

/// Pouch's tray icon: shows whether your folder is in sync, with a menu to
/// open it, see recent files, and pause syncing.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The config file [default: config.toml in the system's config folder].
    #[arg(long)]
    config: Option<PathBuf>,
    /// The `pouch` program that runs the daemon [default: the one beside
    /// this program, else `pouch` on the PATH].
    #[arg(long)]
    pouch: Option<PathBuf>,
    /// Never start a daemon (when systemd runs it).
    #[arg(long)]
    no_start_daemon: bool,
    /// Write the man page into DIR/man/ and exit (for packaging).
    #[arg(long, hide = true, value_name = "DIR")]
    generate_assets: Option<PathBuf>,
}

/// What the main loop hears about.
#[derive(Debug)]
pub enum Msg {
    /// From the daemon link.
    Link(Update),
    /// A menu item was clicked.
    Menu(MenuId),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POUCH_LOG")
                .unwrap_or_else(|_| "warn,pouch_tray=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pouch-tray: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(dir) = args.generate_assets {
        return write_man_page(&dir);
    }
    let config_path = match args.config {
        Some(path) => path,
        None => pouch_config::default_config_path()
            .context("no home folder to look for the config in; pass --config")?,
    };
    let config = Config::load(&config_path)?;
    let starter = (!args.no_start_daemon).then(|| Starter {
        pouch: args.pouch.unwrap_or_else(pouch_program),
        config: config_path.clone(),
        log: config.daemon_log_path(),
    });

    let icons = icons::Icons::load()?;
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    let menu_tx = tx.clone();
    MenuEvent::set_event_handler(Some(move |event: MenuEvent| {
        let _ = menu_tx.send(Msg::Menu(event.id));
    }));

    let mut menu = TrayMenu::new()?;
    let mut shown = View::of(&Seen::Connecting);
    menu.show(&shown)?;
    let tray = TrayIconBuilder::new()
        .with_id("pouch")
        .with_title("Pouch")
        .with_tooltip(&shown.status_line)
        .with_icon(icons.of(shown.look).clone())
        .with_menu(Box::new(menu.menu().clone()))
        .build()
        .context("cannot show the tray icon (is a D-Bus session bus running?)")?;
    let link = link::spawn(config.socket_path(), starter, tx)?;
    tracing::info!("tray up for {}", config.root.display());

    for msg in rx {
        match msg {
            Msg::Link(Update::Seen(seen)) => {
                let view = View::of(&seen);
                if view != shown {
                    if view.look != shown.look {
                        tray.set_icon(Some(icons.of(view.look).clone()))?;
                    }
                    if view.status_line != shown.status_line {
                        tray.set_tooltip(Some(&view.status_line))?;
                    }
                    menu.show(&view)?;
                    shown = view;
                }
            }
            Msg::Link(Update::Notify { summary, body }) => notify(summary, body),
            Msg::Menu(id) => match menu.clicked(&id) {
                Some(Clicked::OpenFolder) => open(config.root.clone()),
                Some(Clicked::Recent(path)) => open(config.root.join(path)),
                Some(Clicked::Mount(path)) => open(config.root.join(path)),
                Some(Clicked::Pause) => {
                    let _ = link.send(if shown.pause_label == Some(view::RESUME) {
                        Ask::Resume
                    } else {
                        Ask::Pause
                    });
                }
                Some(Clicked::Limit(direction, rate)) => {
                    let rate = Some(rate.unwrap_or(0));
                    let _ = link.send(match direction {
                        view::Direction::Up => Ask::Limit {
                            up: rate,
                            down: None,
                        },
                        view::Direction::Down => Ask::Limit {
                            up: None,
                            down: rate,
                        },
                    });
                }
                Some(Clicked::OpenLog) => {
                    let log = config.daemon_log_path();
                    if log.exists() {
                        open(log);
                    } else {
                        notify(
                            "No log file".into(),
                            "The tray did not start this daemon; if systemd runs it, \
                             see `journalctl --user -u pouch`."
                                .into(),
                        );
                    }
                }
                Some(Clicked::Quit) => break,
                None => {}
            },
        }
    }
    drop(tray);
    Ok(())
}

/// `DIR/man/pouch-tray.1`, from the clap definition.
fn write_man_page(dir: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let man = dir.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    clap_mangen::generate_to(Args::command(), &man).context("writing the man page")
}

/// `pouch` beside this program (as installed, and in a build tree), else
/// whichever the PATH finds.
fn pouch_program() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("pouch")))
        .filter(|pouch| pouch.is_file())
        .unwrap_or_else(|| PathBuf::from("pouch"))
}

/// Opens a file or folder with the desktop's default program.
fn open(path: PathBuf) {
    match std::process::Command::new("xdg-open")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        // Reap it off the main loop; xdg-open returns once the program runs.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => tracing::warn!("cannot open {}: xdg-open: {e}", path.display()),
    }
}

/// Shows a desktop notification, off the main loop: a missing
/// notification server makes the D-Bus call wait for its timeout.
fn notify(summary: String, body: String) {
    std::thread::spawn(move || {
        if let Err(e) = notify_rust::Notification::new()
            .appname("Pouch")
            .icon("pouch")
            .summary(&summary)
            .body(&body)
            .show()
        {
            tracing::warn!("cannot show a notification ({summary}): {e}");
        }
    });
}
