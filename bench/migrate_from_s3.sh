#!/usr/bin/env bash
# `pouch migrate copy` throughput out of S3 (moto on 127.0.0.1) into a
# pouch-store server, with 1 and 8 block fetches in flight, beside the
# slower side's raw rate: rclone downloading the same bucket (every pack
# object) from the same moto server.
#
# Usage: bench/migrate_from_s3.sh [MIB]   (default 256; 32 files of random bytes)
# Needs rclone (apt-get install rclone) and moto_server on PATH (or in
# target/test-venv, where ./scripts/test installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-256}
cargo build --release -q -p pouch -p pouch-backend-own --bin pouch --bin pouch-store
pouch=$PWD/target/release/pouch
store_bin=$PWD/target/release/pouch-store
export PATH="$PWD/target/test-venv/bin:$PATH"
work=$(mktemp -d "$PWD/target/bench-migrate-s3.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
export POUCH_STORE_TOKEN=bench-token-0123456789abcdef POUCH_LOG=warn
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
# Plain HTTP to a local server: no CA bundle needed (and some clients
# refuse to start over the environment's).
unset AWS_CA_BUNDLE SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
pids+=($!)
endpoint="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$endpoint" >/dev/null && break; sleep 0.1; done
export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other \
  RCLONE_CONFIG_MOTO_ENDPOINT="$endpoint" RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=bench \
  RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=bench-secret RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE=true
rclone mkdir moto:bench

cat > "$work/server.toml" <<TOML
data = "$work/server-data"
listen = "127.0.0.1:0"
[namespaces.one]
token = "$POUCH_STORE_TOKEN"
[namespaces.eight]
token = "$POUCH_STORE_TOKEN"
TOML
"$store_bin" serve --config "$work/server.toml" > "$work/server.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/server.out" && break; sleep 0.1; done
url="http://$(sed -n 's/^pouch-store listening on //p' "$work/server.out")"

"$pouch" --config "$work/a.toml" init --root "$work/A" --device A \
  --backend s3 --bucket bench --endpoint "$endpoint" >/dev/null
for i in $(seq 32); do head -c $((mib * 32768)) /dev/urandom > "$work/A/f$i.bin"; done
"$pouch" --config "$work/a.toml" sync >/dev/null 2>&1

seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
raw=$(seconds rclone copy --transfers 8 moto:bench "$work/raw")
stored=$(du -sm "$work/raw" | cut -f1)
one=$(seconds "$pouch" --config "$work/a.toml" migrate copy --to own --url "$url" --namespace one --parallel 1)
eight=$(seconds "$pouch" --config "$work/a.toml" migrate copy --to own --url "$url" --namespace eight --parallel 8)
rate() { echo "$mib / $1" | bc -l; }
printf 'data: %d MiB in 32 files (%d MiB of objects in the bucket)\n' "$mib" "$stored"
printf 'rclone download of the bucket (8 transfers):      %6.2f s  %7.1f MiB/s\n' "$raw" "$(echo "$stored / $raw" | bc -l)"
printf 'migrate copy, S3 -> pouch-store, --parallel 1:   %6.2f s  %7.1f MiB/s\n' "$one" "$(rate "$one")"
printf 'migrate copy, S3 -> pouch-store, --parallel 8:   %6.2f s  %7.1f MiB/s\n' "$eight" "$(rate "$eight")"
printf 'ratio copy (8) / raw download:                    %6.2f\n' "$(echo "($mib / $eight) / ($stored / $raw)" | bc -l)"
