#!/usr/bin/env python3
"""A new device on S3: Pouch, restic and rclone each upload one corpus to the
same moto S3 server on 127.0.0.1 in one run, then a second, empty device (a
new config, an empty folder) downloads all of it. Requests are counted from
moto's access log.

Usage: bench/new_device_s3.py [--full] [--tools pouch,restic] [--repeat N] [--warm]
    (needs rclone and restic: apt-get install rclone restic; POUCH_BIN=path
    runs another pouch build instead; --tools runs only the tools named;
    --repeat downloads N times per tool, each tool first in turn, and
    reports the median: one run's seconds vary by 20 % here)

Before each step, what earlier steps left dirty is written out and (as
root, unless --warm) the page cache is emptied before the first uploads and
the downloads, as on a new device and as for a first upload of files not
read lately; the no-change and edit pushes find it as the step before left
it, as on a device in use.

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
import statistics
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


def largest_file(root):
    files = (os.path.join(d, n) for d, _, names in os.walk(root) for n in names)
    return max(sorted(files), key=os.path.getsize)


def insert_middle(path, data):
    with open(path, "rb") as f:
        whole = f.read()
    middle = len(whole) // 2
    with open(path, "wb") as f:
        f.write(whole[:middle] + data + whole[middle:])


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


def pull_pouch(tool, moto, work, dest, run):
    config = os.path.join(work, f"pouch-new-device-{run}.toml")
    # A new user's two commands, both timed.
    start = time.perf_counter()
    subprocess.check_call([tool.bin, "--config", config, "init", "--root", dest,
                           "--device", f"new-laptop-{run}", "--backend", "s3",
                           "--bucket", f"pouch-{tool.tag}", "--endpoint", moto.endpoint],
                          env=base.env_with_keys(), stdout=subprocess.DEVNULL)
    subprocess.check_call([tool.bin, "--config", config, "sync", "--json"],
                          env=base.env_with_keys(), stdout=subprocess.DEVNULL)
    return dest, start


def pull_rclone(tool, moto, work, dest, run):
    start = time.perf_counter()
    subprocess.run(["rclone", "copy", f"B:rclone-{tool.tag}/data", dest], env=tool.env(),
                   capture_output=True, check=True)
    return dest, start


def pull_restic(tool, moto, work, dest, run):
    env = tool.env()
    # A new device has no cache.
    env["RESTIC_CACHE_DIR"] = os.path.join(work, f"restic-cache-new-device-{run}")
    start = time.perf_counter()
    subprocess.run(["restic", "restore", "latest", "--target", dest], env=env,
                   capture_output=True, check=True)
    # restic restores the absolute source path under the target.
    return dest, start


PULLS = {"pouch": pull_pouch, "rclone": pull_rclone, "restic": pull_restic}


def settle(warm):
    """Writes out what earlier runs left dirty, so that no tool pays for
    another's writeback, and unless `warm` (as root) empties the page
    cache, as on a new device; returns whether it did."""
    subprocess.check_call(["sync"])
    if warm:
        time.sleep(2)
        return False
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        dropped = True
    except OSError:
        dropped = False
    time.sleep(2)
    return dropped


def main():
    full = "--full" in sys.argv
    names = ["pouch", "rclone", "restic"]
    if "--tools" in sys.argv:
        names = sys.argv[sys.argv.index("--tools") + 1].split(",")
    warm = "--warm" in sys.argv
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 1
    if "POUCH_BIN" not in os.environ:
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pouch"], cwd=base.ROOT)
    for tool in ("rclone", "restic"):
        if tool in names and not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install rclone restic")
    classes = {c.name: c for c in (base.Pouch, base.Rclone, base.Restic)}
    work = tempfile.mkdtemp(prefix="pouch-bench-new-device-")
    moto = base.Moto(work)
    uploads, pulls, dropped = [], {name: [] for name in names}, True
    try:
        src = os.path.join(work, "corpus")
        make_corpus(src, full)
        tools = {}
        for name in names:
            tools[name] = classes[name](moto, work, "n")
            dropped &= settle(warm)
            uploads.append((name, "first upload", *base.measure(tools[name], moto, src, True)))
        for name in names:
            settle(True)
            uploads.append((name, "no change", *base.measure(tools[name], moto, src, False)))
        insert_middle(largest_file(src), random.Random(100).randbytes(100))
        for name in names:
            settle(True)
            uploads.append((name, "100 B inserted", *base.measure(tools[name], moto, src, False)))
        expected = tree_hash(src)
        # Inodes freed in the last 30 s are passed over when ext4 makes new
        # ones (`recently_deleted`): nothing is deleted from here on, and
        # every run waits that long after the last deletion.
        time.sleep(31)
        for run in range(repeat):
            # Each tool goes first in turn.
            for name in names[run % len(names):] + names[:run % len(names)]:
                dest = os.path.join(work, f"new-{name}-{run}")
                os.makedirs(dest)
                dropped &= settle(warm)
                before = moto.requests()
                restored, start = PULLS[name](tools[name], moto, work, dest, run)
                seconds = time.perf_counter() - start
                pulls[name].append((moto.requests() - before, seconds))
                if name == "restic":
                    restored = os.path.join(restored, os.path.relpath(src, "/"))
                if tree_hash(restored) != expected:
                    sys.exit(f"{name}: the new device's tree differs")
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"corpus: {'issue 17 (0.9 GiB)' if full else 'default (about 130 MB)'}; "
          f"page cache {'emptied' if dropped else 'NOT emptied (--warm or not root)'} before each step")
    print(f"{'tool':8} {'case':15} {'requests':>9} {'seconds':>8}  {'MiB sent':>9}  runs")
    for name, case, requests, seconds, sent in uploads:
        mib = "" if sent is None else f"{sent / (1 << 20):9.2f}"
        print(f"{name:8} {case:15} {requests:9} {seconds:8.2f}  {mib:>9}")
    for name, runs in pulls.items():
        median = statistics.median(s for _, s in runs)
        each = " ".join(f"{s:.2f}" for _, s in runs)
        print(f"{name:8} {'new device':15} {runs[0][0]:9} {median:8.2f}  {'':9}  {each}")
    if "pouch" in pulls and "restic" in pulls:
        up = {name: seconds for name, case, _, seconds, _ in uploads if case == "first upload"}
        print(f"first upload, pouch / restic: {up['pouch'] / up['restic']:.2f}x")
        ratio = (statistics.median(s for _, s in pulls["pouch"])
                 / statistics.median(s for _, s in pulls["restic"]))
        print(f"new device, pouch / restic (medians): {ratio:.2f}x")


if __name__ == "__main__":
    main()
