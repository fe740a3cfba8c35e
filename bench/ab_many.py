"""The 1,000-server round, the code of an earlier commit against ours, alternating.

    .venv/bin/python bench/ab_many.py COMMIT [--servers N] [--pairs P] [--seconds S]

Issue 16's round target (20 us a server, written for 16 cores) is bound by the master's
CPU per call: with a core per few servers, the master is what every call waits on.
``against.py COMMIT bench_many.py --big 1000`` runs the two codes minutes apart, and this
machine drifts by more than a change worth a tenth of the master's CPU. Here each sample
is a fresh process with the package on its ``PYTHONPATH`` (COMMIT's, from ``git
archive``, or this checkout's; the servers inherit it) that starts N ``spawn_local()``
servers, runs ``call_multi`` rounds until they are warm, then for S seconds; the samples
alternate between the codes (A B, B A, ...). Per sample: the master thread's CPU per
call (``CLOCK_THREAD_CPUTIME_ID``), the master process's (its other threads too), the
whole machine's busy CPU per call (``/proc/stat``: servers and kernel) and the round
per server. The floor, measured once before the pairs and once after: N forked stdlib
``multiprocessing.connection`` echo servers, sent to and collected as ``call_multi``
does (``bench_many.stdlib_round``). The table gives each code's medians, the ratios to
the floor's, and per pair the ratio ours/earlier of the master thread's CPU (its median,
and in how many pairs ours was lower). Exit code 2 if COMMIT cannot be archived.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# (only this folder: ``run`` and ``bench_many`` put this checkout first on sys.path, so a
# sample imports neither before the package its PYTHONPATH names)
sys.path.insert(0, HERE)


def option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def sample(servers: int, seconds: float) -> Dict[str, float]:
    """One code's sample, in this process (``--sample``): see the module doc."""
    import concurrent.futures

    from bench_shell import machine_busy

    import easycluster
    from easycluster import call_multi
    from easycluster.server import spawn_local

    easycluster.define_common("def add(a, b):\n    return a + b\n")
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        clients = list(ex.map(lambda _: spawn_local(), range(servers)))
    try:
        where = clients[0].eval("__import__('easycluster').__file__")
        for _ in range(10):  # (the first rounds finish the servers' start)
            call_multi(clients, "add", 1, 2)
        rounds = 0
        thread0, own0, busy0 = thread_cpu(), time.process_time(), machine_busy()
        wall0 = time.perf_counter()
        while time.perf_counter() - wall0 < seconds:
            if call_multi(clients, "add", 1, 2) != [3] * servers:
                raise AssertionError("wrong results")
            rounds += 1
        wall = time.perf_counter() - wall0
        calls = rounds * servers
        return {
            "thread": (thread_cpu() - thread0) / calls,
            "process": (time.process_time() - own0) / calls,
            "machine": (machine_busy() - busy0) / calls,
            "round": wall / calls,
            "package": os.path.dirname(where) if where == easycluster.__file__ else "?",
        }
    finally:
        for c in clients:
            c.close()


def thread_cpu() -> float:
    return time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)


def floor(servers: int) -> Dict[str, float]:
    """The stdlib floor's sample (``--floor``): round per server, master CPU per call."""
    from bench_many import stdlib_round

    p50, busy, own = stdlib_round(servers)
    return {"round": p50 / servers, "machine": busy, "process": own}


def run_sample(args: List[str], pythonpath: str, cwd: str) -> Dict[str, float]:
    """One sample in a fresh process. ``cwd``: a folder without a package in it (before
    36d54ec, a local server imported the package of its working directory first)."""
    env = dict(os.environ, PYTHONPATH=pythonpath)
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"sample {args} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    servers = int(option("--servers", "1000"))
    if "--sample" in sys.argv:
        print(json.dumps(sample(servers, float(option("--seconds", "3")))))
        return 0
    if "--floor" in sys.argv:
        print(json.dumps(floor(servers)))
        return 0
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    commit, pairs = sys.argv[1], int(option("--pairs", "4"))
    seconds = option("--seconds", "3")
    with tempfile.TemporaryDirectory(prefix="ab-many-") as work:
        archive = subprocess.run(
            ["git", "-C", ROOT, "archive", commit, "easycluster"], capture_output=True
        )
        if archive.returncode:
            print(f"ab_many: {commit}: {archive.stderr.decode().strip()}", file=sys.stderr)
            return 2
        subprocess.run(["tar", "-x", "-C", work], input=archive.stdout, check=True)
        paths = {"earlier": work, "ours": ROOT}
        cwd = os.path.join(work, "cwd")
        os.mkdir(cwd)
        got: Dict[str, List[Dict[str, float]]] = {"earlier": [], "ours": []}
        floors = [run_sample(["--floor", "--servers", str(servers)], ROOT, cwd)]
        for i in range(pairs):
            order = ("earlier", "ours") if i % 2 == 0 else ("ours", "earlier")
            for who in order:
                args = ["--sample", "--servers", str(servers), "--seconds", seconds]
                got[who].append(run_sample(args, paths[who], cwd))
                print(f"pair {i + 1} {who}: {got[who][-1]['thread'] * 1e6:.1f} us", file=sys.stderr)
        floors.append(run_sample(["--floor", "--servers", str(servers)], ROOT, cwd))
    for who, path in paths.items():
        seen = {s["package"] for s in got[who]}
        if seen != {os.path.join(path, "easycluster")}:
            print(f"ab_many: {who}'s servers ran {seen}, not {path}", file=sys.stderr)
            return 1
    from run import print_table

    print_table(rows(commit, servers, got, floors))
    return 0


def rows(
    commit: str,
    servers: int,
    got: Dict[str, List[Dict[str, float]]],
    floors: List[Dict[str, float]],
) -> List[tuple]:
    def med(who: str, key: str) -> float:
        return statistics.median(s[key] for s in got[who])

    floor_master = statistics.median(f["process"] for f in floors)
    floor_round = statistics.median(f["round"] for f in floors)
    out = [
        (f"floor: stdlib, {servers} servers, round per server", f"{floor_round * 1e6:.1f} us", ""),
        ("floor: the master's CPU per call", f"{floor_master * 1e6:.1f} us", ""),
    ]
    for who, name in (("earlier", commit), ("ours", "ours")):
        thread, own = med(who, "thread"), med(who, "process")
        out += [
            (
                f"{name}: round per server",
                f"{med(who, 'round') * 1e6:.1f} us",
                "<= 20 us (16 cores)",
            ),
            (f"{name}: master thread CPU per call", f"{thread * 1e6:.1f} us", ""),
            (
                f"{name}: master process / machine CPU per call",
                f"{own * 1e6:.1f} / {med(who, 'machine') * 1e6:.0f} us",
                f"{own / floor_master:.2f}x the floor's master",
            ),
        ]
    ratios = [o["thread"] / e["thread"] for e, o in zip(got["earlier"], got["ours"])]
    lower = sum(r < 1 for r in ratios)
    out.append(
        (
            "ours / earlier, master thread CPU",
            f"{statistics.median(ratios):.3f}",
            f"lower in {lower} of {len(ratios)} pairs",
        )
    )
    return out


if __name__ == "__main__":
    sys.exit(main())
