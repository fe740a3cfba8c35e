"""Distributed map against the standard library's pools, and recovery time after a death.

    .venv/bin/python bench/bench_map.py [--quick] [--repeat R] [--chunks 100,1000] [--chunked-only]

One table. Rows:

* ``map`` of N tiny items (N = 100,000; 10,000 with ``--quick``) with 2 workers and the
  same chunk size (100) through ``Cluster.map`` over 2 local servers,
  ``ClusterExecutor(local=2).map``, ``concurrent.futures.ProcessPoolExecutor.map`` and
  ``multiprocessing.Pool.map``: items per second and the ratio to ProcessPoolExecutor.
  With ``--repeat R`` each chunk size in ``--chunks`` (default 100) is measured R
  times, the four runners taking turns round by round (so a busy moment hits them
  all): the median, and the range of the ratio. ``--chunked-only`` stops there. A
  chunked row is the median of 5 runs after one untimed run of the same size (every
  pool at its steady state: a single 100,000-item run lasts about 40 ms, within the
  noise of one pool's start-up).
* The same with no chunksize given (each runner's default: ours and Pool.map pick a
  chunk size from the length, ProcessPoolExecutor sends one item per call), and with
  chunksize 1 (one item per call everywhere): microseconds per item (target <= 100 us).
  ProcessPoolExecutor (and Pool with chunksize 1) run fewer items: they are slow at it.
* Time from a server's death (SIGKILL, and SIGSTOP with a 1 s heartbeat) to its item
  running on the other server (target <= 2 heartbeat intervals).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from easycluster.cluster.executor import ClusterExecutor  # noqa: E402
from easycluster.cluster.session import Cluster  # noqa: E402
from easycluster.server import spawn_local  # noqa: E402

QUICK = "--quick" in sys.argv


def _arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


REPEAT = int(_arg("--repeat", "1"))
CHUNKS = [int(c) for c in _arg("--chunks", "100").split(",")]
RUNS = 5  # timed runs per chunked row (median), after one untimed run of the same size
N = 10_000 if QUICK else 100_000
N_UNCHUNKED_POOL = 2_000 if QUICK else 10_000  # the stdlib pools, one item per message
WORKERS = 2
HEARTBEAT = 1.0


def tiny(x: int) -> int:
    return x + 1


def timed(run: Callable[[], List[int]], n: int, runs: int = 1) -> float:
    """Seconds for one run of ``n`` items, checking the answer; with ``runs`` > 1, one
    untimed run first (every pool at its steady state: threads started, pipelines at
    their depth) and the median of ``runs`` runs."""
    want = [x + 1 for x in range(n)]
    times = []
    for i in range(runs + (runs > 1)):
        t = time.perf_counter()
        got = run()
        took = time.perf_counter() - t
        if got != want:
            raise AssertionError("wrong results")
        if i or runs == 1:
            times.append(took)
    return statistics.median(times)


def map_rates(chunk: Optional[int], n: int, n_pool: int, runs: int = 1) -> List[Tuple[str, float]]:
    """(name, seconds per item) for each runner (``timed`` with ``runs``); ``chunk``
    None: no chunksize given (each runner's default). ProcessPoolExecutor runs
    ``n_pool`` items, and so does Pool.map unless it chunks (its default does)."""
    kw: Dict[str, int] = {} if chunk is None else {"chunksize": chunk}
    n_mp = n if chunk is None or chunk > 1 else n_pool
    out = []
    with Cluster([f"l{i}" for i in range(WORKERS)], client=lambda _: spawn_local()) as c:
        c.map(tiny, range(100), **kw)  # warm up
        out.append(("Cluster.map", timed(lambda: c.map(tiny, range(n), **kw), n, runs) / n))
    with ClusterExecutor(local=WORKERS) as ex:
        list(ex.map(tiny, range(100), **kw))
        took = timed(lambda: list(ex.map(tiny, range(n), **kw)), n, runs)
        out.append(("ClusterExecutor(local=2).map", took / n))
    with concurrent.futures.ProcessPoolExecutor(WORKERS) as ppe:
        list(ppe.map(tiny, range(100), **kw))
        took = timed(lambda: list(ppe.map(tiny, range(n_pool), **kw)), n_pool, runs)
        out.append(("ProcessPoolExecutor.map", took / n_pool))
    with multiprocessing.Pool(WORKERS) as pool:
        pool.map(tiny, range(100), **kw)
        took = timed(lambda: pool.map(tiny, range(n_mp), **kw), n_mp, runs)
        out.append(("multiprocessing.Pool.map", took / n_mp))
    return out


def recovery(sig: int) -> float:
    """Seconds from sending ``sig`` to the server running an item until the item
    starts again on the other server."""
    with tempfile.TemporaryDirectory() as d:

        def job(tag: str) -> int:
            import os
            import time

            with open(os.path.join(d, f"{tag}.{os.getpid()}.{time.monotonic()}"), "w"):
                pass
            time.sleep(0.5)
            return os.getpid()

        with ClusterExecutor(local=2, heartbeat=HEARTBEAT) as ex:
            ex.submit(job, "warm").result(30)
            fut = ex.submit(job, "item")
            while not [n for n in os.listdir(d) if n.startswith("item.")]:
                time.sleep(0.001)
            (first,) = [n for n in os.listdir(d) if n.startswith("item.")]
            pid = int(first.split(".")[1])
            t0 = time.monotonic()
            os.kill(pid, sig)
            try:
                fut.result(60)
            finally:
                if sig == signal.SIGSTOP:  # the executor killed it already; be sure
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            again = [n for n in os.listdir(d) if n.startswith("item.") and n != first]
            return float(again[0].split(".", 2)[2]) - t0


def main() -> int:
    rows: List[Tuple[str, str, str, str]] = []
    for chunk in CHUNKS:
        rounds = [map_rates(chunk, N, N, RUNS) for _ in range(REPEAT)]
        for i, (name, _) in enumerate(rounds[0]):
            pers = [r[i][1] for r in rounds]
            # each round's ratio to that round's ProcessPoolExecutor and Pool.map
            vs_ppe = sorted(dict(r)["ProcessPoolExecutor.map"] / r[i][1] for r in rounds)
            vs_pool = sorted(dict(r)["multiprocessing.Pool.map"] / r[i][1] for r in rounds)
            spread = f" ({vs_ppe[0]:.2f}-{vs_ppe[-1]:.2f})" if REPEAT > 1 else ""
            rows.append(
                (
                    f"{name}, {N:,} items, chunksize {chunk}",
                    f"{1 / statistics.median(pers):,.0f} items/s",
                    f"{statistics.median(vs_ppe):.2f}x{spread}",
                    f"{statistics.median(vs_pool):.2f}x Pool.map; target >= 1x"
                    if "Cluster" in name
                    else "",
                )
            )
    unchunked: List[Tuple[Optional[int], str]] = [(None, "no chunksize given"), (1, "chunksize 1")]
    for size, how in [] if "--chunked-only" in sys.argv else unchunked:
        single = map_rates(size, N, N_UNCHUNKED_POOL)
        base1 = dict(single)["ProcessPoolExecutor.map"]
        for name, per in single:
            chunks = size is None and "ProcessPool" not in name
            items = N if "Cluster" in name or chunks else N_UNCHUNKED_POOL
            rows.append(
                (
                    f"{name}, {items:,} items, {how}",
                    f"{per * 1e6:.2f} us/item",
                    f"{base1 / per:.2f}x",
                    "<= 100 us/item" if "Cluster" in name else "",
                )
            )
    recover = () if "--chunked-only" in sys.argv else ("SIGKILL", "SIGSTOP")
    for name, sig in ((n, getattr(signal, n)) for n in recover):
        took = recovery(sig)
        rows.append(
            (
                f"{name} of a server -> its item running elsewhere (heartbeat {HEARTBEAT:g} s)",
                f"{took * 1e3:.0f} ms",
                f"{took / HEARTBEAT:.2f} hb",
                "<= 2 heartbeats",
            )
        )
    print(f"{WORKERS} workers on {os.cpu_count()} CPUs; ratio: ProcessPoolExecutor's time / this")
    table = [("measure", "value", "ratio", "target"), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
