#!/usr/bin/env python3
"""A garbage collection of many blocks on the embedded store, on a
`pouch-store` process on 127.0.0.1 and on S3 (moto on 127.0.0.1), in one
run: its time, the requests it made, and the space given back.

Usage: bench/gc.py [FILES]    (default 100000: that many files of 1-4 KiB,
                               one block each, in FILES/100 folders)

For each store: sync the files up, delete them all and sync that, set the
retention to 0 days, then time `pouch gc --grace 0s` (the collection marks
and sweeps in one run) and measure the store's folder before and after
(a pouch-store server compacts by itself after the sweep: the script waits
for its folder to shrink), or the bucket's objects. moto is single-threaded
Python: the S3 row measures Pouch's requests, not S3's speed.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s3_vs_rclone as base  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"


def pouch(binary, config, *args, env=None):
    return subprocess.check_output([binary, "--config", config, *args], env=env,
                                   stderr=subprocess.DEVNULL)


def bytes_under(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(dirpath, name))
    return total


def bucket_bytes(endpoint, bucket):
    """The bytes every object of `bucket` holds (moto answers unsigned
    listings)."""
    total, token = 0, None
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    while True:
        query = {"list-type": "2"}
        if token:
            query["continuation-token"] = token
        url = f"{endpoint}/{bucket}?{urllib.parse.urlencode(query)}"
        root = ET.fromstring(urllib.request.urlopen(url).read())
        total += sum(int(e.text) for e in root.iter(f"{ns}Size"))
        token_node = root.find(f"{ns}NextContinuationToken")
        if token_node is None:
            return total
        token = token_node.text


def make_files(root, count):
    rng = random.Random(7)
    folders = max(1, count // 100)
    for i in range(count):
        folder = os.path.join(root, f"d{i % folders:05}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"f{i}.bin"), "wb") as f:
            f.write(rng.randbytes(rng.randint(1024, 4096)))
    with open(os.path.join(root, "kept.txt"), "w") as f:
        f.write("the one file that stays\n")


def collect(binary, work, name, store_args, size, files, env, requests=None):
    config = os.path.join(work, f"{name}.toml")
    root = os.path.join(work, f"{name}-root")
    shutil.copytree(files, root)
    pouch(binary, config, "init", "--device", "A", "--root", root, *store_args, env=env)
    pouch(binary, config, "sync", env=env)
    for entry in os.listdir(root):
        if entry != "kept.txt":
            shutil.rmtree(os.path.join(root, entry))
    pouch(binary, config, "sync", "--allow-mass-delete", env=env)
    pouch(binary, config, "retention", "set", "0d", env=env)
    before = size()
    sent = requests() if requests else None
    start = time.perf_counter()
    report = json.loads(pouch(binary, config, "gc", "--grace", "0s", "--json", env=env))
    seconds = time.perf_counter() - start
    # HTTP requests the store served during the run (S3: the backend's
    # own calls under the collector's, such as lease checks).
    report["http_requests"] = requests() - sent if requests else report["store_calls"]
    # The server compacts after the sweep, on its own: wait for it.
    deadline = time.time() + 120
    while size() > before // 10 and time.time() < deadline:
        time.sleep(0.2)
    after = size()
    return seconds, report, before, after


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pouch",
                           "-p", "pouch-backend-own", "--bin", "pouch", "--bin", "pouch-store"],
                          cwd=base.ROOT)
    binary = os.path.join(base.ROOT, "target/release/pouch")
    rows = []
    with tempfile.TemporaryDirectory(prefix="pouch-gc-bench-") as work:
        env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(work, "xdg"),
                   POUCH_STORE_TOKEN=TOKEN)
        files = os.path.join(work, "files")
        make_files(files, count)

        store = os.path.join(work, "embedded-store")
        rows.append(("embedded store", *collect(binary, work, "embedded", ["--store", store],
                                                lambda: bytes_under(store), files, env)))

        data = os.path.join(work, "server-data")
        server = subprocess.Popen([os.path.join(base.ROOT, "target/release/pouch-store"), "serve",
                                   "--listen", "127.0.0.1:0", "--data", data],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  env=env, text=True)
        try:
            addr = server.stdout.readline().strip().removeprefix("pouch-store listening on ")
            rows.append(("pouch-store over HTTP", *collect(
                binary, work, "server", ["--url", f"http://{addr}"],
                lambda: bytes_under(data), files, env)))
        finally:
            server.terminate()
            server.wait()

        moto = base.Moto(work)
        try:
            moto.bucket("pouch-gc")
            s3_env = dict(base.env_with_keys(), XDG_CONFIG_HOME=env["XDG_CONFIG_HOME"])
            rows.append(("S3 (moto)", *collect(
                binary, work, "s3", ["--backend", "s3", "--bucket", "pouch-gc",
                                     "--endpoint", moto.endpoint],
                lambda: bucket_bytes(moto.endpoint, "pouch-gc"), files, s3_env,
                requests=moto.requests)))
        finally:
            moto.stop()

    print(f"\n{count} files deleted, one block each; `pouch gc --grace 0s` "
          "(marks and sweeps in one run)\n")
    print("| store | blocks deleted | seconds | collector's store calls | requests "
          "| packs deleted | store before | after |")
    print("|---|---|---|---|---|---|---|---|")
    for name, seconds, report, before, after in rows:
        print(f"| {name} | {report['blocks_deleted']:,} | {seconds:.2f} | "
              f"{report['store_calls']:,} | {report['http_requests']:,} | "
              f"{report['packs_deleted']:,} | "
              f"{before / 2**20:.1f} MiB | {after / 2**20:.2f} MiB |")


if __name__ == "__main__":
    main()
