"""Servers over srun: starting N in an allocation, and the cost of a call, against ssh.

Run (as root, with slurm-wlm and munge installed): ``.venv/bin/python bench/bench_srun.py
[--nodes N] [--calls C] [--repeat R]``

Starts a real SLURM on this host (tests/slurm.py: munged, slurmctld, N slurmd) and a
real sshd (tests/sshd.py), makes one allocation of N nodes (``salloc --no-shell``) and
measures, best of ``--repeat``:

* starting N servers with ``clients_from_slurm`` (one srun step per node, in parallel),
  against the target of 1 s + 10 ms per node; and one after another, for reference;
* the time of one blocking call (``eval("1")``, ``--calls`` in a row) over a server
  started by srun and over one started by ssh through the loopback sshd, and their
  ratio, against the target of 1.2.

Prints one table. Nothing is asserted: the figures are indicative on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Callable, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from slurm import SlurmCluster, slurm_missing  # noqa: E402
from sshd import sshd_missing, start_sshd  # noqa: E402

from easycluster import Client  # noqa: E402
from easycluster.client.spec import clients_from_slurm, srun_client  # noqa: E402


def best(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


def start_parallel() -> float:
    start = time.perf_counter()
    clients = clients_from_slurm(Client)
    elapsed = time.perf_counter() - start
    for c in clients:
        c.close()
    return elapsed


def start_serial(nodes: List[str]) -> float:
    start = time.perf_counter()
    clients = [srun_client(Client, node) for node in nodes]
    elapsed = time.perf_counter() - start
    for c in clients:
        c.close()
    return elapsed


def per_call(client: Client, calls: int) -> float:
    client.eval("1")
    start = time.perf_counter()
    for _ in range(calls):
        client.eval("1")
    return (time.perf_counter() - start) / calls


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    why = slurm_missing() or sshd_missing()
    if why:
        print(f"bench_srun: skipped: {why}", file=sys.stderr)
        return 0
    rows: List[Tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-srun-") as tmp:
        os.makedirs(os.path.join(tmp, "slurm"))
        os.makedirs(os.path.join(tmp, "sshd"))
        cluster = SlurmCluster(os.path.join(tmp, "slurm"), nodes=args.nodes).start()
        sshd = None
        saved = dict(os.environ)
        try:
            sshd = start_sshd(os.path.join(tmp, "sshd"))
            os.environ["SLURM_CONF"] = cluster.conf
            job = cluster.allocate(args.nodes)
            os.environ.update(cluster.job_env(job))
            nodes = [f"n{i}" for i in range(1, args.nodes + 1)]
            target = 1.0 + 0.01 * args.nodes
            par = best(args.repeat, start_parallel)
            rows.append(
                (
                    f"start {args.nodes} servers, parallel (s)",
                    f"{par:.3f}",
                    f"< {target:.2f}",
                    "PASS" if par < target else "FAIL",
                )
            )
            ser = best(args.repeat, lambda: start_serial(nodes))
            rows.append((f"start {args.nodes} servers, one by one (s)", f"{ser:.3f}", "-", "-"))
            with srun_client(Client, nodes[0]) as c:
                over_srun = best(args.repeat, lambda: per_call(c, args.calls))
            with Client(**sshd.client_kw()) as c:  # type: ignore[arg-type]
                over_ssh = best(args.repeat, lambda: per_call(c, args.calls))
            ratio = over_srun / over_ssh
            rows.append(("call over srun (ms)", f"{over_srun * 1e3:.3f}", "-", "-"))
            rows.append(("call over ssh (ms)", f"{over_ssh * 1e3:.3f}", "-", "-"))
            rows.append(
                (
                    "srun / ssh per call",
                    f"{ratio:.2f}",
                    "<= 1.20",
                    "PASS" if ratio <= 1.2 else "FAIL",
                )
            )
        finally:
            os.environ.clear()
            os.environ.update(saved)
            if sshd is not None:
                sshd.stop()
            cluster.stop()
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>8}  {'target':>8}  result")
    for name, value, goal, verdict in rows:
        print(f"{name:<{width}}  {value:>8}  {goal:>8}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
