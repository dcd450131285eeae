#!/usr/bin/env python3
"""Duplicating a folder on one device: how much of it the other device
downloads. Device A holds a folder of 1 GiB (64 files of 1-31 MiB of random
bytes, 1,000 small text files), synced to device B through a `pouch-store`
process on 127.0.0.1; A then copies the folder (`cp -a`) and syncs, and B's
next sync is measured: bytes fetched from the store (Pouch's report, and the
server's traffic), blocks taken from B's own files, seconds.

Usage: bench/duplicate.py [MIB]   (default 1024; POUCH_BIN=path runs another
                                   pouch build)
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token-0123456789abcdef"


def pouch(binary, config, *args, env):
    return subprocess.check_output([binary, "--config", config, *args], env=env,
                                   stderr=subprocess.DEVNULL)


def make_folder(folder, mib):
    rng = random.Random(17)
    os.makedirs(folder)
    big = mib << 20
    written = 0
    i = 0
    while written < big - (1 << 20):
        size = min(rng.randint(1, 31) << 20, big - written)
        with open(os.path.join(folder, f"video-{i:02}.bin"), "wb") as f:
            f.write(rng.randbytes(size))
        written += size
        i += 1
    notes = os.path.join(folder, "notes")
    os.makedirs(notes)
    for k in range(1000):
        with open(os.path.join(notes, f"note-{k:04}.txt"), "w") as f:
            f.write(f"note {k}\n" * rng.randint(10, 100))


def main():
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    binary = os.environ.get("POUCH_BIN")
    if not binary:
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pouch",
                               "-p", "pouch-backend-own", "--bin", "pouch",
                               "--bin", "pouch-store"], cwd=ROOT)
        binary = os.path.join(ROOT, "target/release/pouch")
    store_bin = os.path.join(ROOT, "target/release/pouch-store")
    work = tempfile.mkdtemp(prefix="pouch-bench-dup-", dir=os.environ.get("BENCH_DIR"))
    env = dict(os.environ, POUCH_LOG="warn", POUCH_STORE_TOKEN=TOKEN,
               XDG_CONFIG_HOME=os.path.join(work, "xdg-config"))
    server = subprocess.Popen([store_bin, "serve", "--listen", "127.0.0.1:0",
                               "--data", os.path.join(work, "server-data")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        addr = server.stdout.readline().strip().removeprefix("pouch-store listening on ")
        url = f"http://{addr}"
        a_root, b_root = os.path.join(work, "a"), os.path.join(work, "b")
        os.makedirs(a_root)
        make_folder(os.path.join(a_root, "footage"), mib)
        a_cfg, b_cfg = os.path.join(work, "a.toml"), os.path.join(work, "b.toml")
        pouch(binary, a_cfg, "init", "--device", "A", "--root", a_root, "--url", url, env=env)
        pouch(binary, b_cfg, "init", "--device", "B", "--root", b_root, "--url", url, env=env)
        pouch(binary, a_cfg, "sync", env=env)
        pouch(binary, b_cfg, "sync", env=env)

        subprocess.check_call(["cp", "-a", os.path.join(a_root, "footage"),
                               os.path.join(a_root, "footage copy")])
        pouch(binary, a_cfg, "sync", env=env)
        subprocess.check_call(["sync"])
        start = time.perf_counter()
        report = json.loads(pouch(binary, b_cfg, "sync", "--json", env=env))
        seconds = time.perf_counter() - start
        copy_bytes = sum(os.path.getsize(os.path.join(d, f))
                         for d, _, files in os.walk(os.path.join(b_root, "footage copy"))
                         for f in files)
        same = subprocess.run(["diff", "-r", os.path.join(a_root, "footage copy"),
                               os.path.join(b_root, "footage copy")]).returncode == 0
        if not same:
            sys.exit("B's copy differs from A's")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    fetched = report["bytes_downloaded"]
    print(f"folder copied on A: {copy_bytes / 2**20:.0f} MiB in {report['downloaded']} paths")
    print(f"B's sync: {seconds:.2f} s, fetched {fetched} bytes "
          f"({100 * fetched / copy_bytes:.3f} % of the copy) in {report['blocks_downloaded']} "
          f"blocks; {report['blocks_reused']} blocks taken from B's own files")


if __name__ == "__main__":
    main()
