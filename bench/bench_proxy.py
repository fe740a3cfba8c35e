"""Proxy benchmark: one command, one table, plain calls measured in the same run.

    .venv/bin/python bench/bench_proxy.py [--quick]

Rows, over TCP to ``easycluster -S`` and over a ``spawn_local`` socketpair:

- a plain remote function call ``bp_add(1, 2)`` and a proxy method call ``obj.add(1, 2)``
  on the same connection, sampled alternately so both see the same machine load; the
  ratio of their p50s (target: at most 1.2x);
- proxy creation plus release: 10,000 server objects made (one call each), every proxy
  dropped at once, until ``object_count()`` is back at its baseline; sequential blocking
  calls, and pipelined non-blocking ones.

The raw TCP ping-pong floor (from ``bench/run.py``) is printed first for scale.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from typing import Any, Callable, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import floor_tcp, percentiles, start_server  # noqa: E402

import easycluster  # noqa: E402
from easycluster.server import spawn_local  # noqa: E402

easycluster.define_common("""
def bp_add(a, b):
    return a + b

class BpObj(ServerObject):
    def __init__(self, val=0):
        self.val = val
    def add(self, a, b):
        return a + b
""")

QUICK = "--quick" in sys.argv
N_CALLS = 2000 if QUICK else 10000
N_OBJECTS = 10000


def alternating(
    plain: Callable[[], Any], proxied: Callable[[], Any], n: int
) -> Tuple[List[float], List[float]]:
    """Time ``n`` calls of each, interleaved (after a warm-up)."""
    for _ in range(200):
        plain()
        proxied()
    a: List[float] = []
    b: List[float] = []
    clock = time.perf_counter
    for _ in range(n):
        t = clock()
        plain()
        t1 = clock()
        proxied()
        t2 = clock()
        a.append(t1 - t)
        b.append(t2 - t1)
    return a, b


def create_release(rmt: easycluster.Client, n: int, pipelined: bool) -> float:
    """Objects per second: make ``n`` (one call each), drop them, wait for the server."""
    root = rmt.get_root()
    gc.collect()
    base = root.object_count()
    t = time.perf_counter()
    if pipelined:
        rs = [rmt.BpObj(i, nonblocking=True) for i in range(n)]
        for r in rs:
            r.wait()
        del rs, r  # the responses hold the proxies
    else:
        for i in range(n):
            rmt.BpObj(i)  # dropped at once
    deadline = time.monotonic() + 60
    while root.object_count() != base:
        if time.monotonic() > deadline:
            raise AssertionError("the server did not release the objects within 60 s")
        time.sleep(0.005)
    return n / (time.perf_counter() - t)


def measure(
    name: str, rmt: easycluster.Client, rows: List[Tuple[str, str, str, str]], floor: float
) -> None:
    obj = rmt.BpObj()
    if obj.add(1, 2) != 3 or rmt.bp_add(1, 2) != 3:
        raise AssertionError("wrong result")
    plain, proxied = alternating(lambda: rmt.bp_add(1, 2), lambda: obj.add(1, 2), N_CALLS)
    pp50, pp99 = percentiles(plain)
    xp50, xp99 = percentiles(proxied)
    rows.append(
        (
            f"plain call bp_add(1, 2), {name} p50 / p99",
            f"{pp50 * 1e6:.1f} / {pp99 * 1e6:.1f} us",
            f"{pp50 / floor:.2f}x",
            "",
        )
    )
    rows.append(
        (
            f"proxy method obj.add(1, 2), {name} p50 / p99",
            f"{xp50 * 1e6:.1f} / {xp99 * 1e6:.1f} us",
            f"{xp50 / floor:.2f}x",
            "",
        )
    )
    rows.append((f"proxy p50 / plain p50, {name}", f"{xp50 / pp50:.2f}x", "", "<= 1.20x"))
    rate = create_release(rmt, N_OBJECTS, pipelined=False)
    rows.append(
        (
            f"create + release {N_OBJECTS:,} proxies, one by one, {name}",
            f"{rate:,.0f} objects/s",
            "",
            "",
        )
    )
    rate = create_release(rmt, N_OBJECTS, pipelined=True)
    rows.append(
        (
            f"create + release {N_OBJECTS:,} proxies, pipelined, {name}",
            f"{rate:,.0f} objects/s",
            "",
            "",
        )
    )


def main() -> int:
    rows: List[Tuple[str, str, str, str]] = []
    floor = percentiles(floor_tcp(N_CALLS))[0]
    rows.append(("floor: raw TCP ping-pong p50", f"{floor * 1e6:.1f} us", "1.00x", ""))
    with tempfile.TemporaryDirectory() as d:
        keyfile = os.path.join(d, "bench.key")
        easycluster.write_key_file(keyfile)
        proc, port = start_server(keyfile)
        try:
            tcp = easycluster.Client(easycluster.read_key_file(keyfile), "127.0.0.1", port)
            measure("TCP", tcp, rows, floor)
            tcp.close()
            local = spawn_local()
            measure("spawn_local", local, rows, floor)
            local.close()
        finally:
            proc.terminate()
            proc.wait()
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>22}  {'vs floor':>8}  target")
    for name, value, ratio, target in rows:
        print(f"{name:<{width}}  {value:>22}  {ratio:>8}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
