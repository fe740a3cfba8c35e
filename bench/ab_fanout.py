"""S5 over TCP, the code of an earlier commit against ours, interleaved in one sitting.

    .venv/bin/python bench/ab_fanout.py COMMIT [--servers N] [--blocks B] [--rounds R]

The side-by-side harness's S5 (one call on each of 50 ``easycluster -S`` servers) moves
by a third between sittings on this machine, and ``against.py`` runs the two codes one
after the other, minutes apart: a change worth 5 % of the CPU a call cannot be told from
the drift. Here both sets of servers are resident at once (started alternately, so that
neither has the earlier, or the later, places in memory), and the rounds alternate
between them in blocks of R rounds (A B, B A, A B...), so both see the same machine.
Per block: the whole machine's busy CPU per call (``/proc/stat``: every process, the
kernel's network work included) and the round's median. The table gives each code's
median over the blocks, and the ratio ours/earlier per pair of blocks (its median, and
in how many pairs ours was the cheaper).

The earlier code runs from a detached worktree with an interpreter of its own, as
``against.py`` makes them (removed afterwards); the master is ours for both, so only the
servers' code differs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from against import old_interpreter  # noqa: E402
from bench_fanout_cpu import (  # noqa: E402
    connect_retrying,
    empty_blocks,
    end_processes,
    free_port,
    round_once,
    timed_rounds,
)
from run import print_table  # noqa: E402

import easycluster  # noqa: E402


def option(name: str, default: int) -> int:
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


N = option("--servers", 50)
BLOCKS = option("--blocks", 16)
ROUNDS = option("--rounds", 60)


def start_servers(
    interpreters: Dict[str, str], keyfile: str, procs: List[subprocess.Popen]
) -> Dict[str, List[int]]:
    """N ``-S`` servers of each code, started alternately; their ports by code."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # (each interpreter finds its own tree)
    ports: Dict[str, List[int]] = {label: [] for label in interpreters}
    labels = list(interpreters)
    for i in range(N):
        for label in labels if i % 2 == 0 else labels[::-1]:
            port = free_port()
            argv = [interpreters[label], "-m", "easycluster", "-S", "-k", keyfile]
            procs.append(
                subprocess.Popen(
                    [*argv, "-b", "127.0.0.1", "-p", str(port)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    cwd=tempfile.gettempdir(),
                )
            )
            ports[label].append(port)
    return ports


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    commit = sys.argv[1]  # (``add`` is defined by bench_fanout_cpu, whose round this is)
    work = tempfile.mkdtemp(prefix="easycluster-ab-")
    tree = os.path.join(work, "tree")
    procs: List[subprocess.Popen] = []
    clients: Dict[str, List[easycluster.Client]] = {}
    try:
        if subprocess.run(
            ["git", "-C", ROOT, "worktree", "add", "--detach", "-q", tree, commit]
        ).returncode:
            print(f"ab_fanout: cannot check out {commit!r}", file=sys.stderr)
            return 2
        interpreters = {commit: old_interpreter(work, tree), "now": sys.executable}
        keyfile = os.path.join(work, "key")
        easycluster.write_key_file(keyfile)
        key = easycluster.read_key_file(keyfile)
        ports = start_servers(interpreters, keyfile, procs)
        for label, plist in ports.items():
            clients[label] = [
                connect_retrying(lambda p=p: easycluster.Client(key, "127.0.0.1", p), f":{p}")
                for p in plist
            ]
        where = {
            label: cs[0].eval("__import__('easycluster').__file__") for label, cs in clients.items()
        }
        if where[commit] == where["now"]:
            raise RuntimeError(f"both sets of servers run {where['now']}")
        for cs in clients.values():
            for _ in range(30):  # past the first calls (and their copied pages)
                round_once(cs)
        got: Dict[str, List[Tuple[float, float]]] = {label: [] for label in clients}
        for b in range(BLOCKS):
            order = [commit, "now"] if b % 2 == 0 else ["now", commit]
            for label in order:
                got[label].append(timed_rounds(clients[label], ROUNDS))
        if empty_blocks(got, "ab_fanout"):
            return 2
        rows = []
        for label in (commit, "now"):
            cpu = statistics.median(c for c, _ in got[label])
            wall = statistics.median(w for _, w in got[label])
            rows.append(
                (f"{label}: machine CPU per call (median of blocks)", f"{cpu * 1e6:.1f} us", "")
            )
            rows.append(
                (f"{label}: round, median of the blocks' medians", f"{wall * 1e3:.2f} ms", "")
            )
        ratios = [n[0] / o[0] for o, n in zip(got[commit], got["now"])]
        cheaper = sum(r < 1 for r in ratios)
        rows.append(
            (
                "now / earlier, CPU per call, per pair of blocks",
                f"{statistics.median(ratios):.3f}",
                f"now cheaper in {cheaper} of {len(ratios)}",
            )
        )
        print(f"S5 over TCP: {N} `-S` servers of each code, {BLOCKS} blocks of {ROUNDS} rounds")
        print_table(rows)
        return 0
    finally:
        for cs in clients.values():
            for c in cs:
                c.close()
        end_processes(procs)
        if os.path.isdir(tree):
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
