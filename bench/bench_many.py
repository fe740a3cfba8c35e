"""Many servers and threads: one command, one table, the raw-socket floor in the same run.

    .venv/bin/python bench/bench_many.py [--quick] [--big N] [--awake]

Rows: the floor (raw TCP ping-pong, as in bench/run.py); one call on each of 50 local
servers, collected (p50 per round); the same round over N forked stdlib
``multiprocessing.connection`` echo servers (no authentication: the floor for the round
below, measured the same way); starting N (default 500) local servers, one round
over them (and per server, with the CPU per call of all processes and of the master),
the master's memory per connection and the time to close each client (and the master's
CPU per close); ThreadedClient small-call p50; aggregate calls/s with 8 threads on one
ThreadedClient. ``--awake`` holds the CPUs busy, as in bench/run.py.
"""

from __future__ import annotations

import concurrent.futures
import gc
import os
import sys
import threading
import time
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bench_shell import machine_busy  # noqa: E402  (/proc/stat: all processes' CPU)
from run import awake_cpus, floor_tcp, percentiles, print_table  # noqa: E402

import easycluster  # noqa: E402
from easycluster import ThreadedClient, call_multi  # noqa: E402
from easycluster.server import spawn_local  # noqa: E402

easycluster.define_common("""
def add(a, b):
    return a + b
""")

QUICK = "--quick" in sys.argv
BIG = int(sys.argv[sys.argv.index("--big") + 1]) if "--big" in sys.argv else (100 if QUICK else 500)


def start(n: int) -> List[easycluster.Client]:
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        return list(ex.map(lambda _: spawn_local(), range(n)))


def rounds(clients: List[easycluster.Client], n: int) -> List[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        got = call_multi(clients, "add", 1, 2)
        out.append(time.perf_counter() - t)
        assert got == [3] * len(clients)
    return out


def stdlib_round(n: int) -> tuple:
    """The floor for the big round: ``n`` forked processes, each answering ``(a, b)``
    with ``a + b`` over ``multiprocessing.connection`` (pickle, no authentication), sent
    to all then collected in order, as ``call_multi`` does. Returns (round p50 seconds,
    CPU per call of all processes, of this process). Run before any thread starts (it
    forks)."""
    from multiprocessing.connection import Pipe

    conns, pids = [], []
    for _ in range(n):
        mine, theirs = Pipe()
        pid = os.fork()
        if pid == 0:  # (only its own end open: the master's close ends it)
            keep = theirs.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, 1 << 16)
            try:
                while True:
                    a, b = theirs.recv()
                    theirs.send(a + b)
            except (EOFError, OSError):
                os._exit(0)
        theirs.close()
        conns.append(mine)
        pids.append(pid)

    def one_round() -> float:
        t = time.perf_counter()
        for c in conns:
            c.send((1, 2))
        assert [c.recv() for c in conns] == [3] * n
        return time.perf_counter() - t

    for _ in range(10):
        one_round()
    busy0, own0 = machine_busy(), own_cpu()
    timed = [one_round() for _ in range(20)]
    busy, own = machine_busy() - busy0, own_cpu() - own0
    for c in conns:
        c.close()
    for pid in pids:
        os.waitpid(pid, 0)
    calls = n * len(timed)
    return percentiles(timed)[0], busy / calls, own / calls


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def master_rss() -> int:
    """This process's resident memory in bytes (Linux: /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    with awake_cpus("--awake" in sys.argv):
        rows = measure()
    print_table(rows)
    return 0


def measure() -> List[tuple]:
    rows = []
    floor = percentiles(floor_tcp(2000 if QUICK else 10000))[0]
    rows.append(("floor: raw TCP ping-pong p50", f"{floor * 1e6:.1f} us", ""))
    base, base_busy, base_own = stdlib_round(BIG)  # (first: it forks, no thread runs yet)
    fifty = start(50)
    rounds(fifty, 20)
    p50 = percentiles(rounds(fifty, 100 if QUICK else 500))[0]
    rows.append(
        ("one call on each of 50 servers, p50 per round", f"{p50 * 1e3:.2f} ms", "<= 1.5 ms")
    )
    for c in fifty:
        c.close()

    gc.collect()
    rss0 = master_rss()
    t = time.perf_counter()
    many = start(BIG)
    took = time.perf_counter() - t
    rows.append((f"start {BIG} local servers", f"{took:.1f} s", ""))
    # spawn_local returns before its server is up (the start moves into the first
    # calls: forks, first touches of each child's pages): warm up to steady state
    first = rounds(many, 1)[0]
    rows.append(("  first round (servers finish starting)", f"{first * 1e3:.0f} ms", ""))
    rounds(many, 9)
    busy0, own0 = machine_busy(), own_cpu()
    timed = rounds(many, 20)
    busy, own = machine_busy() - busy0, own_cpu() - own0
    rp50 = percentiles(timed)[0]
    rows.append((f"one call on each of {BIG} servers, p50 per round", f"{rp50 * 1e3:.1f} ms", ""))
    rows.append(
        (f"  the same, per server ({BIG})", f"{rp50 / BIG * 1e6:.1f} us", "<= 20 us (16 cores)")
    )
    calls = BIG * len(timed)
    rows.append(
        (
            "  CPU per call: all processes / the master",
            f"{busy / calls * 1e6:.0f} / {own / calls * 1e6:.0f} us",
            "",
        )
    )
    rows.append(
        (
            f"  floor: stdlib mp.connection, {BIG} forked servers",
            f"{base / BIG * 1e6:.1f} us",
            f"ours {rp50 / base:.2f}x",
        )
    )
    rows.append(
        (
            "  floor's CPU per call: all processes / the master",
            f"{base_busy * 1e6:.0f} / {base_own * 1e6:.0f} us",
            f"ours {busy / calls / base_busy:.2f}x / {own / calls / base_own:.2f}x",
        )
    )
    gc.collect()
    per_conn = (master_rss() - rss0) / BIG
    rows.append((f"master RSS per connection ({BIG})", f"{per_conn / 1024:.1f} KB", "<= 50 KB"))
    t, own0 = time.perf_counter(), own_cpu()
    for c in many:
        c.close()
    per_close = (time.perf_counter() - t) / BIG
    own = own_cpu() - own0
    rows.append(
        (f"close, per client ({BIG}, one by one)", f"{per_close * 1e3:.2f} ms", "<= 0.5 ms")
    )
    # (the wall time above includes the servers' own exits, which share the master's
    # cores here; on a machine with a core per few servers, the master's CPU is the cost)
    rows.append(("  the master's CPU per close", f"{own / BIG * 1e3:.2f} ms", ""))

    tc = spawn_local(ThreadedClient)
    for _ in range(500):
        tc.add(1, 2)
    samples = []
    for _ in range(2000 if QUICK else 10000):
        t = time.perf_counter()
        tc.add(1, 2)
        samples.append(time.perf_counter() - t)
    tp50, tp99 = percentiles(samples)
    rows.append(
        (
            "ThreadedClient small call p50 / p99",
            f"{tp50 * 1e6:.1f} / {tp99 * 1e6:.1f} us",
            f"{tp50 / floor:.2f}x floor",
        )
    )
    per_thread = 500 if QUICK else 2500

    def work() -> None:
        for i in range(per_thread):
            tc.add(i, 1)

    ts = [threading.Thread(target=work) for _ in range(8)]
    t = time.perf_counter()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    rate = 8 * per_thread / (time.perf_counter() - t)
    rows.append(("ThreadedClient, 8 threads, aggregate", f"{rate:,.0f} calls/s", ""))
    tc.close()
    return rows


if __name__ == "__main__":
    sys.exit(main())
