#!/usr/bin/env python3
"""A new device's full download from the embedded store and from a
`pouch-store` process on 127.0.0.1, beside `cp -a` of the same tree on the
same disk (followed by `sync`, as Pouch's download is durable), in one run.

Usage: bench/new_device_local.py [--full]   (the corpus of new_device_s3.py;
       POUCH_BIN=path runs another pouch build for the device that downloads,
       POUCH_BASELINE=path also runs that build, as one more row)
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import new_device_s3 as corpus  # noqa: E402
import s3_vs_rclone as base  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"


def pouch(binary, config, *args, env=None):
    return subprocess.check_output([binary, "--config", config, *args], env=env,
                                   stderr=subprocess.DEVNULL)


def new_device(binary, work, name, store_args, src, env, downloader=None):
    up = os.path.join(work, f"{name}-a.toml")
    down = os.path.join(work, f"{name}-b.toml")
    dest = os.path.join(work, f"{name}-dest")
    pouch(binary, up, "init", "--device", "A", "--root", src, *store_args, env=env)
    pouch(binary, up, "sync", env=env)
    downloader = downloader or binary
    pouch(downloader, down, "init", "--device", "B", "--root", dest, *store_args, env=env)
    subprocess.check_call(["sync"])
    start = time.perf_counter()
    report = json.loads(pouch(downloader, down, "sync", "--json", env=env))
    seconds = time.perf_counter() - start
    if corpus.tree_hash(dest) != corpus.tree_hash(src):
        sys.exit(f"{name}: the new device's tree differs")
    # Kept until the end: ext4 passes over inodes freed in the last 30 s
    # when it allocates new ones (`recently_deleted`), which would slow
    # down whichever case came after a delete.
    # The corpus is synced again by the next case: free it.
    os.remove(up)
    os.remove(down)
    return seconds, report["downloaded"]


def main():
    full = "--full" in sys.argv
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pouch",
                           "-p", "pouch-backend-own", "--bin", "pouch", "--bin", "pouch-store"],
                          cwd=base.ROOT)
    binary = os.path.join(base.ROOT, "target/release/pouch")
    downloader = os.environ.get("POUCH_BIN", binary)
    baseline = os.environ.get("POUCH_BASELINE")
    work = tempfile.mkdtemp(prefix="pouch-bench-local-", dir=os.environ.get("BENCH_DIR"))
    # The machine's list of synced folders is the run's own.
    env = dict(os.environ, POUCH_LOG="warn", POUCH_STORE_TOKEN=TOKEN,
               XDG_CONFIG_HOME=os.path.join(work, "xdg-config"))
    server = None
    try:
        src = os.path.join(work, "corpus")
        corpus.make_corpus(src, full)
        subprocess.check_call(["sync"])
        # Inodes an earlier run freed are "recently deleted" for 30 s.
        time.sleep(31)
        rows = []
        seconds, files = new_device(binary, work, "embedded",
                                    ["--store", os.path.join(work, "store")], src, env,
                                    downloader)
        rows.append(("pouch, embedded store", seconds, files))
        if baseline:
            seconds, files = new_device(binary, work, "baseline",
                                        ["--store", os.path.join(work, "store-b")], src, env,
                                        baseline)
            rows.append(("baseline build, embedded store", seconds, files))

        server = subprocess.Popen([os.path.join(base.ROOT, "target/release/pouch-store"), "serve",
                                   "--listen", "127.0.0.1:0", "--data",
                                   os.path.join(work, "server-data")],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
        addr = server.stdout.readline().strip().removeprefix("pouch-store listening on ")
        seconds, files = new_device(binary, work, "server", ["--url", f"http://{addr}"], src, env,
                                    downloader)
        rows.append(("pouch, pouch-store over HTTP", seconds, files))

        dest = os.path.join(work, "cp-dest")
        start = time.perf_counter()
        subprocess.check_call(["cp", "-a", src, dest])
        subprocess.check_call(["sync"])
        rows.append(("cp -a + sync", time.perf_counter() - start, None))
    finally:
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)
    base_seconds = rows[-1][1]
    print(f"corpus: {'issue 17 (0.9 GiB)' if full else 'default (about 130 MB)'}")
    print(f"{'how':30} {'seconds':>8} {'vs cp -a':>9}")
    for how, seconds, _ in rows:
        print(f"{how:30} {seconds:8.2f} {seconds / base_seconds:8.1f}x")


if __name__ == "__main__":
    main()
