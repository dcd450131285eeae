#!/usr/bin/env bash
# Peak memory and wall time of `pouch sync` for one large file, upload
# (device A) and download (device B) through one embedded store, beside
# `cp` + `sync` of the same file on the same disk.
#
# Usage: bench/sync_rss.sh [SIZE_MIB]   (default 2048)
# Needs /usr/bin/time (Debian package `time`).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-2048}

command -v /usr/bin/time >/dev/null || { echo "install the Debian package 'time'" >&2; exit 1; }
cargo build --release -p pouch >/dev/null 2>&1
pouch=$PWD/target/release/pouch

work=$(mktemp -d "$PWD/target/bench-rss.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$pouch" --config "$work/a.toml" init --root "$work/A" --device A --store "$work/store" >/dev/null
"$pouch" --config "$work/b.toml" init --root "$work/B" --device B --store "$work/store" >/dev/null
head -c "$((size_mib << 20))" /dev/urandom > "$work/A/big.bin"
sync

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -v "$@" 2> "$work/time.txt" >/dev/null
  local rss wall
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
  printf '%-28s peak RSS %6d KiB (%5.1f MiB)  wall %s\n' "$label" "$rss" "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')" "$wall"
}

echo "file: ${size_mib} MiB of random bytes"
measure "pouch sync (A, upload)" "$pouch" --config "$work/a.toml" sync
measure "pouch sync (B, download)" "$pouch" --config "$work/b.toml" sync
cmp "$work/A/big.bin" "$work/B/big.bin"
measure "cp + sync (reference)" sh -c "cp '$work/A/big.bin' '$work/copy.bin' && sync"
