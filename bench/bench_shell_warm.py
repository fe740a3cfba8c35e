"""Warm shell commands: the second command of a Task on N nodes, per backend, same run.

    .venv/bin/python bench/bench_shell_warm.py [--nodes N] [--runs R] [--no-ssh]
        [--back-to-back K]

One Task per row runs ``echo ok`` on N nodes once (untimed: sessions connect, caches
fill), then R more times, timed; the rows take turns round by round (interleaved, after
the machine is mostly idle: ``bench_shell.wait_quiet``), so a busy moment hits every row.
Every run's output is checked (one gathered buffer ``ok`` on all N nodes, return code 0).

Rows:

* ``rpc, local servers``: ``backend="rpc"``, each node a server of ours started with
  ``spawn_local`` (the session stays open; each command is a fork on its node);
* ``rpc, ssh sessions``: ``backend="rpc"`` with the sessions started over ssh to
  ``bench_shell``'s throwaway loopback sshd (curve25519), as on a real cluster;
* ``exec``: ``backend="exec"``, a local ``sh -c echo ok`` per node (no session: this is
  the cost of a fork per node, seen from the Task: the floor for a command);
* ``ssh``: ``backend="ssh"`` to the loopback sshd, a new connection per command (what
  pdsh and clush do every time);
* ``ssh, ControlMaster``: the same with OpenSSH's connection sharing
  (``ControlMaster auto``, ``ControlPersist``), OpenSSH's own warm path.

The table gives the median and range in ms, the ratio to ``exec``, the CPU this
process (the admin) spent per command (median), its threads included, its children not,
and the CPU of the processes it started (``nodes CPU``: the local servers and their
commands, the local ``sh``, ssh and the sshd with its sessions; counted in whole clock
ticks, so the mean of the runs): on this 2-core machine every node's work shares the
admin's cores, so the wall time of 64 "nodes" is bounded by the sum; the admin's own
cost is what a real cluster sees. The sshd, the servers and the temporary files are
removed at the end, also on error. ``--no-ssh`` (or
no sshd here) keeps the local rows only.

``--back-to-back K`` also runs, each round and row in turn, K commands in a row on the
same Task with no pause (the servers and their threads are hot): the ``b2b ms`` column is
the median of those. For the local servers' row, ``server CPU us`` is the CPU one node's
server spent per command, itself and its threads but not its commands (the ``sh``): the
servers' ``utime + stime`` in ``/proc/PID/stat`` over every timed command, divided by
the commands (whole clock ticks over many commands: a mean).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_shell import SSHD, Sshd, wait_quiet  # noqa: E402

from easycluster.cluster import ExecBackend, SshBackend, Task  # noqa: E402
from easycluster.server import spawn_local  # noqa: E402


class Row:
    """A Task set up for one backend; ``once()`` times one checked ``echo ok``."""

    def __init__(self, label: str, task: Task, nodes: str, count: int, backend: Any) -> None:
        self.label, self.task, self.nodes, self.count = label, task, nodes, count
        self.backend = backend
        self.times: List[float] = []
        self.cpu: List[float] = []  # this process's CPU seconds per command
        self.nodes_cpu: List[float] = []  # its descendants' CPU seconds per command
        self.error: Optional[str] = None
        self.b2b: List[float] = []  # back-to-back commands' wall times
        self.servers: List[int] = []  # the local servers' pids (the rpc local row)
        self.server_ticks = 0  # their own CPU ticks over the timed commands
        self.commands = 0  # timed commands (each on every node)

    def timed(self, step: Callable[[], float]) -> float:
        """Run ``step`` (one command) and count its servers' CPU (when there are any)."""
        before = servers_ticks(self.servers)
        took = step()
        self.server_ticks += servers_ticks(self.servers) - before
        self.commands += 1
        return took

    def once(self) -> float:
        d = descendants_cpu()
        c = time.process_time()
        t = time.perf_counter()
        self.task.run("echo ok", nodes=self.nodes, backend=self.backend)
        took = time.perf_counter() - t
        self.cpu.append(time.process_time() - c)
        self.nodes_cpu.append(descendants_cpu() - d)
        got = {bytes(b): len(keys) for b, keys in self.task.iter_buffers()}
        if got != {b"ok": self.count} or self.task.max_retcode() != 0:
            errors = {bytes(e): len(k) for e, k in self.task.iter_errors()}
            raise RuntimeError(f"{self.label}: wrong results {got} {errors}")
        return took


def servers_ticks(pids: List[int]) -> int:
    """The clock ticks processes ``pids`` spent themselves (utime + stime, their threads
    included, the children they reaped not)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def descendants_cpu() -> float:
    """CPU seconds of the processes this one started, directly or not: the ended ones
    it reaped (``RUSAGE_CHILDREN``) and the live ones with what they reaped (``/proc``,
    in clock ticks: a figure per command is coarse, a median of many is not)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = used.ru_utime + used.ru_stime
    parent: Dict[int, int] = {}
    ticks: Dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # (ended meanwhile)
            continue
        parent[int(name)] = int(fields[1])
        ticks[int(name)] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    me = os.getpid()
    hz = os.sysconf("SC_CLK_TCK")
    for pid, n in ticks.items():
        up = parent[pid]
        while up > 1 and up != me:
            up = parent.get(up, 0)
        if up == me:
            total += n / hz
    return total


def make_rows(nodes: int, sshd: Optional[Sshd], workdir: str) -> List[Row]:
    names = f"n[1-{nodes}]"
    rows: List[Row] = []
    local = Task()
    row = Row("rpc, local servers", local, names, nodes, "rpc")

    def connect(node: str) -> Any:
        client = spawn_local()
        row.servers.append(client.process.pid)
        return client

    local.set_info("rpc_connect", connect)
    rows.append(row)
    rows.append(Row("exec (local sh per node)", Task(), names, nodes, ExecBackend()))
    if sshd is not None:
        config = sshd.configs["curve25519"]
        hosts = f"h[1-{nodes}]"
        over_ssh = Task()
        over_ssh.set_info("ssh_options", f"-F {config}")
        rows.append(Row("rpc, ssh sessions", over_ssh, hosts, nodes, "rpc"))
        plain = SshBackend(options=["-F", config])
        rows.append(Row("ssh (a connection per command)", Task(), hosts, nodes, plain))
        control = os.path.join(workdir, "cm-%C")
        shared = SshBackend(
            options=[
                "-F",
                config,
                "-oControlMaster=auto",
                f"-oControlPath={control}",
                "-oControlPersist=120",
            ]
        )
        rows.append(Row("ssh, ControlMaster", Task(), hosts, nodes, shared))
    return rows


def close_rows(rows: List[Row], workdir: str) -> None:
    for r in rows:
        r.task.close_sessions()
    for name in os.listdir(workdir):  # the ControlMaster processes: ask each to exit
        if name.startswith("cm-"):
            path = os.path.join(workdir, name)
            subprocess.run(
                ["ssh", f"-oControlPath={path}", "-O", "exit", "x"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
            )


def table(rows: List[Row]) -> List[str]:
    floor = next((statistics.median(r.times) for r in rows if r.label.startswith("exec")), None)
    out = [
        "| backend | median ms | range ms | vs exec | b2b ms | b2b range | admin CPU ms "
        "| nodes CPU ms | server CPU us |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    hz = os.sysconf("SC_CLK_TCK")
    for r in rows:
        if r.error or not r.times:
            out.append(f"| {r.label} | failed: {r.error} | | | | | | | |")
            continue
        m = statistics.median(r.times)
        ratio = f"{m / floor:.2f}x" if floor else ""
        lo, hi = min(r.times) * 1e3, max(r.times) * 1e3
        cpu = statistics.median(r.cpu) * 1e3
        nodes = statistics.mean(r.nodes_cpu) * 1e3  # (a mean: each figure is whole ticks)
        b2b = b2b_range = server = ""
        if r.b2b:
            b2b = f"{statistics.median(r.b2b) * 1e3:.1f}"
            b2b_range = f"{min(r.b2b) * 1e3:.1f}-{max(r.b2b) * 1e3:.1f}"
        if r.servers and r.commands:
            server = f"{r.server_ticks / hz / (r.commands * r.count) * 1e6:.0f}"
        out.append(
            f"| {r.label} | {m * 1e3:.1f} | {lo:.1f}-{hi:.1f} | {ratio} | {b2b} | {b2b_range} "
            f"| {cpu:.1f} | {nodes:.0f} | {server} |"
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=64, help="nodes (64)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per row (20)")
    ap.add_argument("--no-ssh", action="store_true", help="local rows only")
    ap.add_argument(
        "--back-to-back",
        type=int,
        default=0,
        metavar="K",
        help="also K commands in a row per round and row, no pause (0: none)",
    )
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    use_ssh = not args.no_ssh and os.access(SSHD, os.X_OK) and shutil.which("ssh")
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        sshd = Sshd(tmp, [f"h{i}" for i in range(1, args.nodes + 1)]) if use_ssh else None
        rows: List[Row] = []
        try:
            if sshd is not None:
                sshd.start()
            rows = make_rows(args.nodes, sshd, tmp)
            for r in rows:  # untimed: connect the sessions, check the output
                run_guarded(r, r.once)
            for rnd in range(1, args.runs + 1):
                wait_quiet(limit=2.0)
                for r in rows:
                    if r.error is None:
                        run_guarded(r, lambda r=r: r.times.append(r.timed(r.once)))
                for r in rows:
                    for _ in range(args.back_to_back):
                        if r.error is None:
                            run_guarded(r, lambda r=r: r.b2b.append(r.timed(r.once)))
                print(f"round {rnd}/{args.runs}", file=sys.stderr, flush=True)
        finally:
            close_rows(rows, tmp)
            if sshd is not None:
                sshd.stop()
    print(
        f"Warm `echo ok` on {args.nodes} nodes, the second and later commands of one Task "
        f"per backend, median of {args.runs} runs (interleaved); {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. Local servers and the sshd share this "
        "machine's CPUs with the Task."
    )
    print()
    print("\n".join(table(rows)))
    return 0


def run_guarded(row: Row, step: Callable[[], Any]) -> None:
    """Run a step of ``row``; a failure marks the row failed (the others go on)."""
    try:
        step()
    except Exception as e:  # (reported in the table)
        row.error = f"{type(e).__name__}: {str(e)[:120]}"


if __name__ == "__main__":
    sys.exit(main())
