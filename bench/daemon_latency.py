#!/usr/bin/env python3
"""Change latency between two `pouch daemon`s: the time from a file written
on device A to the complete file on device B, over 100 changes, through the
embedded store (shared folder) and through a `pouch-store` server.

Usage: bench/daemon_latency.py [CHANGES]     (default 100)
"""

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POUCH = os.path.join(ROOT, "target/release/pouch")
STORE = os.path.join(ROOT, "target/release/pouch-store")
TOKEN = "latency-bench-token-0123456789"


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def init(work, name, backend_args, env):
    subprocess.check_call([POUCH, "--config", f"{work}/{name}.toml", "init", "--device", name,
                           "--root", f"{work}/{name}"] + backend_args, env=env,
                          stdout=subprocess.DEVNULL)


def daemon(work, name, env):
    proc = subprocess.Popen([POUCH, "--config", f"{work}/{name}.toml", "daemon"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = f"{work}/{name}.journal.sock"
    while not os.path.exists(sock):
        time.sleep(0.01)
    return proc


def run(label, backend_args, env, changes):
    work = tempfile.mkdtemp(prefix="pouch-latency-", dir=os.path.join(ROOT, "target"))
    init(work, "A", backend_args(work), env)
    init(work, "B", backend_args(work), env)
    a, b = daemon(work, "A", env), daemon(work, "B", env)
    try:
        time.sleep(1)
        latencies = []
        for i in range(changes):
            content = f"change {i} ".encode() * 100
            target = f"{work}/B/f{i}.txt"
            start = time.perf_counter()
            with open(f"{work}/A/f{i}.txt", "wb") as f:
                f.write(content)
            while True:
                try:
                    with open(target, "rb") as f:
                        if f.read() == content:
                            break
                except FileNotFoundError:
                    pass
                time.sleep(0.002)
            latencies.append(time.perf_counter() - start)
            time.sleep(0.05)
        ms = [x * 1000 for x in latencies]
        print(f"{label:<28} p50 {pct(ms, 0.5):7.1f} ms   p99 {pct(ms, 0.99):7.1f} ms   max {max(ms):7.1f} ms")
    finally:
        for p in (a, b):
            p.terminate()
            p.wait()
        subprocess.call(["rm", "-rf", work])


def main():
    changes = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pouch", "-p", "pouch-backend-own"], cwd=ROOT)
    env = dict(os.environ, POUCH_STORE_TOKEN=TOKEN, POUCH_LOG="warn", POUCH_STORE_LOG="warn")
    print(f"{changes} changes, one at a time, file written on A until complete on B")
    run("embedded store (shared dir)", lambda w: ["--store", f"{w}/store"], env, changes)

    data = tempfile.mkdtemp(prefix="pouch-latency-store-", dir=os.path.join(ROOT, "target"))
    server = subprocess.Popen([STORE, "serve", "--data", data, "--listen", "127.0.0.1:0"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = "http://" + server.stdout.readline().strip().rsplit(" ", 1)[-1]
    try:
        run("pouch-store (long-poll)", lambda w: ["--url", url], env, changes)
    finally:
        server.terminate()
        server.wait()
        subprocess.call(["rm", "-rf", data])


if __name__ == "__main__":
    main()
