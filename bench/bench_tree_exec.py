"""Per-item cost of ``ClusterExecutor`` through a gateway against flat, on one network.

    sudo .venv/bin/python bench/bench_tree_exec.py [ROUNDS]       (default 3)

Builds the namespace network of tests/netns.py (root needed): one gateway ``gw1`` and
four nodes behind it, a real sshd in each, and lets the admin reach the nodes directly
too (``allow_direct``: the gateway forwards packets in the kernel). Then, alternating
flat and tree (A/B/A/B) in one process, each mode with a fresh executor that is warmed
first (every node connected, functions registered):

* ``latency``: one ``submit(f).result()`` at a time, 200 times (a round trip per item);
* ``pipelined``: ``map(f, range(2000), chunksize=1)`` (one call per item, the runners
  keep several in flight);
* ``chunked``: ``map(f, range(20000))`` (the default chunks).

Prints the median and range of microseconds per item for each. The machine's two
cores carry the admin, the gateway, four sshds and four servers: compare the ratios.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

TOPOLOGY = "admin: gw1\ngw1: node[1-4]\n"


def _square() -> Callable[[int], int]:
    def square(x: int) -> int:
        return x * x

    return square


square = _square()


def measure(ex, what: str) -> Tuple[float, float]:
    """Microseconds per item of one measurement on a warm executor: wall, and the CPU
    of this process (the admin: all its threads)."""
    c = time.process_time()
    if what == "latency":
        n = 200
        t = time.perf_counter()
        for i in range(n):
            ex.submit(square, i).result()
    elif what == "pipelined":
        n = 2000
        t = time.perf_counter()
        list(ex.map(square, range(n), chunksize=1))
    else:
        n = 20000
        t = time.perf_counter()
        list(ex.map(square, range(n)))
    return (time.perf_counter() - t) / n * 1e6, (time.process_time() - c) / n * 1e6


def main() -> None:
    from netns import build_network, require_netns

    from easycluster.cluster.executor import ClusterExecutor

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    require_netns()
    kinds = ("latency", "pipelined", "chunked")
    got: Dict[str, List[Tuple[float, float]]] = {
        f"{m} {k}": [] for m in ("flat", "tree") for k in kinds
    }
    hosts = [(["gw1"], ["node1", "node2", "node3", "node4"])]
    with tempfile.TemporaryDirectory() as tmp, build_network(tmp, hosts) as net:
        net.allow_direct()
        for _ in range(rounds):
            for mode in ("flat", "tree"):
                topo = TOPOLOGY if mode == "tree" else None
                with ClusterExecutor(
                    "node[1-4]", topology=topo, extra_args=["-F", net.config]
                ) as ex:
                    list(ex.map(square, range(400), chunksize=1))  # warm: all connected
                    list(ex.map(square, range(400)))
                    for k in kinds:
                        got[f"{mode} {k}"].append(measure(ex, k))
    print(
        f"| per item, us ({rounds} rounds: median (range)) | flat wall | tree wall | "
        "tree/flat | flat admin CPU | tree admin CPU |"
    )
    print("|---|---|---|---|---|---|")

    def cell(xs: List[float]) -> str:
        digits = 1 if max(xs) < 10 else 0
        return f"{statistics.median(xs):.{digits}f} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"

    for k in kinds:
        fw, fc = zip(*got[f"flat {k}"])
        tw, tc = zip(*got[f"tree {k}"])
        ratio = statistics.median(tw) / statistics.median(fw)
        print(f"| {k} | {cell(fw)} | {cell(tw)} | {ratio:.1f} | {cell(fc)} | {cell(tc)} |")


if __name__ == "__main__":
    main()
