//! The desktop side of the test: the tray's item and menu as the panel
//! reads them over D-Bus, and a notification server that records what it
//! is asked to show.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zbus::blocking::Connection;
use zbus::zvariant::{OwnedValue, Value};

use super::WATCHER;

/// The tray's item on the bus, as the panel sees it.
pub(crate) struct Item<'a> {
    bus: &'a Connection,
    service: String,
    path: String,
    menu_path: String,
}

impl<'a> Item<'a> {
    /// `registered` is the watcher's "service/path" form.
    pub(crate) fn new(bus: &'a Connection, registered: &str) -> Self {
        let (service, path) = match registered.find('/') {
            Some(at) => (registered[..at].to_owned(), registered[at..].to_owned()),
            None => (registered.to_owned(), "/StatusNotifierItem".to_owned()),
        };
        let mut item = Self {
            bus,
            service,
            path,
            menu_path: String::new(),
        };
        let menu = item.property("Menu");
        item.menu_path = match &*menu {
            Value::ObjectPath(path) => path.to_string(),
            other => panic!("Menu is {other:?}"),
        };
        item
    }

    pub(crate) fn property(&self, name: &str) -> OwnedValue {
        self.bus
            .call_method(
                Some(self.service.as_str()),
                self.path.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &("org.kde.StatusNotifierItem", name),
            )
            .unwrap()
            .body()
            .deserialize()
            .unwrap()
    }

    pub(crate) fn tooltip(&self) -> String {
        // (icon name, pixmaps, title, description)
        let tooltip = self.property("ToolTip");
        let Value::Structure(fields) = &*tooltip else {
            panic!("ToolTip is {tooltip:?}")
        };
        match fields.fields() {
            [_, _, _, Value::Str(description)] => description.to_string(),
            other => panic!("ToolTip fields {other:?}"),
        }
    }

    /// The icon's pixels, to tell pictures apart.
    pub(crate) fn icon(&self) -> String {
        format!("{:?}", *self.property("IconPixmap"))
    }

    pub(crate) fn menu(&self) -> Menu {
        let reply = self
            .bus
            .call_method(
                Some(self.service.as_str()),
                self.menu_path.as_str(),
                Some("com.canonical.dbusmenu"),
                "GetLayout",
                &(0i32, -1i32, Vec::<String>::new()),
            )
            .unwrap();
        let (_revision, layout): (u32, Layout) = reply.body().deserialize().unwrap();
        let mut items = Vec::new();
        layout.flatten(&mut items);
        Menu(items)
    }

    pub(crate) fn click(&self, menu: &Menu, label: &str) {
        self.try_click(menu, label).unwrap();
    }

    pub(crate) fn try_click(&self, menu: &Menu, label: &str) -> zbus::Result<()> {
        let id = menu
            .0
            .iter()
            .find(|entry| entry.label == label)
            .unwrap_or_else(|| panic!("no {label:?} in {menu:?}"))
            .id;
        self.bus
            .call_method(
                Some(self.service.as_str()),
                self.menu_path.as_str(),
                Some("com.canonical.dbusmenu"),
                "Event",
                &(id, "clicked", Value::I32(0), 0u32),
            )
            .map(drop)
    }
}

/// A menu entry as dbusmenu lays it out.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    id: i32,
    label: String,
    enabled: bool,
}

/// Every entry of a menu, submenus flattened, in order.
#[derive(Debug)]
pub(crate) struct Menu(Vec<Entry>);

impl Menu {
    /// The first entry: the state line.
    pub(crate) fn status(&self) -> String {
        self.0.first().map(|e| e.label.clone()).unwrap_or_default()
    }

    pub(crate) fn label_starting(&self, prefix: &str) -> Option<String> {
        self.0
            .iter()
            .find(|e| e.label.starts_with(prefix))
            .map(|e| e.label.clone())
    }

    pub(crate) fn enabled(&self, label: &str) -> bool {
        self.0.iter().any(|e| e.label == label && e.enabled)
    }
}

/// A dbusmenu layout node, `(ia{sv}av)`; the children are nodes too.
#[derive(Debug, serde::Deserialize, zbus::zvariant::Type)]
pub(crate) struct Layout {
    id: i32,
    props: HashMap<String, OwnedValue>,
    children: Vec<OwnedValue>,
}

impl Layout {
    /// Every labelled entry, depth first (the root, id 0, has no label).
    pub(crate) fn flatten(&self, out: &mut Vec<Entry>) {
        let text = |key: &str| {
            self.props
                .get(key)
                .and_then(|v| String::try_from(v.try_clone().unwrap()).ok())
        };
        if let Some(label) = text("label") {
            let enabled = self
                .props
                .get("enabled")
                .and_then(|v| bool::try_from(v.try_clone().unwrap()).ok())
                .unwrap_or(true);
            out.push(Entry {
                id: self.id,
                // dbusmenu doubles underscores that are not mnemonics.
                label: label.replace("__", "_"),
                enabled,
            });
        }
        for child in &self.children {
            Layout::of(child).flatten(out);
        }
    }

    pub(crate) fn of(value: &Value<'_>) -> Layout {
        let value = match value {
            Value::Value(inner) => inner,
            other => other,
        };
        let Value::Structure(node) = value else {
            panic!("a layout node is {value:?}")
        };
        let [Value::I32(id), Value::Dict(props), Value::Array(children)] = node.fields() else {
            panic!("a layout node has fields {:?}", node.fields())
        };
        Layout {
            id: *id,
            props: props.try_clone().unwrap().try_into().unwrap(),
            children: children
                .iter()
                .map(|c| OwnedValue::try_from(c.try_clone().unwrap()).unwrap())
                .collect(),
        }
    }
}

pub(crate) fn registered_items(bus: &Connection) -> Vec<String> {
    let items: OwnedValue = bus
        .call_method(
            Some(WATCHER),
            "/StatusNotifierWatcher",
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(WATCHER, "RegisteredStatusNotifierItems"),
        )
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
    Vec::<String>::try_from(items).unwrap()
}

pub(crate) fn name_has_owner(bus: &Connection, name: &str) -> bool {
    bus.call_method(
        Some("org.freedesktop.DBus"),
        "/org/freedesktop/DBus",
        Some("org.freedesktop.DBus"),
        "NameHasOwner",
        &(name,),
    )
    .unwrap()
    .body()
    .deserialize()
    .unwrap()
}

/// A notification server on the test's bus that records what it is asked
/// to show.
pub(crate) struct NotificationServer(
    pub(crate) Arc<Mutex<Vec<(String, String)>>>,
    #[allow(dead_code)] Connection,
);

pub(crate) struct Recorder(Arc<Mutex<Vec<(String, String)>>>);

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Recorder {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn notify(
        &self,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut shown = self.0.lock().unwrap();
        shown.push((summary, body));
        shown.len() as u32
    }

    pub(crate) fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    pub(crate) fn get_server_information(&self) -> (String, String, String, String) {
        (
            "recorder".into(),
            "pouch tests".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    pub(crate) fn close_notification(&self, _id: u32) {}
}

impl NotificationServer {
    pub(crate) fn start(address: &str) -> Self {
        let shown = Arc::new(Mutex::new(Vec::new()));
        let connection = zbus::blocking::connection::Builder::address(address)
            .unwrap()
            .name("org.freedesktop.Notifications")
            .unwrap()
            .serve_at("/org/freedesktop/Notifications", Recorder(shown.clone()))
            .unwrap()
            .build()
            .unwrap();
        Self(shown, connection)
    }
}
