"""A 64 MiB file copied to N nodes: flat against through one and two gateways.

    sudo .venv/bin/python bench/bench_tree_copy.py [N] [ROUNDS] [MIB]   (defaults: 8 3 64)

Builds the namespace network of tests/netns.py (root needed): gateways ``gw1`` and
``gw2`` on one switch with N nodes, a real sshd in every namespace, and lets the admin
reach the nodes directly too (``allow_direct``: gw1 forwards in the kernel, no gateway
process involved). Each node gets a private tmpfs at the destination (mounted in the
mount namespace of its sshd), so every node really writes its own copy and the bench
checks each one's SHA-256 after every run. Then, each run in a fresh process, rounds
interleaved (flat, tree-1, tree-2, flat, ...):

* ``flat``: ``Task.copy`` with no topology: the admin runs ``ssh node RECEIVER`` on every
  node and writes the file to each (N streams leave the admin);
* ``tree-1``: ``Task.copy`` with ``admin: gw1`` / ``gw1: node[1-N]``: one stream to gw1
  (bootstrapped over ssh with nothing installed, included in the time), which spools
  and writes it to its N nodes as it comes;
* ``tree-2``: the nodes split between gw1 and gw2: one stream to each gateway.

Columns: wall seconds (median and range over the rounds), the admin's CPU seconds (itself
and its children, the ssh clients), the admin's peak resident memory (itself), the
gateways' (the largest Python process in a gateway namespace, sampled every 0.1 s: the
memory bound of the spool) and the ratio of the median wall time to flat's. Everything
(admin, gateways, sshds, receivers) shares this machine's cores, so wall time measures
the whole system, not the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

MODES = ("flat", "tree-1", "tree-2")


def topology(mode: str, n: int) -> str:
    if mode == "tree-1":
        return f"admin: gw1\ngw1: node[1-{n}]\n"
    half = n // 2
    return f"admin: gw[1-2]\ngw1: node[1-{half}]\ngw2: node[{half + 1}-{n}]\n"


def child(mode: str, config: str, n: int, source: str, dest: str) -> dict:
    """One copy, in this fresh process: its wall time and the admin's CPU."""
    from easycluster.cluster.task import Task

    task = Task()
    task.set_info("ssh_options", f"-F {config}")
    if mode != "flat":
        task.load_topology(topology(mode, n))
    start = time.perf_counter()
    worker = task.copy(source, dest, nodes=f"node[1-{n}]")
    task.resume()
    wall = time.perf_counter() - start
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    bad = {k: task.node_error(k).decode() for s, keys in task.iter_status()
           for k in keys if s != "hup" or task.node_retcode(k)}  # fmt: skip
    return {
        "mode": mode,
        "backend": worker.backend.name,
        "wall": wall,
        "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        "rss_mb": me.ru_maxrss / 1024,
        "failed": bad,
    }


def sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def gateway_rss(namespaces: List[str], stop: threading.Event, peak: List[float]) -> None:
    """Sample the resident memory of the Python processes in ``namespaces`` until
    ``stop``; the largest seen goes to ``peak[0]`` (MB)."""
    while not stop.wait(0.1):
        for ns in namespaces:
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in out.stdout.split():
                try:
                    with open(f"/proc/{pid}/status") as f:
                        status = dict(line.split(":", 1) for line in f if ":" in line)
                except OSError:
                    continue
                if status.get("Name", "").strip().startswith("python"):
                    rss = int(status.get("VmRSS", "0 kB").split()[0]) / 1024
                    peak[0] = max(peak[0], rss)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, config, n, source, dest = sys.argv[2:7]
        print(json.dumps(child(mode, config, int(n), source, dest)))
        return 0
    from netns import build_network, netns_missing

    why = netns_missing()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    mib = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    nodes = [f"node{i}" for i in range(1, n + 1)]
    rows: Dict[str, List[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "payload.bin")
        with open(source, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
        want = sha(source)
        dest = os.path.join(tmp, "dest")
        os.makedirs(dest)
        with build_network(os.path.join(tmp, "net"), [(["gw1", "gw2"], nodes)]) as net:
            net.allow_direct()
            pids = {node: net.nodes[node].sshd.pid for node in nodes}
            for pid in pids.values():  # (a private tmpfs per node at ``dest``)
                subprocess.run(["nsenter", "-t", str(pid), "-m", "mount", "-t", "tmpfs",
                                "-o", f"size={2 * mib + 16}m", "ectest", dest],
                               check=True, timeout=30)  # fmt: skip
            for r in range(rounds):
                for mode in MODES:
                    peak = [0.0]
                    stop = threading.Event()
                    spaces = [net.gateways[g].netns for g in ("gw1", "gw2")]
                    sampler = threading.Thread(target=gateway_rss, args=(spaces, stop, peak))
                    sampler.start()
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", mode, net.config, str(n),
                         source, dest],
                        capture_output=True, text=True, timeout=1800,
                    )  # fmt: skip
                    stop.set()
                    sampler.join()
                    if out.returncode:
                        print(out.stderr, file=sys.stderr)
                        return 1
                    row = json.loads(out.stdout)
                    row["gw_rss_mb"] = peak[0]
                    for node, pid in pids.items():
                        got = f"/proc/{pid}/root{dest}/payload.bin"
                        if sha(got) != want:
                            row["failed"][node] = "checksum differs"
                        os.unlink(got)
                    if row["failed"]:
                        print(f"{mode}: failed: {row['failed']}", file=sys.stderr)
                        return 1
                    rows[mode].append(row)
                    print(f"round {r + 1} {mode:<6} {row['wall']:6.2f} s", file=sys.stderr)
    flat = statistics.median(r["wall"] for r in rows["flat"])
    print(f"{mib} MiB to N = {n} nodes, {rounds} rounds interleaved (every copy checked)")
    print("| mode | wall s median | wall s range | admin CPU s | admin RSS MB | gateway RSS MB"
          " | vs flat |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for mode in MODES:
        walls = [r["wall"] for r in rows[mode]]
        cpu = statistics.median(r["cpu"] for r in rows[mode])
        med = statistics.median(walls)
        rss = max(r["rss_mb"] for r in rows[mode])
        gw = max(r["gw_rss_mb"] for r in rows[mode])
        gw_text = f"{gw:.0f}" if mode != "flat" else "-"
        print(f"| {mode} | {med:.2f} | {min(walls):.2f}-{max(walls):.2f} | {cpu:.2f} |"
              f" {rss:.0f} | {gw_text} | {med / flat:.2f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
