#!/usr/bin/env python3
"""Pouch's first upload of `bench/new_device_s3.py --full`'s corpus to moto,
alone, with the page cache emptied (as root), printing when each progress
line came: the scan is everything before "uploading N (...)". WRAP runs
pouch under another command, e.g. a profiler.

Usage: [POUCH_BIN=path] [WRAP="perf record -g -o perf.data"] bench/profile_upload.py
Then, with WRAP as above: perf report -i perf.data --no-children --sort sym
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import new_device_s3 as nd  # noqa: E402
import s3_vs_rclone as base  # noqa: E402


def main():
    pouch = os.environ.get("POUCH_BIN", os.path.join(base.ROOT, "target/release/pouch"))
    if "POUCH_BIN" not in os.environ:
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pouch"], cwd=base.ROOT)
    wrap = os.environ.get("WRAP", "").split()
    work = tempfile.mkdtemp(prefix="pouch-profile-upload-")
    moto = base.Moto(work)
    try:
        src = os.path.join(work, "corpus")
        nd.make_corpus(src, True)
        moto.bucket("pouch-p")
        config = os.path.join(work, "p.toml")
        subprocess.check_call([pouch, "--config", config, "init", "--root", src, "--backend", "s3",
                               "--bucket", "pouch-p", "--endpoint", moto.endpoint],
                              env=base.env_with_keys(), stdout=subprocess.DEVNULL)
        nd.settle(False)
        start = time.perf_counter()
        proc = subprocess.Popen(wrap + [pouch, "--config", config, "sync", "--json"],
                                env=base.env_with_keys(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            print(f"{time.perf_counter() - start:7.2f} s  {line.rstrip()}")
        if proc.wait() != 0:
            sys.exit("pouch sync failed")
        print(f"{time.perf_counter() - start:7.2f} s  done")
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
