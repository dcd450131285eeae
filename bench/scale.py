#!/usr/bin/env python3
"""Pouch at scale: many small files on the embedded store.

Device A gets FILES files (100 B - 4 KiB, 100 per folder). Measured:

1. A's first `pouch sync` (wall time, peak RSS), then a no-change one,
   then `pouch status` on A (nothing waits) and on B (every file waits);
2. `pouch daemon` on A and on a new device B (same store): the time until
   B's daemon has every file, then both daemons' RSS and CPU from 10 s
   after the last file arrived, over IDLE seconds;
3. the change latency between the two daemons at that size: a 1 KiB file
   written on A, timed until complete on B, CHANGES times;
4. both daemons' RSS and CPU again, over IDLE seconds after the changes.

Usage: bench/scale.py [FILES] [CHANGES] [IDLE]   (defaults 100000, 50, 30)
Needs: python3, GNU time (/usr/bin/time). Builds the release `pouch`.
"""

import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POUCH = os.environ.get("POUCH_BIN", os.path.join(ROOT, "target/release/pouch"))
TICKS = os.sysconf("SC_CLK_TCK")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make_tree(root, files):
    rng = random.Random(7)
    for i in range(files):
        d = os.path.join(root, f"d{i // 100:05}")
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:07}.txt"), "wb") as f:
            f.write(rng.randbytes(rng.randint(100, 4096)))


def pouch(work, name, *args, timed=False):
    cmd = [POUCH, "--config", f"{work}/{name}.toml", *args]
    if not timed:
        subprocess.check_call(cmd, stdout=subprocess.DEVNULL)
        return None
    out = f"{work}/time.out"
    start = time.perf_counter()
    subprocess.check_call(["/usr/bin/time", "-f", "%M", "-o", out, *cmd], stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(out) as f:
        rss = int(f.read().strip().splitlines()[-1]) / 1024
    return wall, rss


def daemon(work, name):
    proc = subprocess.Popen([POUCH, "--config", f"{work}/{name}.toml", "daemon"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = f"{work}/{name}.journal.sock"
    while not os.path.exists(sock):
        time.sleep(0.05)
    return proc


def synced_count(state):
    try:
        con = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute("SELECT COUNT(*) FROM synced").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def idle(label, procs, seconds):
    before = {name: cpu_ticks(p.pid) for name, p in procs.items()}
    time.sleep(seconds)
    for name, p in procs.items():
        used = (cpu_ticks(p.pid) - before[name]) / TICKS
        print(f"  {label}, daemon {name}: RSS {rss_mib(p.pid):6.1f} MiB, "
              f"CPU {100 * used / seconds:5.2f} % over {seconds} s")


def main():
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    changes = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    quiet = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    if "POUCH_BIN" not in os.environ:
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pouch"], cwd=ROOT)
    os.environ.setdefault("POUCH_LOG", "warn")
    work = tempfile.mkdtemp(prefix="pouch-scale-", dir=os.path.join(ROOT, "target"))
    procs = {}
    try:
        store = f"{work}/store"
        pouch(work, "A", "init", "--device", "A", "--root", f"{work}/A", "--store", store)
        pouch(work, "B", "init", "--device", "B", "--root", f"{work}/B", "--store", store)
        make_tree(f"{work}/A", files)
        entries = files + (files + 99) // 100
        print(f"{files} files in {(files + 99) // 100} folders, embedded store")
        wall, rss = pouch(work, "A", "sync", timed=True)
        print(f"  first pouch sync on A: {wall:7.1f} s, peak RSS {rss:6.1f} MiB")
        wall, rss = pouch(work, "A", "sync", timed=True)
        print(f"  no-change pouch sync on A: {wall:7.2f} s, peak RSS {rss:6.1f} MiB")
        wall, rss = pouch(work, "A", "status", timed=True)
        print(f"  pouch status on A (nothing waits): {wall:7.2f} s, peak RSS {rss:6.1f} MiB")
        wall, rss = pouch(work, "B", "status", timed=True)
        print(f"  pouch status on B (every file waits): {wall:7.2f} s, peak RSS {rss:6.1f} MiB")

        procs["A"] = daemon(work, "A")
        start = time.perf_counter()
        procs["B"] = daemon(work, "B")
        state_b = f"{work}/B.journal.sqlite"
        while synced_count(state_b) < entries:
            time.sleep(0.2)
        print(f"  daemon B has every file: {time.perf_counter() - start:7.1f} s after it started")
        time.sleep(10)
        idle("from 10 s after the last file", procs, quiet)

        latencies = []
        for i in range(changes):
            content = (f"change {i} ".encode() * 120)[:1024]
            rel = f"d{(i * 37) % ((files + 99) // 100):05}/change{i}.txt"
            target = f"{work}/B/{rel}"
            began = time.perf_counter()
            with open(f"{work}/A/{rel}", "wb") as f:
                f.write(content)
            while True:
                try:
                    with open(target, "rb") as f:
                        if f.read() == content:
                            break
                except FileNotFoundError:
                    pass
                time.sleep(0.002)
            latencies.append((time.perf_counter() - began) * 1000)
            time.sleep(0.2)
        print(f"  change latency A -> B over {changes} changes: p50 {pct(latencies, 0.5):7.1f} ms, "
              f"p99 {pct(latencies, 0.99):7.1f} ms")
        time.sleep(10)
        idle("after the changes", procs, quiet)
    finally:
        for p in procs.values():
            p.terminate()
            p.wait()
        subprocess.call(["rm", "-rf", work])


if __name__ == "__main__":
    main()
