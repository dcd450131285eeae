#!/usr/bin/env python3
"""Chunk + hash of one large file from the page cache, beside `b3sum`.

A file of SIZE MiB of random bytes (default 1024) is written and read once
(so it is in the page cache), then timed RUNS times each (default 5; the
median is printed): `b3sum` on it (BLAKE3 alone, all cores, memory-mapped;
and with `--num-threads 1`),
Pouch's scan path (`chunk::blocklist_of_file`: FastCDC cut points on one
thread, BLAKE3 of each block on another) and the one-thread path it
replaced (`chunk::blocklist`: FastCDC streaming, then BLAKE3, one core).

Usage: bench/chunk_hash.py [SIZE_MIB] [RUNS]
Needs: b3sum (`cargo install b3sum --locked` if missing; installed here
when absent). Builds the example in release mode.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd):
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - start, out


def main():
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    if shutil.which("b3sum") is None:
        subprocess.check_call(["cargo", "install", "b3sum", "--locked", "--quiet"])
    subprocess.check_call(
        ["cargo", "build", "--release", "-q", "-p", "pouch-core", "--example", "chunk_file"],
        cwd=ROOT,
    )
    example = os.path.join(ROOT, "target/release/examples/chunk_file")
    with tempfile.TemporaryDirectory(dir=os.path.join(ROOT, "target")) as work:
        path = os.path.join(work, "big.bin")
        with open(path, "wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
        with open(path, "rb") as f:
            while f.read(16 << 20):
                pass
        cases = {
            "b3sum (BLAKE3 only, all cores, mmap)": [shutil.which("b3sum"), path],
            "b3sum --num-threads 1": [shutil.which("b3sum"), "--num-threads", "1", path],
            "pouch chunk+hash, two threads": [example, path],
            "pouch chunk+hash, one thread (before)": [example, path, "--one-thread"],
        }
        results = {}
        for _ in range(runs):
            for name, cmd in cases.items():
                results.setdefault(name, []).append(timed(cmd)[0])
        base = statistics.median(results["b3sum (BLAKE3 only, all cores, mmap)"])
        gib = size_mib / 1024
        print(f"{size_mib} MiB from the page cache, median of {runs} runs, {os.cpu_count()} cores")
        print(f"| what | seconds | GiB/s | × b3sum's speed |")
        print(f"|---|---|---|---|")
        for name, times in results.items():
            t = statistics.median(times)
            print(f"| {name} | {t:.3f} | {gib / t:.2f} | {base / t:.2f} |")


if __name__ == "__main__":
    main()
