#!/usr/bin/env python3
"""The pouch-store cell beside a single-node pouch-store, same machine, same
run: 1 MiB block put and get throughput and p50/p99 through one front end
(PostgreSQL, eight storage nodes; open volumes on three of them, sealed ones
at 32 MiB and erasure-coded 4 + 2 on six) and through `pouch-store serve
--data`; bytes on the nodes per byte coded; reads with two nodes holding
shards killed (degraded reads); and the repair rate once they are declared
dead (MiB/s of shards rebuilt).

Usage: bench/cell.py [BLOCKS]   (default 200 blocks of 1 MiB; installs its
                                 Python packages with pip; builds
                                 pouch-store in release; needs PostgreSQL:
                                 apt-get install postgresql)

One single-threaded Python client, sequential requests. Everything runs on
this machine's two cores: six nodes, PostgreSQL and the front end share
them, so the cell's figures measure its overheads (three fsynced copies,
the index in PostgreSQL), not a cell's throughput on many machines.
"""

import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import store_vs_s3 as base  # noqa: E402

ROOT = base.ROOT
STORE = os.path.join(ROOT, "target/release/pouch-store")
TOKEN = base.TOKEN
CELL_TOKEN = "bench-cell-token-0123456789"
NODES = 8
VOLUME_MIB = 32


def as_postgres(cmd):
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd


def start_postgres(work):
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        sys.exit("PostgreSQL is missing: apt-get install postgresql")
    pg = bins[-1]
    folder = os.path.join(work, "pg")
    os.makedirs(folder)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(work, "postgres")
    subprocess.check_call(as_postgres([f"{pg}/initdb", "-D", f"{folder}/data", "-U", "pouch",
                                       "--auth=trust", "-E", "UTF8"]), stdout=subprocess.DEVNULL)
    port = base.free_port()
    subprocess.check_call(as_postgres([f"{pg}/pg_ctl", "-D", f"{folder}/data", "-w", "-l",
                                       f"{folder}/log", "-o",
                                       f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
                                       "start"]), stdout=subprocess.DEVNULL)
    stop = as_postgres([f"{pg}/pg_ctl", "-D", f"{folder}/data", "-m", "immediate", "stop"])
    return f"postgres://pouch@127.0.0.1:{port}/postgres", stop


def spawn(args, env):
    proc = subprocess.Popen([STORE] + args, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, POUCH_STORE_LOG="warn", **env))
    line = proc.stdout.readline().strip()
    return proc, line.rsplit(" ", 1)[-1]


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    base.ensure_packages()
    import blake3
    import requests

    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pouch-backend-own",
                           "--bin", "pouch-store"], cwd=ROOT)
    for var in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(var, None)
    work = tempfile.mkdtemp(prefix="pouch-bench-cell-")
    os.chmod(work, 0o755)
    procs = []
    url, stop_pg = start_postgres(work)
    try:
        subprocess.check_call([STORE, "cell", "init", "--db", url], stdout=subprocess.DEVNULL)
        nodes = []
        for i in range(NODES):
            proc, _ = spawn(["node", "--db", url, "--listen", "127.0.0.1:0", "--data",
                             os.path.join(work, f"node-{i}")], {"POUCH_CELL_TOKEN": CELL_TOKEN})
            nodes.append(proc)
            procs.append(proc)
        front, front_addr = spawn(["serve", "--db", url, "--listen", "127.0.0.1:0",
                                   "--volume-mib", str(VOLUME_MIB)],
                                  {"POUCH_CELL_TOKEN": CELL_TOKEN, "POUCH_STORE_TOKEN": TOKEN})
        procs.append(front)
        single, single_addr = spawn(["serve", "--data", os.path.join(work, "single"),
                                     "--listen", "127.0.0.1:0"], {"POUCH_STORE_TOKEN": TOKEN})
        procs.append(single)
        time.sleep(2)  # the nodes' first heartbeats

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        blocks = []
        for _ in range(count):
            data = os.urandom(1 << 20)
            blocks.append((blake3.blake3(data).digest(), data))

        def put(addr):
            def fn(block):
                digest, data = block
                body = digest + bytes([0]) + struct.pack("<I", len(data)) + data
                session.post(f"http://{addr}/v1/default/blocks", data=body).raise_for_status()
            return fn

        def get(addr):
            def fn(block):
                r = session.get(f"http://{addr}/v1/default/blocks/{block[0].hex()}")
                r.raise_for_status()
                assert len(r.content) == len(block[1])
            return fn

        rows = []

        def row(what, fn):
            total, lat = base.measure(fn, blocks)
            rows.append((what, count / total, base.percentile(lat, 0.5) * 1e3,
                         base.percentile(lat, 0.99) * 1e3))

        row("single-node pouch-store, put", put(single_addr))
        row("cell (3 copies, then coded), put", put(front_addr))
        env = dict(os.environ, POUCH_CELL_TOKEN=CELL_TOKEN, POUCH_STORE_LOG="warn")

        def status():
            out = subprocess.check_output([STORE, "cell", "status", "--db", url, "--json"],
                                          env=env, text=True)
            return json.loads(out)

        # The front end's repair pass codes the sealed volumes (every 5 s).
        deadline = time.time() + 300
        while status()["volumes_sealed"] > 0:
            if time.time() > deadline:
                sys.exit(f"the sealed volumes were never coded: {status()}")
            time.sleep(1)
        now = status()

        def on_disk(folder):
            return sum(os.path.getsize(p) for i in range(NODES)
                       for p in glob.glob(os.path.join(work, f"node-{i}", folder, "*")))
        open_bytes = on_disk("volumes") / 3
        coded_bytes = now["logical_bytes"] - open_bytes
        shard_bytes = on_disk("shards")

        row("single-node pouch-store, get", get(single_addr))
        row("cell, get (coded volumes: from a data shard)", get(front_addr))
        # Two nodes holding shards die: blocks whose data shard was there
        # are rebuilt from four others.
        holding = [i for i in range(NODES)
                   if glob.glob(os.path.join(work, f"node-{i}", "shards", "*"))]
        for i in holding[:2]:
            nodes[i].kill()
            nodes[i].wait()
        row("cell, get with two shard holders killed", get(front_addr))

        time.sleep(3)  # past the repair's node timeout below
        while True:
            start = time.perf_counter()
            out = subprocess.check_output([STORE, "cell", "repair", "--db", url,
                                           "--node-timeout", "2"], env=env, text=True)
            seconds = time.perf_counter() - start
            if out.startswith("{"):
                break
            time.sleep(0.5)  # the front end's own pass held the lease
        report = json.loads(out)
        rebuilt = report["shard_bytes_rebuilt"] + report["bytes_copied"]

        print(f"{count} blocks of 1 MiB, one sequential client, {NODES} nodes, "
              f"volumes sealed at {VOLUME_MIB} MiB")
        print(f"{'what':48} {'MiB/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
        for what, mib_s, p50, p99 in rows:
            print(f"{what:48} {mib_s:8.1f} {p50:8.2f} {p99:8.2f}")
        print(f"coded volumes: {now['volumes_coded']}, {coded_bytes / (1 << 20):.1f} MiB "
              f"in {shard_bytes / (1 << 20):.1f} MiB of shards: "
              f"{shard_bytes / max(coded_bytes, 1):.3f}x on disk")
        print(f"all volumes: {now['stored_bytes'] / max(now['logical_bytes'], 1):.3f}x on disk "
              f"(the open volume has three copies)")
        print(f"repair: {report['shards_rebuilt']} shards, {rebuilt / (1 << 20):.1f} MiB rebuilt "
              f"in {seconds:.2f} s ({rebuilt / (1 << 20) / seconds:.1f} MiB/s)")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        subprocess.call(stop_pg, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
