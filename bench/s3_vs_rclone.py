#!/usr/bin/env python3
"""Pouch's S3 backend beside rclone and restic, pushing the same folders to one
moto S3 server on 127.0.0.1 in one run: requests sent, seconds, and bytes
sent for an edit.

Usage: bench/s3_vs_rclone.py     (needs rclone and restic: apt-get install rclone restic;
                                  installs moto[server] with pip when missing)

Cases:
  small   2,000 files of 1.5 KiB in 40 folders, first upload
  large   one 64 MiB file, first upload
  edit    100 bytes inserted in the middle of that 64 MiB file, upload again

Requests are counted from moto's access log (one line per request). moto is
single-threaded Python, so seconds here mostly measure requests; they are not
a measure of Amazon S3.
"""

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY, SECRET = "bench", "bench-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def moto_binary():
    venv = os.path.join(ROOT, "target/test-venv/bin/moto_server")
    if os.path.exists(venv):
        return venv
    if shutil.which("moto_server"):
        return "moto_server"
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "moto[server]"])
    return "moto_server"


class Moto:
    def __init__(self, workdir):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(workdir, "moto.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([moto_binary(), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=self.log)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                break
            except Exception:
                time.sleep(0.1)

    def requests(self):
        with open(self.log_path) as f:
            return sum(1 for line in f if re.search(r'" \d{3} ', line))

    def bucket(self, name):
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{name}", method="PUT"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def noise(rng, n):
    return rng.randbytes(n)


def make_small(root, rng):
    for i in range(2000):
        d = os.path.join(root, f"m{i % 40}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}.txt"), "wb") as f:
            f.write(noise(rng, 1536))


def env_with_keys():
    env = dict(os.environ)
    # rclone and restic refuse to start over a custom CA bundle with a plain
    # HTTP endpoint; the server here is local and plain HTTP.
    env.pop("AWS_CA_BUNDLE", None)
    env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, POUCH_LOG="warn")
    # The machine's list of synced folders is the benchmark's own.
    env["XDG_CONFIG_HOME"] = os.path.join(tempfile.gettempdir(), f"pouch-bench-{os.getpid()}")
    return env


class Pouch:
    name = "pouch"

    def __init__(self, moto, work, tag):
        # POUCH_BIN: another build to compare, e.g. an older commit's.
        self.bin = os.environ.get("POUCH_BIN", os.path.join(ROOT, "target/release/pouch"))
        self.config = os.path.join(work, f"pouch-{tag}.toml")
        self.moto, self.tag = moto, tag

    def setup(self, src):
        self.moto.bucket(f"pouch-{self.tag}")
        subprocess.check_call([self.bin, "--config", self.config, "init", "--root", src,
                               "--backend", "s3", "--bucket", f"pouch-{self.tag}",
                               "--endpoint", self.moto.endpoint], env=env_with_keys(),
                              stdout=subprocess.DEVNULL)

    def push(self, src):
        out = subprocess.check_output([self.bin, "--config", self.config, "sync", "--json"],
                                      env=env_with_keys())
        return json.loads(out)["bytes_uploaded"]


class Rclone:
    name = "rclone"

    def __init__(self, moto, work, tag):
        self.moto, self.tag = moto, tag

    def env(self):
        env = env_with_keys()
        env.update(RCLONE_CONFIG_B_TYPE="s3", RCLONE_CONFIG_B_PROVIDER="Other",
                   RCLONE_CONFIG_B_ENDPOINT=self.moto.endpoint,
                   RCLONE_CONFIG_B_ACCESS_KEY_ID=KEY, RCLONE_CONFIG_B_SECRET_ACCESS_KEY=SECRET,
                   RCLONE_CONFIG_B_FORCE_PATH_STYLE="true")
        return env

    def setup(self, src):
        self.moto.bucket(f"rclone-{self.tag}")

    def push(self, src):
        out = subprocess.run(["rclone", "sync", src, f"B:rclone-{self.tag}/data", "--stats-one-line",
                              "-v", "--stats", "1h"], env=self.env(), capture_output=True, text=True,
                             check=True)
        # The one-line summary: "INFO  :     2.861 MiB / 2.861 MiB, 100%, ...".
        sent = re.findall(r":\s+([\d.]+) (\w+) / [\d.]+ \w+, \d+%", out.stderr)
        if not sent:
            return None
        value, unit = sent[-1]
        scale = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "Byte": 1, "Bytes": 1}
        return int(float(value) * scale.get(unit, 1))


class Restic:
    name = "restic"

    def __init__(self, moto, work, tag):
        self.moto, self.tag = moto, tag
        self.cache = os.path.join(work, f"restic-cache-{tag}")

    def env(self):
        env = env_with_keys()
        env.update(RESTIC_REPOSITORY=f"s3:{self.moto.endpoint}/restic-{self.tag}",
                   RESTIC_PASSWORD="bench", RESTIC_CACHE_DIR=self.cache)
        return env

    def setup(self, src):
        self.moto.bucket(f"restic-{self.tag}")
        subprocess.check_call(["restic", "init"], env=self.env(), stdout=subprocess.DEVNULL)

    def push(self, src):
        out = subprocess.run(["restic", "backup", "--json", src], env=self.env(),
                             capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            msg = json.loads(line)
            if msg.get("message_type") == "summary":
                return msg.get("data_added")
        return None


def measure(tool, moto, src, setup):
    if setup:
        tool.setup(src)
    before = moto.requests()
    start = time.perf_counter()
    sent = tool.push(src)
    seconds = time.perf_counter() - start
    return moto.requests() - before, seconds, sent


def main():
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pouch"], cwd=ROOT)
    for tool in ("rclone", "restic"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install rclone restic")
    rng = random.Random(2026)
    work = tempfile.mkdtemp(prefix="pouch-bench-s3-")
    moto = Moto(work)
    rows = []
    try:
        for cls in (Pouch, Rclone, Restic):
            small = os.path.join(work, f"small-{cls.name}")
            make_small(small, random.Random(1))
            rows.append((cls.name, "small", *measure(cls(moto, work, "s"), moto, small, True)))

            big_dir = os.path.join(work, f"large-{cls.name}")
            os.makedirs(big_dir)
            data = bytearray(random.Random(2).randbytes(64 << 20))
            with open(os.path.join(big_dir, "video.raw"), "wb") as f:
                f.write(data)
            tool = cls(moto, work, "l")
            rows.append((cls.name, "large", *measure(tool, moto, big_dir, True)))
            data[32 << 20:32 << 20] = rng.randbytes(100)
            with open(os.path.join(big_dir, "video.raw"), "wb") as f:
                f.write(data)
            rows.append((cls.name, "edit", *measure(tool, moto, big_dir, False)))
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'tool':8} {'case':6} {'requests':>9} {'seconds':>8} {'bytes sent':>12}")
    for name, case, requests, seconds, sent in rows:
        shown = "-" if sent is None else f"{sent:,}"
        print(f"{name:8} {case:6} {requests:9} {seconds:8.2f} {shown:>12}")


if __name__ == "__main__":
    main()
