//! The tray in a real desktop: Xvfb, a private D-Bus session bus
//! (`dbus-run-session`), and xfce4-panel hosting StatusNotifierItems. The
//! test reads the tray's menu the way the panel does (dbusmenu over D-Bus),
//! clicks it the same way, and checks the daemon behind it really changed.
//! It also leaves a screenshot of the icon and its open menu in the panel.
//! A second desktop shows an account's shared folder in the menu, with a
//! real `pouch-store` behind it.
//!
//! Needs Xvfb, dbus-run-session, xfce4-panel, xdotool and ImageMagick's
//! `import` (the README's test command installs them).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "desktop/bus.rs"]
mod bus;

use bus::{Item, NotificationServer, name_has_owner, registered_items};
use pouch_testkit::pouch_store::{PouchStore, add_user};

const WATCHER: &str = "org.kde.StatusNotifierWatcher";

#[test]
fn tray_shows_the_daemon_and_its_menu_drives_it() {
    let dir = tempfile::tempdir().unwrap();
    let desktop = Desktop::start(dir.path());
    let bus = desktop.bus();
    let notifications = NotificationServer::start(&desktop.bus_address);

    // A device on the embedded store, with no daemon running: the tray
    // must start one.
    let pouch = sibling_binary("pouch");
    let device = Device::init(&pouch, dir.path(), "a");
    std::fs::write(device.root.join("hello.txt"), b"hello").unwrap();
    let tray = Tray::start(&desktop, &pouch, &device);

    // It registers with the panel's watcher, and its menu says what the
    // daemon it started says.
    let item = tray_item(&bus);
    let menu = wait_for(
        "the menu to say up to date",
        Duration::from_secs(60),
        || {
            let menu = item.menu();
            (menu.status() == "Up to date").then_some(menu)
        },
    );
    assert!(
        menu.label_starting("Store: embedded store at").is_some(),
        "{menu:?}"
    );
    assert!(menu.enabled("Pause syncing"), "{menu:?}");
    assert!(menu.enabled("Open Pouch folder"), "{menu:?}");
    assert_eq!(item.tooltip(), "Up to date");
    assert_eq!(
        device.status()["backend"].as_str().unwrap_or_default(),
        menu.label_starting("Store: ")
            .unwrap()
            .trim_start_matches("Store: "),
    );
    wait_for("hello.txt in recent files", Duration::from_secs(30), || {
        item.menu().label_starting("hello.txt (sent)")
    });
    let up_to_date_icon = item.icon();

    // Syncing shows while a large file uploads, then up to date again. The
    // file is written beside the folder and moved in, so that it appears
    // whole: a sync that meets it half written reports "changed while being
    // read" and uploads nothing, which is not the progress this checks.
    let outside = dir.path().join("big.bin");
    write_random(&outside, 400 << 20);
    std::fs::rename(&outside, device.root.join("big.bin")).unwrap();
    let mut seen: Vec<String> = Vec::new();
    wait_for("syncing, then up to date", Duration::from_secs(300), || {
        let status = item.menu().status();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        let synced = seen
            .iter()
            .position(|s| s.starts_with("Uploading") || s.starts_with("Syncing"));
        synced.and_then(|at| seen[at..].iter().any(|s| s == "Up to date").then_some(()))
    });
    let syncing_icon_differs = seen.iter().any(|s| s.starts_with("Uploading"));
    assert!(syncing_icon_differs, "no progress line among {seen:?}");

    // Clicking "Pause syncing" over dbusmenu pauses the daemon itself.
    take_screenshot(&desktop, dir.path());
    item.click(&item.menu(), "Pause syncing");
    wait_for("the daemon to pause", Duration::from_secs(20), || {
        (device.status()["paused"] == true).then_some(())
    });
    let menu = wait_for("the menu to say paused", Duration::from_secs(20), || {
        let menu = item.menu();
        (menu.status() == "Paused" && menu.enabled("Resume syncing")).then_some(menu)
    });
    assert!(menu.label_starting("Pause syncing").is_none(), "{menu:?}");
    assert_eq!(item.tooltip(), "Paused");
    assert_ne!(
        item.icon(),
        up_to_date_icon,
        "the paused icon is the up-to-date one"
    );

    // While paused, the same file changes here and on another device; on
    // resume the daemon keeps both, and the tray tells the user.
    let other = Device::init(&pouch, dir.path(), "b");
    other.run(&["sync"]);
    std::fs::write(other.root.join("hello.txt"), b"changed on b").unwrap();
    other.run(&["sync"]);
    std::fs::write(device.root.join("hello.txt"), b"changed on a").unwrap();
    item.click(&item.menu(), "Resume syncing");
    let (summary, body) = wait_for("a conflict notification", Duration::from_secs(60), || {
        notifications.0.lock().unwrap().first().cloned()
    });
    assert_eq!(summary, "Pouch kept a conflicted copy");
    assert!(body.contains("hello"), "{body}");
    wait_for(
        "up to date after the conflict",
        Duration::from_secs(60),
        || (item.menu().status() == "Up to date").then_some(()),
    );

    // The daemon dies: the tray says so and starts another.
    let killed = Command::new("pkill")
        .args(["-KILL", "-f"])
        .arg(format!("{} daemon", device.config.display()))
        .status()
        .unwrap();
    assert!(killed.success(), "no daemon to kill");
    wait_for("the tray to notice", Duration::from_secs(20), || {
        let status = item.menu().status();
        (status.contains("Pouch stopped: the daemon exited") || status.contains("Starting"))
            .then_some(())
    });
    wait_for("a new daemon, up to date", Duration::from_secs(60), || {
        (item.menu().status() == "Up to date" && device.status()["syncs"].as_u64() >= Some(1))
            .then_some(())
    });

    // Quit from the menu: the tray ends cleanly.
    tray.quit(&item);
}

/// The accounts' password in [`tray_shows_each_shared_folder_and_what_a_viewer_keeps`].
const PASSWORD: &str = "correct horse battery";

/// A viewer's tray lists the shared folder mounted into the account's
/// home, tells of an edit that stays on the device, and pauses the shared
/// folder with the rest.
#[test]
fn tray_shows_each_shared_folder_and_what_a_viewer_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let desktop = Desktop::start(dir.path());
    let bus = desktop.bus();
    let notifications = NotificationServer::start(&desktop.bus_address);

    // Alice shares Projects with Bob, who may only view it; Bob accepts.
    let pouch = sibling_binary("pouch");
    let pouch_store = sibling_binary("pouch-store");
    let data = dir.path().join("server-data");
    let store = PouchStore::start(&pouch_store, &data, "a-token-this-test-never-uses");
    for user in ["alice", "bob"] {
        add_user(&pouch_store, &data, user, PASSWORD, None);
    }
    let alice = Device::on_account(&pouch, dir.path(), "a1", &store.url, "alice");
    std::fs::create_dir_all(alice.root.join("Projects")).unwrap();
    std::fs::write(alice.root.join("Projects/plan.txt"), b"the plan").unwrap();
    alice.run(&["sync"]);
    alice.run(&["share", "Projects", "--with", "bob", "--role", "viewer"]);
    let bob = Device::on_account(&pouch, dir.path(), "b1", &store.url, "bob");
    bob.run(&["shares", "accept", "Projects"]);

    // Bob's tray starts his daemon and lists the shared folder.
    let tray = Tray::start(&desktop, &pouch, &bob);
    let item = tray_item(&bus);
    wait_for(
        "the shared folder in the menu, up to date",
        Duration::from_secs(60),
        || {
            let menu = item.menu();
            (menu.status() == "Up to date"
                && menu
                    .label_starting("Projects (viewer): Up to date")
                    .is_some())
            .then_some(())
        },
    );
    assert!(
        std::fs::read(bob.root.join("Projects/plan.txt")).is_ok_and(|b| b == b"the plan"),
        "the shared folder did not reach Bob"
    );

    // Bob edits the file: his edit stays on his device, and the tray says
    // so, in a notification and beside the folder.
    std::fs::write(bob.root.join("Projects/plan.txt"), b"bob's idea").unwrap();
    let (summary, body) = wait_for(
        "a notification of the kept file",
        Duration::from_secs(60),
        || {
            notifications
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(summary, _)| summary == "Kept on this device only")
                .cloned()
        },
    );
    assert!(
        body.starts_with("In the shared folder Projects: ") && body.contains("plan"),
        "{summary}: {body}"
    );
    let label = wait_for(
        "the kept file beside the folder",
        Duration::from_secs(30),
        || {
            item.menu()
                .label_starting("Projects (viewer): Up to date, ")
                .filter(|label| label.ends_with("kept on this device only"))
        },
    );
    assert_eq!(
        label,
        "Projects (viewer): Up to date, 1 file kept on this device only"
    );
    alice.run(&["sync"]);
    assert_eq!(
        std::fs::read(alice.root.join("Projects/plan.txt")).unwrap(),
        b"the plan",
        "a viewer's edit reached the owner"
    );

    // Pausing from the menu pauses the shared folder's loop too.
    item.click(&item.menu(), "Pause syncing");
    wait_for(
        "the shared folder to pause",
        Duration::from_secs(20),
        || {
            let daemon = bob.status();
            (daemon["paused"] == true && daemon["mounts"][0]["status"]["paused"] == true)
                .then_some(())
        },
    );
    tray.quit(&item);
}

/// Xvfb, a session bus and a panel on it, stopped on drop.
struct Desktop {
    xvfb: Child,
    session: Child,
    display: String,
    bus_address: String,
    config_home: PathBuf,
}

impl Desktop {
    fn start(dir: &Path) -> Self {
        for tool in [
            "Xvfb",
            "dbus-run-session",
            "xfce4-panel",
            "xdotool",
            "import",
        ] {
            assert!(
                which(tool),
                "{tool} is missing: run ./scripts/test (it installs xvfb, dbus, xfce4-panel, xdotool and imagemagick)"
            );
        }
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "800x480x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(xvfb.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let display = format!(":{}", line.trim());
        assert!(display.len() > 1, "Xvfb chose no display");

        let config_home = dir.join("xdg-config");
        let panel_config = config_home.join("xfce4/xfconf/xfce-perchannel-xml");
        std::fs::create_dir_all(&panel_config).unwrap();
        std::fs::write(panel_config.join("xfce4-panel.xml"), PANEL_CONFIG).unwrap();
        // The panel runs inside dbus-run-session, whose bus (and the xfconf
        // daemon it activates, with this environment) ends with it.
        let mut session = Command::new("dbus-run-session")
            .args([
                "--",
                "sh",
                "-c",
                "echo \"$DBUS_SESSION_BUS_ADDRESS\"; exec xfce4-panel --disable-wm-check",
            ])
            .env("DISPLAY", &display)
            .env("XDG_CONFIG_HOME", &config_home)
            .env("XDG_CACHE_HOME", dir.join("xdg-cache"))
            .env_remove("SESSION_MANAGER")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut address = String::new();
        BufReader::new(session.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let bus_address = address.trim().to_owned();
        assert!(
            bus_address.starts_with("unix:"),
            "no bus address: {address:?}"
        );
        Self {
            xvfb,
            session,
            display,
            bus_address,
            config_home,
        }
    }

    /// A connection to the session bus, once the panel's watcher is on it.
    fn bus(&self) -> zbus::blocking::Connection {
        let bus = zbus::blocking::connection::Builder::address(self.bus_address.as_str())
            .unwrap()
            .build()
            .unwrap();
        wait_for(
            "the panel's StatusNotifierWatcher",
            Duration::from_secs(60),
            || name_has_owner(&bus, WATCHER).then_some(()),
        );
        bus
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DISPLAY", self.display.clone()),
            ("DBUS_SESSION_BUS_ADDRESS", self.bus_address.clone()),
            ("XDG_CONFIG_HOME", self.config_home.display().to_string()),
        ]
    }
}

use std::os::unix::process::CommandExt;

impl Drop for Desktop {
    fn drop(&mut self) {
        // The whole group: dbus-run-session, the panel and its plugins.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.session.id())])
            .status();
        let _ = self.session.wait();
        let _ = self.xvfb.kill();
        let _ = self.xvfb.wait();
    }
}

/// One panel at the top with the tray area first (so the test knows where
/// the icon is), a separator that takes the free space, and a clock.
const PANEL_CONFIG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="32"/>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
        <value type="int" value="2"/>
        <value type="int" value="3"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray">
      <property name="square-icons" type="bool" value="true"/>
    </property>
    <property name="plugin-2" type="string" value="separator">
      <property name="expand" type="bool" value="true"/>
      <property name="style" type="uint" value="0"/>
    </property>
    <property name="plugin-3" type="string" value="clock"/>
  </property>
</channel>
"#;

/// A device: a folder, a config and the embedded store all devices of the
/// test share.
struct Device {
    pouch: PathBuf,
    config: PathBuf,
    root: PathBuf,
    /// What its commands run with.
    env: Vec<(&'static str, String)>,
}

impl Device {
    fn new(pouch: &Path, dir: &Path, name: &str, env: Vec<(&'static str, String)>) -> Self {
        let device = Self {
            pouch: pouch.to_owned(),
            config: dir.join(format!("{name}.toml")),
            root: dir.join(name),
            env,
        };
        std::fs::create_dir_all(&device.root).unwrap();
        device
    }

    /// A device of account `user` on the `pouch-store` at `url`, logged in.
    fn on_account(pouch: &Path, dir: &Path, name: &str, url: &str, user: &str) -> Self {
        let device = Self::new(pouch, dir, name, vec![("POUCH_PASSWORD", PASSWORD.into())]);
        device.run(&[
            "init",
            "--root",
            device.root.to_str().unwrap(),
            "--url",
            url,
            "--user",
            user,
            "--device",
            name,
        ]);
        device
    }

    fn init(pouch: &Path, dir: &Path, name: &str) -> Self {
        let device = Self::new(pouch, dir, name, Vec::new());
        device.run(&[
            "init",
            "--root",
            device.root.to_str().unwrap(),
            "--store",
            dir.join("store").to_str().unwrap(),
            "--device",
            name,
        ]);
        device
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.pouch)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            // The machine's list of synced folders is the test's own.
            .env(
                "XDG_CONFIG_HOME",
                self.config.with_file_name("xdg-config-cli"),
            )
            .envs(self.env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pouch {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The daemon's status as `pouch status --json` reads it.
    fn status(&self) -> serde_json::Value {
        let status: serde_json::Value =
            serde_json::from_str(&self.run(&["status", "--json"])).unwrap();
        status["daemon"].clone()
    }
}

/// A child process killed when the test ends, however it ends: a tray
/// left running would keep the test's output open, and the run waiting.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stops every daemon of a config when the test ends, however it ends.
struct StopDaemons(PathBuf);

impl Drop for StopDaemons {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-TERM", "-f"])
            .arg(format!("{} daemon", self.0.display()))
            .status();
    }
}

/// A `pouch-tray` for a device's config, started as a user would (it
/// starts the daemon); it and the daemons it started are stopped when the
/// test ends, however it ends.
struct Tray {
    process: KillOnDrop,
    /// Its output, for failure messages.
    log: Arc<Mutex<String>>,
    _daemons: StopDaemons,
}

impl Tray {
    fn start(desktop: &Desktop, pouch: &Path, device: &Device) -> Self {
        let mut process = Command::new(env!("CARGO_BIN_EXE_pouch-tray"))
            .arg("--config")
            .arg(&device.config)
            .arg("--pouch")
            .arg(pouch)
            .envs(desktop.env())
            .env("POUCH_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .map(KillOnDrop)
            .unwrap();
        Self {
            log: drain(process.0.stderr.take().unwrap()),
            process,
            _daemons: StopDaemons(device.config.clone()),
        }
    }

    /// Quits from `item`'s menu; the tray must end cleanly.
    fn quit(mut self, item: &Item<'_>) {
        // The tray may be gone before it answers the click.
        let _ = item.try_click(&item.menu(), "Quit Pouch tray");
        let ended = wait_for("the tray to quit", Duration::from_secs(20), || {
            self.process.0.try_wait().unwrap()
        });
        assert!(
            ended.success(),
            "tray: {ended}\n{}",
            self.log.lock().unwrap()
        );
    }
}

/// The (one) tray item registered with the panel's watcher.
fn tray_item(bus: &zbus::blocking::Connection) -> Item<'_> {
    let registered = wait_for("the tray to register", Duration::from_secs(30), || {
        registered_items(bus).into_iter().next()
    });
    Item::new(bus, &registered)
}

/// Right-clicks the icon (first in the panel) so the panel opens the
/// tray's menu, and saves the screen. Kept in the target folder;
/// `docs/tray.png` is one of these.
fn take_screenshot(desktop: &Desktop, dir: &Path) {
    let xdotool = |args: &[&str]| {
        let ok = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &desktop.display)
            .status()
            .unwrap();
        assert!(ok.success(), "xdotool {args:?}");
    };
    xdotool(&["mousemove", "16", "16", "click", "3"]);
    // The panel asks for the layout when it opens the menu; give it a
    // moment to draw, then point at "Recent files" to open the submenu.
    std::thread::sleep(Duration::from_millis(1000));
    xdotool(&["mousemove", "80", "99"]);
    std::thread::sleep(Duration::from_millis(1000));
    let shot = dir.join("tray.png");
    let ok = Command::new("import")
        .args(["-window", "root", "-crop", "800x240+0+0", "+repage"])
        .arg(&shot)
        .env("DISPLAY", &desktop.display)
        .status()
        .unwrap();
    assert!(ok.success(), "import failed");
    let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tray.png");
    std::fs::copy(&shot, &kept).unwrap();
    eprintln!("screenshot: {}", kept.display());
    // Close the menus again.
    xdotool(&["key", "Escape"]);
    xdotool(&["key", "Escape"]);
}

/// Writes `len` bytes that do not compress or deduplicate.
fn write_random(path: &Path, len: usize) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    std::fs::write(path, data).unwrap();
}

/// A binary built beside this test's `pouch-tray`.
fn sibling_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_pouch-tray"))
        .parent()
        .unwrap()
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p pouch -p pouch-backend-own`; the test command builds every binary)",
        path.display()
    );
    path
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Collects a child's output in the background, for failure messages.
fn drain(mut stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// Polls `check` every 50 ms until it gives a value, or fails naming
/// `what`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
