#!/usr/bin/env bash
# Builds the packages and checks them: contents, install on this machine,
# the installed units (systemd-analyze verify), the installed binaries, and
# the desktop entries (desktop-file-validate), and a clean purge. Run by
# ./scripts/test, which installs what it needs (systemd-analyze,
# dpkg-shlibdeps, adduser, desktop-file-validate); needs root for dpkg.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "packaging check: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root to install packages with dpkg"
for tool in systemd-analyze dpkg-shlibdeps adduser desktop-file-validate; do
  command -v "$tool" >/dev/null || fail "$tool is missing (./scripts/test installs it)"
done

packages=(pouch-tray pouch pouch-store)
# A run that stopped half-way may have left them installed.
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 && dpkg --purge "$p" >/dev/null; done

# What is checked here is the packages' contents and how they install, not
# the optimiser's work: a release build of every crate costs a 2-core CI
# run about ten minutes, so the packages are made from the dev-profile
# binaries `cargo test` has just built (packaging/build.sh run by hand
# builds with the release profile).
POUCH_PACKAGE_PROFILE=dev bash packaging/build.sh >/dev/null 2>target/packaging.log \
  || { cat target/packaging.log >&2; fail "building the packages failed"; }
deb() { ls target/debian/"$1"_*_*.deb | head -1; }

expect_files() { # package, paths...
  local package=$1; shift
  local listing
  listing=$(dpkg-deb -c "$(deb "$package")" | awk '{print $6}')
  for path in "$@"; do
    grep -qx "./$path" <<<"$listing" || fail "$package lacks /$path"
  done
}
expect_files pouch \
  usr/bin/pouch \
  usr/lib/systemd/user/pouch.service \
  usr/share/bash-completion/completions/pouch \
  usr/share/zsh/vendor-completions/_pouch \
  usr/share/fish/vendor_completions.d/pouch.fish \
  usr/share/man/man1/pouch.1.gz \
  usr/share/man/man1/pouch-sync.1.gz \
  usr/share/man/man1/pouch-daemon.1.gz \
  usr/share/doc/pouch/copyright
expect_files pouch-store \
  usr/bin/pouch-store \
  usr/lib/systemd/system/pouch-store.service \
  usr/share/doc/pouch-store/examples/config.toml \
  usr/share/bash-completion/completions/pouch-store \
  usr/share/man/man1/pouch-store.1.gz \
  usr/share/man/man1/pouch-store-serve.1.gz
expect_files pouch-tray \
  usr/bin/pouch-tray \
  usr/share/applications/pouch-tray.desktop \
  etc/xdg/autostart/pouch-tray.desktop \
  usr/share/icons/hicolor/48x48/apps/pouch.png \
  usr/share/icons/hicolor/256x256/apps/pouch.png \
  usr/share/man/man1/pouch-tray.1.gz
if dpkg-deb -c "$(deb pouch)" | grep -q -- '-help'; then fail "help pseudo-command pages were packaged"; fi

dpkg -i "$(deb pouch)" "$(deb pouch-tray)" "$(deb pouch-store)" >/dev/null
pouch --version | grep -q '^pouch ' || fail "the installed pouch does not run"
pouch-store --version | grep -q '^pouch-store ' || fail "the installed pouch-store does not run"
pouch-tray --version | grep -q '^pouch-tray ' || fail "the installed pouch-tray does not run"
desktop-file-validate /usr/share/applications/pouch-tray.desktop /etc/xdg/autostart/pouch-tray.desktop
# The desktop entries name an icon the theme really has, and a program on the PATH.
for entry in /usr/share/applications/pouch-tray.desktop /etc/xdg/autostart/pouch-tray.desktop; do
  icon=$(sed -n 's/^Icon=//p' "$entry"); exec_=$(sed -n 's/^Exec=//p' "$entry")
  [ -f "/usr/share/icons/hicolor/48x48/apps/$icon.png" ] || fail "$entry names icon $icon, not installed"
  command -v "${exec_%% *}" >/dev/null || fail "$entry runs ${exec_%% *}, not installed"
done
getent passwd pouch-store >/dev/null || fail "the pouch-store user was not created"
[ "$(stat -c %G /etc/pouch-store)" = pouch-store ] || fail "/etc/pouch-store is not the service's group"
man -w pouch-sync >/dev/null 2>&1 || [ -f /usr/share/man/man1/pouch-sync.1.gz ] || fail "man page missing"

systemd-analyze verify /usr/lib/systemd/system/pouch-store.service
# User units are checked with the system manager's parser; they only
# reference /usr/bin/pouch.
systemd-analyze verify /usr/lib/systemd/user/pouch.service
# The hardening the store's unit promises is really there.
security=$(systemd-analyze security --offline=true /usr/lib/systemd/system/pouch-store.service 2>/dev/null | tail -1 || true)
echo "pouch-store.service: ${security:-systemd-analyze security unavailable}"

dpkg --purge pouch-tray pouch pouch-store >/dev/null
for path in /usr/bin/pouch /usr/bin/pouch-store /usr/bin/pouch-tray /usr/lib/systemd/user/pouch.service \
            /usr/lib/systemd/system/pouch-store.service /etc/pouch-store \
            /etc/xdg/autostart/pouch-tray.desktop /usr/share/applications/pouch-tray.desktop \
            /usr/share/icons/hicolor/48x48/apps/pouch.png; do
  [ ! -e "$path" ] || fail "$path is left after purge"
done
echo "packaging check: ok ($(basename "$(deb pouch)"), $(basename "$(deb pouch-tray)"), $(basename "$(deb pouch-store)"))"
