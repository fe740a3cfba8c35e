"""Flat against tree for one shell command on N nodes, measured at the admin node.

    sudo .venv/bin/python bench/bench_tree.py [N] [GATEWAYS]     (defaults: 64 and 8)

Builds the namespace network of tests/netns.py (root needed): GATEWAYS gateways with
N/GATEWAYS nodes each, a real sshd in every namespace. Then, each in a fresh process so
the figures are its own:

* flat: the admin runs ``ssh node uname -r`` on every node (the cluster ``Task``, fan-out
  64); for this the gateways forward packets in the kernel (``allow_direct``), no
  gateway process is involved;
* tree: the same ``Task.shell`` with ``Task.load_topology`` (the tree worker): through
  the gateways, each bootstrapped over ssh with nothing installed, running the command
  on its nodes and sending back groomed batches (identical output under one node set,
  at most one batch per 0.25 s per gateway).

Columns: the admin's peak of established ssh connections (sampled from /proc/net/tcp
every 5 ms), its CPU seconds (itself and its children: the ssh clients), its peak
resident memory (itself; and the largest child), wall time, and the distinct output
groups it received. Wall time on this 2-core machine includes every sshd and gateway
sharing the same cores: compare the admin's costs, not wall-clock wins. ``batches`` and
``entries``: what the admin received from the gateways (replies, and output plus end
entries in them), against N nodes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

COMMAND = "uname -r"


def ssh_connections() -> int:
    """Established TCP connections to port 22 in this namespace (all of them are ours:
    the admin holds no others to the test prefix)."""
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[2].endswith(":0016") and parts[3] == "01":
                count += 1
    return count


def measure(mode: str, config: str, nodes: str, topology: str) -> dict:
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], ssh_connections())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    from easycluster.cluster.task import Task

    task = Task()
    task.set_info("fanout", 64)
    task.set_info("ssh_options", f"-F {config}")
    if mode == "tree":
        task.load_topology(topology)
    worker = task.shell(COMMAND, nodes=nodes)
    task.resume()
    groups = len(list(task.iter_buffers()))
    bad = sum(len(k) for s, k in task.iter_status() if s != "hup")
    stats = worker.run.stats.values() if mode == "tree" else []  # type: ignore[attr-defined]
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "mode": mode,
        "connections": peak[0],
        "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        "rss_mb": me.ru_maxrss / 1024,
        "child_rss_mb": kids.ru_maxrss / 1024,
        "wall": wall,
        "groups": groups,
        "not_ok": bad,
        "batches": sum(s[0] for s in stats),
        "entries": sum(s[1] + s[2] for s in stats),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure(*sys.argv[2:6])))
        return 0
    from netns import build_network, netns_missing

    why = netns_missing()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    per = n // k
    groups = [([f"gw{g + 1}"], [f"node{g * per + j + 1}" for j in range(per)]) for g in range(k)]
    topology = f"admin: gw[1-{k}]\n" + "".join(
        f"gw{g + 1}: node[{g * per + 1}-{(g + 1) * per}]\n" for g in range(k)
    )
    nodes = f"node[1-{k * per}]"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with build_network(tmp, groups) as net:
            built = time.perf_counter() - t0
            net.allow_direct()
            rows = []
            for mode in ("flat", "tree", "flat", "tree"):  # second round: warm caches
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, net.config, nodes, topology],
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if out.returncode:
                    print(out.stderr, file=sys.stderr)
                    return 1
                rows.append(json.loads(out.stdout))
    print(f"N = {k * per} nodes behind {k} gateways (network built in {built:.1f} s)")
    head = "mode  ssh conns  CPU s  RSS MB  child RSS MB  wall s  groups  not ok  batches  entries"
    print(head)
    for r in rows:
        print(
            f"{r['mode']:<5} {r['connections']:>9} {r['cpu']:>6.2f} {r['rss_mb']:>7.1f}"
            f" {r['child_rss_mb']:>13.1f} {r['wall']:>7.2f} {r['groups']:>7} {r['not_ok']:>7}"
            f" {r['batches']:>8} {r['entries']:>8}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
