"""Start-up of every ``easycluster`` subcommand against a bare interpreter, one table.

    .venv/bin/python bench/bench_cli_startup.py [--repeat N] [--imports]

Rows: the floor (``python -c pass``, this interpreter, so the same ``site`` and
editable-install finder every row pays), then each command as a user types it, through
the console script next to this interpreter (``python -m easycluster`` where there is
none). Each row is the median of ``--repeat`` runs, the rows taken in turn in each
round after one warm-up round, so bytecode caches are warm and a busy moment hits every
row alike. "over floor" is the row's median minus the floor's, from the same run; the
target (issue 17) is at most 30 ms over the floor. CPU is the user + system time of the
process (steadier than wall time on a busy machine). Children run in an empty temporary
directory with ``PYTHONDONTWRITEBYTECODE``/``PYTHONPATH`` & co. removed.

``--imports`` lists, under the table, each command's five largest own import times
(``-X importtime``, one run): where to look when a row misses.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

TARGET_MS = 30.0
TIMEOUT = 30.0  # seconds one run may take
COMMANDS: List[Tuple[str, List[str]]] = [
    ("easycluster nodeset -c 'n[1-10]'", ["nodeset", "-c", "n[1-10]"]),
    ("easycluster shell --help", ["shell", "--help"]),
    ("easycluster farm --help", ["farm", "--help"]),
    ("easycluster gather --help", ["gather", "--help"]),
    ("easycluster --version", ["--version"]),
    ("easycluster --help (the server command)", ["--help"]),
    ("easycluster --completion bash", ["--completion", "bash"]),
]
# Rows the target covers; the others are shown for reference.
TARGETED = {"nodeset", "shell", "farm", "gather", "--version"}


def child_env() -> Dict[str, str]:
    drop = {"PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONPROFILEIMPORTTIME", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def run_once(argv: List[str], cwd: str, env: Dict[str, str]) -> Tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``argv``; RuntimeError if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, cwd=cwd, env=env, timeout=TIMEOUT
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{argv}: exit {done.returncode}: {done.stderr.decode()[-200:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def own_import_times(argv: List[str], cwd: str, env: Dict[str, str]) -> List[Tuple[str, int]]:
    """The five largest own import times (µs) of one run of ``argv``."""
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]] if argv[0] == sys.executable else argv,
        capture_output=True,
        cwd=cwd,
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        timeout=TIMEOUT,
    )
    own: Dict[str, int] = {}
    for line in done.stderr.decode(errors="replace").splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \| +(\S+)", line)
        if m:
            own[m.group(2)] = own.get(m.group(2), 0) + int(m.group(1))
    return sorted(own.items(), key=lambda kv: -kv[1])[:5]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=20, help="runs per row (20)")
    ap.add_argument("--imports", action="store_true", help="list the top import costs too")
    args = ap.parse_args()
    script = os.path.join(os.path.dirname(sys.executable), "easycluster")
    prefix = [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "easycluster"]
    rows = [("floor: `python -c pass`", [sys.executable, "-c", "pass"])]
    rows += [(f"`{name}`", prefix + argv) for name, argv in COMMANDS]
    env = child_env()
    wall: Dict[str, List[float]] = {name: [] for name, _ in rows}
    cpu: Dict[str, List[float]] = {name: [] for name, _ in rows}
    with tempfile.TemporaryDirectory(prefix="ec-cli-startup-") as work:
        for i in range(args.repeat + 1):  # round 0 warms the caches
            for name, argv in rows:
                w, c = run_once(argv, work, env)
                if i:
                    wall[name].append(w)
                    cpu[name].append(c)
        floor = statistics.median(wall[rows[0][0]])
        floor_cpu = statistics.median(cpu[rows[0][0]])
        print(
            f"CLI start-up, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"{' '.join(prefix[-3:]) if len(prefix) > 1 else 'the console script'}; median "
            f"of {args.repeat} runs, the floor measured in the same rounds. Target: at "
            f"most {TARGET_MS:.0f} ms over the floor.\n"
        )
        print("| command | median | over floor | CPU | CPU over floor | target |")
        print("|---|---:|---:|---:|---:|---|")
        for n, (name, argv) in enumerate(rows):
            m, c = statistics.median(wall[name]), statistics.median(cpu[name])
            over = (m - floor) * 1000
            targeted = n > 0 and (argv[len(prefix)] in TARGETED)
            verdict = ("ok" if over <= TARGET_MS else "**missed**") if targeted else ""
            print(
                f"| {name} | {m * 1000:.1f} ms | {over:+.1f} ms | {c * 1000:.1f} ms | "
                f"{(c - floor_cpu) * 1000:+.1f} ms | {verdict} |"
            )
        if args.imports:
            py_prefix = [sys.executable, "-m", "easycluster"]
            for name, argv in rows[1:]:
                top = own_import_times(py_prefix + argv[len(prefix) :], work, env)
                listed = ", ".join(f"{mod} {us / 1000:.1f}" for mod, us in top)
                print(f"\n{name}: largest own import times (ms): {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
