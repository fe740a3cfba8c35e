"""Handshake benchmark: connections per second to ``easycluster -S``, alone and during a
flood of unauthenticated sockets from another address; one command, one table.

    .venv/bin/python bench/bench_handshake.py [--before DIR] [--count N] [--repeat N]

Each row starts a server from a source tree (``python -m easycluster -S`` with that tree
first on ``sys.path``) on a loopback port, then opens ``--count`` connections one after
the other from 127.0.0.3, in a worker process that runs that tree's client: each a TCP
connect, the bare handshake (no new tries: this measures the listener, not the client),
one call (``eval("1")``, served by a forked connection process) and a close. "flood"
rows do the same while another process opens unauthenticated sockets from 127.0.0.2 as
fast as the kernel takes them, holding 2,000 at once. Columns: connections per second
(median of ``--repeat`` runs), connections that failed and the server's log lines about
refused or dropped sockets (both summed over the runs). ``--before DIR`` adds the same
rows for another tree (say ``git archive HEAD | tar -x -C DIR``), measured in the same
sitting, rows taken in turn, and a ratio column; ``--after DIR`` measures another tree
than this one (say, a copy of the ``--before`` tree with only some files changed).

A second table weighs how a connection process can learn that its listener died: the
cost of a fork whose child exits at once (the floor), starts a thread blocked on a pipe
(the server's way where there is no ``PR_SET_PDEATHSIG``), or asks Linux for
``PR_SET_PDEATHSIG`` (the server's way on Linux; ``ctypes`` looked up in the parent).
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Deque, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The client side runs from the tree measured too (a worker process: --worker).
sys.path.insert(0, os.environ.get("BENCH_TREE", ROOT))

import easycluster  # noqa: E402
from easycluster.protocol import handshake  # noqa: E402
from easycluster.transport.handshake import client_handshake  # noqa: E402

HOST = "127.0.0.1"
ATTACKER, HONEST = "127.0.0.2", "127.0.0.3"
REFUSALS = re.compile(r"refused|dropped|closed before|not logged")


class Server:
    """``easycluster -S`` from ``tree`` on a free loopback port; its stderr is kept."""

    def __init__(self, tree: str, keyfile: str):
        env = dict(os.environ, PYTHONPATH=tree)
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "easycluster", "-S", "-p", "0", "-b", HOST, "-k", keyfile],
            cwd=tree,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = re.search(r"serving on \S+:(\d+)", self.text())
            if m:
                self.port = int(m.group(1))
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server from {tree} did not start: {self.text()}")

    def text(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> str:
        """Stop it (its whole process group) and return its log."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        text = self.text()
        self.log.close()
        return text


def flood(port: int, stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    """Open unauthenticated sockets from ATTACKER until ``stop``, holding 2,000."""
    held: Deque[socket.socket] = collections.deque()
    while not stop.is_set():
        for _ in range(100):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.bind((ATTACKER, 0))
                s.connect_ex((HOST, port))
            except OSError:
                s.close()
                continue
            held.append(s)
            if len(held) > 2000:
                held.popleft().close()
        stop.wait(0.01)
    for s in held:
        s.close()


def one_connection(port: int, key: bytes) -> None:
    sock = socket.socket()
    try:
        sock.settimeout(10)
        sock.bind((HONEST, 0))
        sock.connect((HOST, port))
        channel = client_handshake(sock, key, handshake.WireOptions(), 10)
    except BaseException:
        sock.close()
        raise
    client = easycluster.Client(key)
    client.attach(channel, "bench")
    try:
        if client.eval("1") != 1:
            raise RuntimeError("wrong answer")
    finally:
        client.close()


def run(
    tree: str, keyfile: str, key: bytes, count: int, with_flood: bool
) -> Tuple[float, int, int]:
    """(connections per second, failures, refusal log lines) for one run."""
    server = Server(tree, keyfile)
    stop = multiprocessing.Event()
    flooder = None
    try:
        if with_flood:
            flooder = multiprocessing.Process(target=flood, args=(server.port, stop))
            flooder.start()
            time.sleep(0.5)  # the flood is on
        worker = subprocess.run(
            [sys.executable, __file__, "--worker", str(server.port), keyfile, str(count)],
            env=dict(os.environ, BENCH_TREE=tree),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if worker.returncode != 0:
            raise RuntimeError(f"the worker failed: {worker.stderr}")
        elapsed, failures = worker.stdout.split()
    finally:
        stop.set()
        if flooder is not None:
            flooder.join(10)
        log = server.stop()
    lines = sum(1 for line in log.splitlines() if REFUSALS.search(line))
    return count / float(elapsed), int(failures), lines


def worker(port: int, keyfile: str, count: int) -> int:
    """The client loop (in the tree measured): print seconds taken and failures."""
    key = easycluster.read_key_file(keyfile)
    failures = 0
    start = time.perf_counter()
    for _ in range(count):
        try:
            one_connection(port, key)
        except (OSError, easycluster.ConnectionLost):
            failures += 1
    print(time.perf_counter() - start, failures)
    return 0


def watch_costs(n: int) -> Dict[str, float]:
    """Median microseconds for a fork and the child's exit, by what the child does."""

    def child_thread(fd: int) -> None:
        threading.Thread(target=os.read, args=(fd, 1), daemon=True).start()

    from easycluster.service.tcpserver import parent_death_signal

    arm = parent_death_signal()  # looked up in the parent, as the server does

    def child_prctl(_: int) -> None:
        if arm is None or not arm(signal.SIGUSR1):
            raise OSError("no PR_SET_PDEATHSIG here")

    out = {}
    r, w = os.pipe()
    try:
        for name, body in (("exit", None), ("pipe + thread", child_thread), ("prctl", child_prctl)):
            times = []
            for _ in range(n):
                t = time.perf_counter()
                pid = os.fork()
                if pid == 0:
                    try:
                        if body is not None:
                            body(r)
                    finally:
                        os._exit(0)
                os.waitpid(pid, 0)
                times.append(time.perf_counter() - t)
            out[name] = statistics.median(times) * 1e6
    finally:
        os.close(r)
        os.close(w)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(int(argv[1]), argv[2], int(argv[3]))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", metavar="DIR", help="another source tree to compare with")
    p.add_argument(
        "--after", metavar="DIR", default=ROOT, help="the tree measured (default: this one)"
    )
    p.add_argument("--count", type=int, default=200, help="connections per run")
    p.add_argument("--repeat", type=int, default=3, help="runs per row")
    p.add_argument("--forks", type=int, default=300, help="forks per row of the 2nd table")
    args = p.parse_args(argv)
    trees = [("after", os.path.abspath(args.after))]
    if args.before:
        trees.insert(0, ("before", os.path.abspath(args.before)))
    with tempfile.TemporaryDirectory() as tmp:
        keyfile = os.path.join(tmp, "key")
        easycluster.write_key_file(keyfile)
        key = easycluster.read_key_file(keyfile)
        results: Dict[Tuple[str, bool], List[Tuple[float, int, int]]] = {}
        for _ in range(args.repeat):  # rows in turn in each round: same machine load
            for label, tree in trees:
                for with_flood in (False, True):
                    r = run(tree, keyfile, key, args.count, with_flood)
                    results.setdefault((label, with_flood), []).append(r)
    print(f"{args.count} connections per run, median of {args.repeat} runs\n")
    print(f"{'tree':8} {'flood':6} {'conn/s':>8} {'failed':>8} {'log lines':>10} {'vs before':>10}")
    for label, _ in trees:
        for with_flood in (False, True):
            rs = results[(label, with_flood)]
            rate = statistics.median(r[0] for r in rs)
            failed = sum(r[1] for r in rs)
            lines = sum(r[2] for r in rs)
            ratio = ""
            if args.before and label == "after":
                before = statistics.median(r[0] for r in results[("before", with_flood)])
                ratio = f"{rate / before:.2f}"
            flood_s = "yes" if with_flood else "no"
            total = args.count * args.repeat
            print(
                f"{label:8} {flood_s:6} {rate:8.0f} {failed:>4}/{total:<3} {lines:>10} {ratio:>10}"
            )
    costs = watch_costs(args.forks)
    print(f"\nfork + child exit, median of {args.forks} (µs): how a child can watch its parent")
    for name, us in costs.items():
        print(f"  {name:14} {us:8.0f}  (+{us - costs['exit']:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
