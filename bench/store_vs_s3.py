#!/usr/bin/env python3
"""Put and get throughput and p50/p99 latency of a `pouch-store` server beside
moto's S3 server, both on 127.0.0.1, driven by the same single-threaded Python
client in one run, for 4 KiB, 64 KiB and 1 MiB blocks.

Usage: bench/store_vs_s3.py            (installs its Python packages with pip)

pouch-store: `POST /v1/{ns}/blocks` (verified, fsynced, indexed before the
answer) and `GET /v1/{ns}/blocks/{id}` (re-hashed before it is sent).
S3: moto's PutObject / GetObject (in memory, no fsync, no verification).
moto is single-threaded Python: this compares against the test server on this
machine, not against Amazon S3.
"""

import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token-0123456789abcdef"
SHAPES = [("4 KiB", 4 << 10, 400), ("64 KiB", 64 << 10, 300), ("1 MiB", 1 << 20, 100)]


def ensure_packages():
    try:
        import blake3, boto3, requests, moto  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                               "moto[server]", "boto3", "requests", "blake3"])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url):
    import requests
    for _ in range(200):
        try:
            requests.get(url, timeout=1)
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"server at {url} never answered")


def start_pouch_store(data):
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pouch-backend-own",
                           "--bin", "pouch-store"], cwd=ROOT)
    env = dict(os.environ, POUCH_STORE_TOKEN=TOKEN, POUCH_STORE_LOG="warn")
    proc = subprocess.Popen([os.path.join(ROOT, "target/release/pouch-store"), "serve",
                             "--data", data, "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, env=env, text=True)
    line = proc.stdout.readline().strip()
    addr = line.rsplit(" ", 1)[-1]
    return proc, f"http://{addr}"


def start_moto():
    port = free_port()
    env = dict(os.environ)
    for var in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_for(url)
    return proc, url


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def measure(fn, items):
    lat = []
    start = time.perf_counter()
    for item in items:
        t = time.perf_counter()
        fn(item)
        lat.append(time.perf_counter() - t)
    return time.perf_counter() - start, lat


def main():
    ensure_packages()
    import blake3
    import boto3
    import requests

    for var in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(var, None)
    work = tempfile.mkdtemp(prefix="pouch-bench-", dir=os.path.join(ROOT, "target"))
    store_proc, store_url = start_pouch_store(os.path.join(work, "data"))
    moto_proc, moto_url = start_moto()
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        s3.create_bucket(Bucket="bench")
        base = f"{store_url}/v1/default"

        def store_put(block):
            digest, data = block
            body = digest + bytes([0]) + struct.pack("<I", len(data)) + data
            r = session.post(f"{base}/blocks", data=body)
            r.raise_for_status()

        def store_get(block):
            r = session.get(f"{base}/blocks/{block[0].hex()}")
            r.raise_for_status()
            assert len(r.content) == len(block[1])

        def s3_put(block):
            s3.put_object(Bucket="bench", Key=block[0].hex(), Body=block[1])

        def s3_get(block):
            body = s3.get_object(Bucket="bench", Key=block[0].hex())["Body"].read()
            assert len(body) == len(block[1])

        print(f"{'blocks':>8} {'op':>4} {'server':>12} {'MiB/s':>9} {'p50 ms':>8} {'p99 ms':>8}  pouch/S3 throughput")
        for label, size, count in SHAPES:
            blocks = []
            for _ in range(count):
                data = os.urandom(size)
                blocks.append((blake3.blake3(data).digest(), data))
            for op, (store_fn, s3_fn) in (("put", (store_put, s3_put)), ("get", (store_get, s3_get))):
                rows = []
                for name, fn in (("pouch-store", store_fn), ("moto S3", s3_fn)):
                    total, lat = measure(fn, blocks)
                    mib_s = count * size / total / (1 << 20)
                    rows.append((name, mib_s, percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3))
                ratio = rows[0][1] / rows[1][1]
                for i, (name, mib_s, p50, p99) in enumerate(rows):
                    extra = f"  {ratio:.2f}x" if i == 0 else ""
                    print(f"{label:>8} {op:>4} {name:>12} {mib_s:9.1f} {p50:8.2f} {p99:8.2f}{extra}")
    finally:
        store_proc.terminate()
        moto_proc.terminate()
        store_proc.wait()
        moto_proc.wait()
        subprocess.call(["rm", "-rf", work])


if __name__ == "__main__":
    main()
