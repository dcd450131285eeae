#!/usr/bin/env bash
# An idle `pouch daemon` tracking many files: resident memory and CPU use
# while nothing changes, and the same for a `pouch sync` of the tree.
#
# Usage: bench/idle_daemon.sh [FILES] [IDLE_SECONDS]   (defaults 100000, 60)
# Files are 100-byte files in folders of 100.
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-100000}
idle=${2:-60}

cargo build --release -p pouch >/dev/null 2>&1
pouch=$PWD/target/release/pouch
work=$(mktemp -d "$PWD/target/bench-idle.XXXXXX")
daemon_pid=
cleanup() { [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$pouch" --config "$work/a.toml" init --root "$work/A" --device A --store "$work/store" >/dev/null
python3 - "$work/A" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 100:04}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06}.txt"), "wb") as f:
        f.write(os.urandom(100))
PY

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/sync-rss" "$pouch" --config "$work/a.toml" sync >/dev/null 2>&1
end=$(date +%s.%N)
printf 'first pouch sync of %d files: %.1f s, peak RSS %.1f MiB\n' "$files" \
  "$(echo "$end - $start" | bc)" "$(echo "$(cat "$work/sync-rss") / 1024" | bc -l)"

POUCH_LOG=warn "$pouch" --config "$work/a.toml" daemon >/dev/null 2>"$work/daemon.log" &
daemon_pid=$!
# Ready when its first full sync (a rescan of every file) has finished.
for _ in $(seq 600); do
  if "$pouch" --config "$work/a.toml" status --json 2>/dev/null \
      | python3 -c 'import json,sys; d=json.load(sys.stdin)["daemon"]; sys.exit(0 if d and d["syncs"] >= 1 and d["state"] == "idle" else 1)'; then
    break
  fi
  sleep 0.5
done
sleep 2
rss_start=$(rss_kib "$daemon_pid")
cpu_start=$(cpu_ticks "$daemon_pid")
sleep "$idle"
cpu_end=$(cpu_ticks "$daemon_pid")
rss_end=$(rss_kib "$daemon_pid")
printf 'idle daemon, %d files, %d s: RSS %.1f MiB (start of idle %.1f MiB), CPU %.3f%% (%d ticks of %d/s)\n' \
  "$files" "$idle" "$(echo "$rss_end / 1024" | bc -l)" "$(echo "$rss_start / 1024" | bc -l)" \
  "$(echo "($cpu_end - $cpu_start) * 100 / ($ticks * $idle)" | bc -l)" "$((cpu_end - cpu_start))" "$ticks"
