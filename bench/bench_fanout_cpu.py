"""Where a fan-out's CPU goes: one call on each of N servers, by how the servers came to be.

    .venv/bin/python bench/bench_fanout_cpu.py [--quick] [--servers N] [--rounds R]

The side-by-side harness's S5 (one call on each of 50 servers, ten rounds) starts 50
separate ``easycluster -S`` processes; on this 2-core machine they take turns on the
CPUs, and what a call costs depends on how much of its process's interpreter state is
still in the caches. This bench runs the same rounds (``add(i, 1)`` on every server,
all sent, then all collected) over N servers of each kind, in one sitting, and reports
S5's own measure on the fresh servers (one round, then the median of the next ten: a
fresh server's first calls run CPython's generic bytecode unless it was forked from a
process that rehearsed them, ``remote/rehearsal.py``), then, after 20 more rounds, per
call the whole machine's busy CPU (``/proc/stat``: every process, the kernel's network
work included) and the round's median:

* the floor: N separately started stdlib ``multiprocessing.connection`` servers (no
  authentication, one ``recv``/``send`` each; started as S5 starts the stdlib baseline);
* N ``easycluster -S`` servers, each its own process (S5 over TCP);
* N connections to one ``easycluster -S`` (N forks of one listener);
* N ``spawn_local()`` servers (forks of one zygote);
* N ``spawn_local(fresh_interpreter=True)`` servers (N separate interpreters).

Every kind is resident for the whole run, so each is measured with the same number of
processes around. Ratios are against the floor measured in the same run.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bench_shell import machine_busy  # noqa: E402  (/proc/stat: all processes' CPU)
from run import print_table  # noqa: E402

import easycluster  # noqa: E402
from easycluster.server import spawn_local  # noqa: E402

QUICK = "--quick" in sys.argv
N = int(sys.argv[sys.argv.index("--servers") + 1]) if "--servers" in sys.argv else 50
ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 0
ROUNDS = ROUNDS or (50 if QUICK else 400)

easycluster.define_common("def add(a, b):\n    return a + b\n")

# A stdlib server: accept one connection, answer (a, b) with a + b until it ends.
STDLIB_SERVER = """
import sys
from multiprocessing.connection import Listener
with Listener(("127.0.0.1", 0), authkey=None) as listener:
    print(listener.address[1], flush=True)
    with listener.accept() as conn:
        while True:
            try:
                a, b = conn.recv()
            except EOFError:
                break
            conn.send(a + b)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stdlib:
    """One stdlib connection, with ``add(a, b, nonblocking=True)`` as ours has it."""

    def __init__(self, port: int) -> None:
        from multiprocessing.connection import Client

        self.conn = Client(("127.0.0.1", port), authkey=None)

    def add(self, a: int, b: int, nonblocking: bool = True) -> Stdlib:
        self.conn.send((a, b))
        return self

    def wait(self) -> Any:
        return self.conn.recv()

    def close(self) -> None:
        self.conn.close()


def end_processes(procs: List[subprocess.Popen], grace: float = 10.0) -> None:
    """Terminate every process, then reap each (killed if it outlives ``grace``)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()


def round_once(clients: List[Any]) -> None:
    """One call on each server, all sent, then all collected (and checked)."""
    pending = [c.add(i, 1, nonblocking=True) for i, c in enumerate(clients)]
    got = [h.wait() for h in pending]
    if got != [i + 1 for i in range(len(clients))]:
        raise AssertionError(f"wrong results: {got[:5]}...")


def first_rounds(clients: List[Any]) -> float:
    """S5's own measure on servers that served nothing yet: one round, then the median
    of the next ten (a fresh server runs its first calls in CPython's generic bytecode:
    ``remote/rehearsal.py``)."""
    round_once(clients)
    walls = []
    for _ in range(10):
        t0 = time.perf_counter()
        round_once(clients)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def measure(clients: List[Any]) -> Tuple[float, float]:
    """(machine CPU seconds per call, median round seconds) over ``ROUNDS`` rounds."""
    for _ in range(20):  # warm: the first calls take the pages in
        round_once(clients)
    return timed_rounds(clients, ROUNDS)


def timed_rounds(clients: List[Any], rounds: int) -> Tuple[float, float]:
    """(machine CPU seconds per call, median round seconds) over ``rounds`` rounds."""
    busy0 = machine_busy()
    walls = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        round_once(clients)
        walls.append(time.perf_counter() - t0)
    busy = machine_busy() - busy0
    return busy / (rounds * len(clients)), statistics.median(walls)


def empty_blocks(got: Dict[str, List[Tuple[float, float]]], who: str) -> bool:
    """True, after saying so on stderr, if a block of ``timed_rounds`` (``got``: per set,
    (CPU per call, round) per block) took no CPU time by ``/proc/stat``'s 10 ms ticks:
    its ratios would mean nothing."""
    if not any(cpu == 0 for runs in got.values() for cpu, _ in runs):
        return False
    print(
        f"{who}: a block took no CPU time by /proc/stat's ticks (10 ms): "
        "make the blocks longer (--rounds, --servers)",
        file=sys.stderr,
    )
    return True


def connect_retrying(make: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + 60
    while True:
        try:
            return make()
        except (OSError, easycluster.EasyClusterError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not accept a connection in 60 s") from None
            time.sleep(0.02)


def main() -> None:
    procs: List[subprocess.Popen] = []
    kinds: List[Tuple[str, List[Any]]] = []
    work = tempfile.mkdtemp(prefix="fanout-cpu-")
    keyfile = os.path.join(work, "key")
    easycluster.write_key_file(keyfile)
    key = easycluster.read_key_file(keyfile)
    # (``-m``, not the venv's ``easycluster`` script: bench/against.py's interpreter for
    # an earlier commit has no scripts)
    exe = [sys.executable, "-m", "easycluster"]
    try:
        floor = []
        for _ in range(N):
            p = subprocess.Popen(
                [sys.executable, "-c", STDLIB_SERVER], stdout=subprocess.PIPE, text=True
            )
            procs.append(p)
            assert p.stdout is not None
            floor.append(Stdlib(int(p.stdout.readline())))
        kinds.append((f"floor: {N} stdlib mp.connection servers", floor))
        own = []
        ports = []
        for _ in range(N):
            port = free_port()
            ports.append(port)
            argv = [*exe, "-S", "-k", keyfile, "-b", "127.0.0.1", "-p", str(port)]
            procs.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        for port in ports:
            own.append(
                connect_retrying(lambda p=port: easycluster.Client(key, "127.0.0.1", p), f":{port}")
            )
        kinds.append((f"{N} easycluster -S, each its own (S5 TCP)", own))
        one = [easycluster.Client(key, "127.0.0.1", ports[0]) for _ in range(N)]
        kinds.append((f"{N} connections to one easycluster -S", one))
        zygote = [spawn_local() for _ in range(N)]
        kinds.append((f"{N} spawn_local() (forks of one zygote)", zygote))
        fresh = [spawn_local(fresh_interpreter=True) for _ in range(N)]
        kinds.append((f"{N} spawn_local(fresh_interpreter=True)", fresh))

        # each kind's first rounds, then its steady state (the next kind stays fresh)
        results = [(name, first_rounds(clients), measure(clients)) for name, clients in kinds]
        base_first, (base_cpu, base_wall) = results[0][1:]
        rows = []
        for name, first, (cpu, wall) in results:
            rows.append(
                (
                    f"{name}: S5's measure (rounds 2-11, fresh)",
                    f"{first * 1e3:.2f} ms",
                    f"{first / base_first:.2f}x",
                    "",
                )
            )
            rows.append(
                (
                    f"{name}: machine CPU per call",
                    f"{cpu * 1e6:.0f} us",
                    f"{cpu / base_cpu:.2f}x",
                    "",
                )
            )
            rows.append(
                (f"{name}: round median", f"{wall * 1e3:.2f} ms", f"{wall / base_wall:.2f}x", "")
            )
        print(f"one call on each of {N} servers, {ROUNDS} rounds per kind, all kinds resident")
        print_table(rows)
    finally:
        for _, clients in kinds:
            for c in clients:
                c.close()
        end_processes(procs)


if __name__ == "__main__":
    main()
