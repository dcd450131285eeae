#!/usr/bin/env bash
# `pouch migrate copy` throughput from the embedded store to a pouch-store
# server on 127.0.0.1, beside the slower side's own ingest rate: a `pouch
# sync` uploading the same files straight to a fresh namespace of the same
# server (chunking and hashing included, as in any upload).
#
# Usage: bench/migrate_copy.sh [MIB]   (default 512; 64 files of random bytes)
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-512}
cargo build --release -q -p pouch -p pouch-backend-own --bin pouch --bin pouch-store
pouch=$PWD/target/release/pouch
store_bin=$PWD/target/release/pouch-store
work=$(mktemp -d "$PWD/target/bench-migrate.XXXXXX")
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export POUCH_STORE_TOKEN=bench-token-0123456789abcdef POUCH_LOG=warn

cat > "$work/server.toml" <<TOML
data = "$work/server-data"
listen = "127.0.0.1:0"
[namespaces.copy]
token = "$POUCH_STORE_TOKEN"
[namespaces.direct]
token = "$POUCH_STORE_TOKEN"
TOML
"$store_bin" serve --config "$work/server.toml" > "$work/server.out" 2>/dev/null &
server=$!
for _ in $(seq 100); do grep -q listening "$work/server.out" && break; sleep 0.1; done
url="http://$(sed -n 's/^pouch-store listening on //p' "$work/server.out")"

"$pouch" --config "$work/a.toml" init --root "$work/A" --device A --store "$work/embedded" >/dev/null
for i in $(seq 64); do head -c $((mib * 16384)) /dev/urandom > "$work/A/f$i.bin"; done
"$pouch" --config "$work/a.toml" sync >/dev/null 2>&1

seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
copy=$(seconds "$pouch" --config "$work/a.toml" migrate copy --to own --url "$url" --namespace copy)
"$pouch" --config "$work/b.toml" init --root "$work/B" --device B --url "$url" --namespace direct >/dev/null
cp "$work"/A/*.bin "$work/B/"
direct=$(seconds "$pouch" --config "$work/b.toml" sync)
printf 'data: %d MiB in 64 files\n' "$mib"
printf 'migrate copy, embedded -> pouch-store: %6.2f s  %7.1f MiB/s\n' "$copy" "$(echo "$mib / $copy" | bc -l)"
printf 'pouch sync upload to pouch-store:      %6.2f s  %7.1f MiB/s\n' "$direct" "$(echo "$mib / $direct" | bc -l)"
printf 'ratio copy / direct upload:            %6.2f\n' "$(echo "($mib / $copy) / ($mib / $direct)" | bc -l)"
