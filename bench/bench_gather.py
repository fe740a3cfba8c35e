"""Gathering speed: ``easycluster gather`` against ClusterShell's ``clubak``, same run.

Run: ``.venv/bin/python bench/bench_gather.py [--nodes N] [--lines L] [--repeat R]``

Writes one input file in a temporary directory (``node: line`` records, ``--lines``
per node for ``--nodes`` nodes, interleaved round robin the way pdsh and clush print
them; most nodes print the same text, every 97th differs on some lines), then runs
each command as a subprocess with that file on stdin and stdout to /dev/null, both
from this interpreter's ``bin`` directory, and prints one table: each mode, clubak's
seconds, ours, the ratio (clubak / ours), the target ratio and PASS/FAIL. Times are
the best of ``--repeat`` runs (default 1: clubak takes a while), alternating sides.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

TARGET = 5.0
MODES = ("-b", "-L")


def write_input(path: pathlib.Path, nodes: int, lines: int) -> int:
    """The benchmark input; returns its size in bytes."""
    with path.open("w") as out:
        for j in range(lines):
            chunk = []
            for i in range(1, nodes + 1):
                state = "changed" if i % 97 == 0 and j % 100 == 0 else "ok"
                chunk.append(f"node{i}: [{j:7d}] systemd[1]: unit step {j} finished: {state}\n")
            out.write("".join(chunk))
    return path.stat().st_size


def command(name: str, module: List[str]) -> List[str]:
    """The console script next to this interpreter, or ``python -m`` as a fallback."""
    script = pathlib.Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    found = shutil.which(name)
    if found:
        return [found]
    return [sys.executable, "-m", *module]


def timed(argv: List[str], source: pathlib.Path) -> float:
    """Wall time of one run, stdin from ``source`` and stdout to /dev/null."""
    with source.open("rb") as stdin, open(os.devnull, "wb") as devnull:
        start = time.perf_counter()
        proc = subprocess.run(argv, stdin=stdin, stdout=devnull, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-500:]!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=1000, help="lines per node")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    clubak = command("clubak", ["ClusterShell.CLI.Clubak"])
    ours = command("easycluster", ["easycluster"]) + ["gather"]
    rows: List[Tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench_gather.") as tmp:
        source = pathlib.Path(tmp) / "input.txt"
        size = write_input(source, args.nodes, args.lines)
        total = args.nodes * args.lines
        print(f"input: {total:,} lines from {args.nodes:,} nodes, {size / 1e6:.1f} MB")
        print(f"clubak: {' '.join(clubak)}")
        print(f"ours:   {' '.join(ours)}")
        for mode in MODES:
            best_peer = best_ours = float("inf")
            for _ in range(args.repeat):
                best_peer = min(best_peer, timed(clubak + [mode], source))
                best_ours = min(best_ours, timed(ours + [mode], source))
            rows.append((mode, best_peer, best_ours))

    print()
    print(f"{'mode':<6} {'clubak s':>9} {'ours s':>8} {'ratio':>7} {'target':>7}  result")
    for mode, peer, mine in rows:
        ratio = peer / mine
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        print(f"{mode:<6} {peer:9.2f} {mine:8.2f} {ratio:6.1f}x {TARGET:6.1f}x  {verdict}")


if __name__ == "__main__":
    main()
