//! Permission bits travel with files: a private file stays private on every
//! device, and a download never leaves new content readable by others on
//! the way.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::pair;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_private_file_stays_private_on_every_device() {
    let (_dir, a, b) = pair();
    std::fs::write(a.path("secret.txt"), b"the key").unwrap();
    chmod(&a.path("secret.txt"), 0o600);
    std::fs::write(a.path("script.sh"), b"#!/bin/sh\n").unwrap();
    chmod(&a.path("script.sh"), 0o750);
    std::fs::write(a.path("readonly.txt"), b"do not touch").unwrap();
    chmod(&a.path("readonly.txt"), 0o444);
    a.sync();
    b.sync();
    assert_eq!(mode(&b.path("secret.txt")), 0o600);
    assert_eq!(mode(&b.path("script.sh")), 0o750);
    assert_eq!(mode(&b.path("readonly.txt")), 0o444);

    // A mode change alone syncs, both ways, and so does a content edit.
    chmod(&b.path("secret.txt"), 0o640);
    b.sync();
    a.sync();
    assert_eq!(mode(&a.path("secret.txt")), 0o640);
    chmod(&a.path("readonly.txt"), 0o400);
    a.sync();
    b.sync();
    assert_eq!(mode(&b.path("readonly.txt")), 0o400);
    std::fs::write(a.path("secret.txt"), b"a new key").unwrap();
    a.sync();
    b.sync();
    assert_eq!(std::fs::read(b.path("secret.txt")).unwrap(), b"a new key");
    assert_eq!(
        mode(&b.path("secret.txt")),
        0o640,
        "an edit changed the mode"
    );
    // Nothing is left to sync: modes do not ping-pong.
    assert_eq!(a.sync()["uploaded"], 0);
    assert_eq!(b.sync()["uploaded"], 0);
}
