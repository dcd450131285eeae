#!/usr/bin/env bash
# The tray app's footprint: resident memory and CPU of `pouch-tray` (and of
# the daemon it starts) idling for SECONDS in a real panel — Xvfb, a
# private D-Bus session (dbus-run-session) and xfce4-panel hosting the
# StatusNotifierItem, as in the tray's test.
#
# Usage: bench/tray_idle.sh [SECONDS] [FILES]   (default 60 s, 1000 files)
# Needs xvfb, dbus, xfce4-panel (./scripts/test installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
files=${2:-1000}
cargo build --release -q -p pouch -p pouch-tray --bin pouch --bin pouch-tray
bin=$PWD/target/release
work=$(mktemp -d "$PWD/target/bench-tray.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  pkill -f "$work/a.toml daemon" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

Xvfb -displayfd 1 -screen 0 800x480x24 -nolisten tcp > "$work/display" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/display" ] && break; sleep 0.1; done
export DISPLAY=":$(head -1 "$work/display")"
mkdir -p "$work/xdg/xfce4/xfconf/xfce-perchannel-xml"
sed -n '/^const PANEL_CONFIG/,/^"#;/p' client/tray/tests/desktop.rs | sed '1d;$d' \
  > "$work/xdg/xfce4/xfconf/xfce-perchannel-xml/xfce4-panel.xml"
export XDG_CONFIG_HOME=$work/xdg
setsid dbus-run-session -- sh -c 'echo "$DBUS_SESSION_BUS_ADDRESS" > "$0"; exec xfce4-panel --disable-wm-check' \
  "$work/bus" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/bus" ] && break; sleep 0.1; done
export DBUS_SESSION_BUS_ADDRESS=$(cat "$work/bus")
sleep 3 # the panel and its watcher

mkdir -p "$work/A"
for i in $(seq "$files"); do printf 'file %d\n' "$i" > "$work/A/f$i.txt"; done
"$bin/pouch" --config "$work/a.toml" init --root "$work/A" --device A --store "$work/store" >/dev/null
"$bin/pouch-tray" --config "$work/a.toml" >/dev/null 2>&1 &
tray=$!
pids+=($tray)
until "$bin/pouch" --config "$work/a.toml" status --json 2>/dev/null | grep -q '"state": "idle"'; do sleep 0.5; done
daemon=$(pgrep -f "$work/a.toml daemon" | head -1)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
t0=$(ticks "$tray"); d0=$(ticks "$daemon")
sleep "$seconds"
t1=$(ticks "$tray"); d1=$(ticks "$daemon")
printf 'idle %d s, %d files synced\n' "$seconds" "$files"
printf 'pouch-tray:   RSS %6.1f MiB  CPU %5.2f %%\n' "$(echo "$(rss "$tray") / 1024" | bc -l)" \
  "$(echo "($t1 - $t0) * 100 / $hz / $seconds" | bc -l)"
printf 'pouch daemon: RSS %6.1f MiB  CPU %5.2f %%\n' "$(echo "$(rss "$daemon") / 1024" | bc -l)" \
  "$(echo "($d1 - $d0) * 100 / $hz / $seconds" | bc -l)"
