//! The tray's menu: built once, its labels updated in place from a
//! [`View`], so the ids panels hold stay valid.

use tray_icon::menu::{Menu, MenuId, MenuItem, PredefinedMenuItem, Submenu};

use crate::view::{Direction, LIMIT_CHOICES, MountItem, PAUSE, RecentItem, View, limit_label};

/// What a click asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clicked {
    /// Open the synced folder.
    OpenFolder,
    /// Open a recent file (its path inside the folder).
    Recent(String),
    /// Open a mounted shared folder (its path inside the folder).
    Mount(String),
    /// Pause or resume, whichever the item says.
    Pause,
    /// Set one direction's bandwidth limit (`None`: lift it).
    Limit(Direction, Option<u64>),
    /// Open the daemon's log.
    OpenLog,
    /// Quit the tray.
    Quit,
}

/// The menu and the items it updates.
pub struct TrayMenu {
    menu: Menu,
    status: MenuItem,
    open_folder: MenuItem,
    recent: Submenu,
    recent_items: Vec<(MenuItem, String)>,
    shared: Submenu,
    shared_items: Vec<(MenuItem, String)>,
    pause: MenuItem,
    bandwidth: Submenu,
    limit_items: Vec<(MenuItem, Direction, Option<u64>)>,
    backend: MenuItem,
    open_log: MenuItem,
    quit: MenuItem,
}

impl TrayMenu {
    /// Builds the menu.
    pub fn new() -> anyhow::Result<Self> {
        let menu = Menu::new();
        let this = Self {
            status: MenuItem::new("", false, None),
            open_folder: MenuItem::new("Open Pouch folder", true, None),
            recent: Submenu::new("Recent files", false),
            recent_items: Vec::new(),
            shared: Submenu::new("Shared folders", false),
            shared_items: Vec::new(),
            pause: MenuItem::new(PAUSE, false, None),
            bandwidth: Submenu::new("Bandwidth", false),
            limit_items: [Direction::Up, Direction::Down]
                .into_iter()
                .flat_map(|direction| {
                    LIMIT_CHOICES.into_iter().map(move |rate| {
                        let label = limit_label(direction, rate, None);
                        (MenuItem::new(label, true, None), direction, rate)
                    })
                })
                .collect(),
            backend: MenuItem::new("", false, None),
            open_log: MenuItem::new("Open log", true, None),
            quit: MenuItem::new("Quit Pouch tray", true, None),
            menu,
        };
        for (k, (item, _, _)) in this.limit_items.iter().enumerate() {
            if k == LIMIT_CHOICES.len() {
                this.bandwidth.append(&PredefinedMenuItem::separator())?;
            }
            this.bandwidth.append(item)?;
        }
        this.menu.append_items(&[
            &this.status,
            &PredefinedMenuItem::separator(),
            &this.open_folder,
            &this.recent,
            &this.shared,
            &PredefinedMenuItem::separator(),
            &this.pause,
            &this.bandwidth,
            &this.backend,
            &this.open_log,
            &PredefinedMenuItem::separator(),
            &this.quit,
        ])?;
        Ok(this)
    }

    /// The menu, for the tray icon.
    pub fn menu(&self) -> &Menu {
        &self.menu
    }

    /// Shows `view`.
    pub fn show(&mut self, view: &View) -> anyhow::Result<()> {
        self.status.set_text(&view.status_line);
        match view.pause_label {
            Some(label) => {
                self.pause.set_text(label);
                self.pause.set_enabled(true);
            }
            None => {
                self.pause.set_text(PAUSE);
                self.pause.set_enabled(false);
            }
        }
        self.backend.set_text(&view.backend_line);
        self.bandwidth.set_enabled(view.limits.is_some());
        for (item, direction, rate) in &self.limit_items {
            item.set_text(limit_label(*direction, *rate, view.limits.as_ref()));
        }
        let recent = view
            .recent
            .iter()
            .map(|RecentItem { label, path }| (label, path));
        show_list(&self.recent, &mut self.recent_items, recent)?;
        let mounts = view
            .mounts
            .iter()
            .map(|MountItem { label, path }| (label, path));
        show_list(&self.shared, &mut self.shared_items, mounts)
    }

    /// What a click on item `id` asks for.
    pub fn clicked(&self, id: &MenuId) -> Option<Clicked> {
        if id == self.open_folder.id() {
            Some(Clicked::OpenFolder)
        } else if id == self.pause.id() {
            Some(Clicked::Pause)
        } else if id == self.open_log.id() {
            Some(Clicked::OpenLog)
        } else if id == self.quit.id() {
            Some(Clicked::Quit)
        } else if let Some((_, direction, rate)) =
            self.limit_items.iter().find(|(item, _, _)| item.id() == id)
        {
            Some(Clicked::Limit(*direction, *rate))
        } else {
            let find = |items: &[(MenuItem, String)]| {
                items
                    .iter()
                    .find(|(item, _)| item.id() == id)
                    .map(|(_, path)| path.clone())
            };
            find(&self.recent_items)
                .map(Clicked::Recent)
                .or_else(|| find(&self.shared_items).map(Clicked::Mount))
        }
    }
}

/// Makes `submenu` list `wanted` (labels, each with the path its click
/// opens), replacing its items only when they differ; greyed out when
/// empty.
fn show_list<'a>(
    submenu: &Submenu,
    items: &mut Vec<(MenuItem, String)>,
    wanted: impl ExactSizeIterator<Item = (&'a String, &'a String)> + Clone,
) -> anyhow::Result<()> {
    let unchanged = wanted.len() == items.len()
        && wanted
            .clone()
            .zip(items.iter())
            .all(|((label, path), (item, known))| path == known && item.text() == *label);
    if unchanged {
        return Ok(());
    }
    for (item, _) in items.drain(..) {
        submenu.remove(&item)?;
    }
    let empty = wanted.len() == 0;
    for (label, path) in wanted {
        let item = MenuItem::new(label, true, None);
        submenu.append(&item)?;
        items.push((item, path.clone()));
    }
    submenu.set_enabled(!empty);
    Ok(())
}
