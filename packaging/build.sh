#!/usr/bin/env bash
# Builds the Debian packages of everything that exists: `pouch` (CLI and
# daemon, systemd user unit) and `pouch-store` (server, hardened system
# unit, example config), each with shell completions and man pages
# generated from the clap definitions. Output: target/debian/*.deb.
#
# Needs cargo-deb (installed here with `cargo install` when missing).
# The tray's package joins when the tray exists (see its issue).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
  cargo install cargo-deb --locked --version '^3'
fi

cargo build --release --locked -p pouch -p pouch-backend-own --bin pouch --bin pouch-store

rm -rf target/release/assets
for bin in pouch pouch-store; do
  "target/release/$bin" generate-assets "target/release/assets/$bin"
  # One page per command a user types; clap's `help` pseudo-commands are noise.
  find "target/release/assets/$bin/man" -name '*-help*.1' -delete
  gzip -9n "target/release/assets/$bin/man/"*.1
done

cargo deb --no-build --locked -p pouch
cargo deb --no-build --locked -p pouch-backend-own
ls -l target/debian/*.deb
