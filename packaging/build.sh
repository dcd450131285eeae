#!/usr/bin/env bash
# Builds the Debian packages: `pouch` (CLI and daemon, systemd user unit),
# `pouch-tray` (tray app, desktop and autostart entries, hicolor icons) and
# `pouch-store` (server, hardened system unit, example config), with shell
# completions and man pages generated from the clap definitions.
# Output: target/debian/*.deb.
#
# Needs cargo-deb (installed here with `cargo install` when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
  cargo install cargo-deb --locked --version '^3'
fi

cargo build --release --locked -p pouch -p pouch-tray -p pouch-backend-own \
  --bin pouch --bin pouch-tray --bin pouch-store

rm -rf target/release/assets
for bin in pouch pouch-store; do
  "target/release/$bin" generate-assets "target/release/assets/$bin"
  # One page per command a user types; clap's `help` pseudo-commands are noise.
  find "target/release/assets/$bin/man" -name '*-help*.1' -delete
  gzip -9n "target/release/assets/$bin/man/"*.1
done
target/release/pouch-tray --generate-assets target/release/assets/pouch-tray
gzip -9n target/release/assets/pouch-tray/man/pouch-tray.1

cargo deb --no-build --locked -p pouch
cargo deb --no-build --locked -p pouch-tray
cargo deb --no-build --locked -p pouch-backend-own
ls -l target/debian/*.deb
