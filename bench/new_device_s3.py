#!/usr/bin/env python3
"""A new device on S3: Pouch, restic and rclone each upload one corpus to the
same moto S3 server on 127.0.0.1 in one run, then a second, empty device (a
new config, an empty folder) downloads all of it. Requests are counted from
moto's access log.

Usage: bench/new_device_s3.py [--full]   (needs rclone and restic: apt-get
                                          install rclone restic; POUCH_BIN=path
                                          runs another pouch build instead)

Corpus (default): 5,000 files of 1-16 KiB in 300 folders and 20 files of
1-8 MiB (about 130 MB). With --full, the shape of issue 17: 20,000 small files
in 1,200 folders, 50 files of 1-8 MiB and two of 256 MiB (0.9 GiB).

moto is single-threaded Python: the seconds mostly measure requests, not
Amazon S3.
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s3_vs_rclone as base  # noqa: E402


def make_corpus(root, full):
    rng = random.Random(17)
    small, folders = (20_000, 1_200) if full else (5_000, 300)
    for i in range(small):
        d = os.path.join(root, f"d{i % folders:04}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}.txt"), "wb") as f:
            f.write(rng.randbytes(rng.randint(1 << 10, 16 << 10)))
    media = os.path.join(root, "media")
    os.makedirs(media)
    for i in range(50 if full else 20):
        with open(os.path.join(media, f"m{i}.bin"), "wb") as f:
            f.write(rng.randbytes(rng.randint(1 << 20, 8 << 20)))
    if full:
        for i in range(2):
            with open(os.path.join(media, f"big{i}.raw"), "wb") as f:
                for _ in range(256):
                    f.write(rng.randbytes(1 << 20))


def tree_hash(root):
    h = hashlib.blake2b()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                h.update(hashlib.blake2b(f.read()).digest())
    return h.hexdigest()


def pull_pouch(tool, moto, work, dest):
    config = os.path.join(work, "pouch-new-device.toml")
    subprocess.check_call([tool.bin, "--config", config, "init", "--root", dest,
                           "--device", "new-laptop", "--backend", "s3",
                           "--bucket", f"pouch-{tool.tag}", "--endpoint", moto.endpoint],
                          env=base.env_with_keys(), stdout=subprocess.DEVNULL)
    out = subprocess.check_output([tool.bin, "--config", config, "sync", "--json"],
                                  env=base.env_with_keys())
    return json.loads(out)["downloaded"]


def pull_rclone(tool, moto, work, dest):
    subprocess.run(["rclone", "copy", f"B:rclone-{tool.tag}/data", dest], env=tool.env(),
                   capture_output=True, check=True)


def pull_restic(tool, moto, work, dest):
    env = tool.env()
    env["RESTIC_CACHE_DIR"] = os.path.join(work, "restic-cache-new-device")
    out = os.path.join(work, "restic-restore")
    subprocess.run(["restic", "restore", "latest", "--target", out], env=env,
                   capture_output=True, check=True)
    # restic restores the absolute source path under the target.
    return out


def main():
    full = "--full" in sys.argv
    if "POUCH_BIN" not in os.environ:
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pouch"], cwd=base.ROOT)
    for tool in ("rclone", "restic"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install rclone restic")
    work = tempfile.mkdtemp(prefix="pouch-bench-new-device-")
    moto = base.Moto(work)
    rows = []
    try:
        src = os.path.join(work, "corpus")
        make_corpus(src, full)
        expected = tree_hash(src)
        # Inodes an earlier run freed are "recently deleted" for 30 s.
        time.sleep(31)
        for cls, pull in ((base.Pouch, pull_pouch), (base.Rclone, pull_rclone),
                          (base.Restic, pull_restic)):
            tool = cls(moto, work, "n")
            rows.append((cls.name, "first upload", *base.measure(tool, moto, src, True)[:2]))
            dest = os.path.join(work, f"new-{cls.name}")
            os.makedirs(dest)
            before = moto.requests()
            start = time.perf_counter()
            restored = pull(tool, moto, work, dest)
            seconds = time.perf_counter() - start
            rows.append((cls.name, "new device", moto.requests() - before, seconds))
            if cls is base.Restic:
                dest = os.path.join(restored, os.path.relpath(src, "/"))
            got = tree_hash(dest)
            if got != expected:
                sys.exit(f"{cls.name}: the new device's tree differs")
            # Kept until the end: ext4 passes over inodes freed in the last
            # 30 s when it allocates new ones (`recently_deleted`), which
            # would slow down the next tool's download.
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"corpus: {'issue 17 (0.9 GiB)' if full else 'default (about 130 MB)'}")
    print(f"{'tool':8} {'case':13} {'requests':>9} {'seconds':>8}")
    for name, case, requests, seconds in rows:
        print(f"{name:8} {case:13} {requests:9} {seconds:8.2f}")


if __name__ == "__main__":
    main()
