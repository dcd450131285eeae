#!/usr/bin/env bash
# Builds the Debian packages: `pouch` (CLI and daemon, systemd user unit),
# `pouch-tray` (tray app, desktop and autostart entries, hicolor icons) and
# `pouch-store` (server, hardened system unit, example config), with shell
# completions and man pages generated from the clap definitions.
# Output: target/debian/*.deb.
#
# Needs cargo-deb (installed here with `cargo install` when missing). Its
# version is pinned: 3.8 builds from the dev profile (the packaging check
# does) with a warning that a later version will refuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
  cargo install cargo-deb --locked --version '=3.8.0'
fi

# POUCH_PACKAGE_PROFILE picks the Cargo profile (release unless set);
# cargo-deb reads each `target/release/` asset path from that profile's
# folder instead.
profile=${POUCH_PACKAGE_PROFILE:-release}
out=target/$([ "$profile" = dev ] && echo debug || echo "$profile")

if [ "$profile" = dev ]; then
  # Built as `cargo test --workspace --all-targets` builds them (the same
  # features), so after the tests this rebuilds nothing and the packages
  # hold the very binaries the tests ran.
  cargo build --workspace --all-targets --locked
else
  cargo build --profile "$profile" --locked -p pouch -p pouch-tray -p pouch-backend-own \
    --bin pouch --bin pouch-tray --bin pouch-store
fi

rm -rf "$out/assets"
for bin in pouch pouch-store; do
  "$out/$bin" generate-assets "$out/assets/$bin"
  # One page per command a user types; clap's `help` pseudo-commands are noise.
  find "$out/assets/$bin/man" -name '*-help*.1' -delete
  gzip -9n "$out/assets/$bin/man/"*.1
done
"$out/pouch-tray" --generate-assets "$out/assets/pouch-tray"
gzip -9n "$out/assets/pouch-tray/man/pouch-tray.1"

for package in pouch pouch-tray pouch-backend-own; do
  cargo deb --no-build --locked --profile "$profile" -p "$package"
done
ls -l target/debian/*.deb
