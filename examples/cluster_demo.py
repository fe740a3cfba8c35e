"""The cluster layer, on this machine: node sets, the parallel shell, gather, a Task with
its events, and a Cluster of sessions kept open.

    make demo        (after examples/demo.py; or: .venv/bin/python examples/cluster_demo.py)

No ssh needed: the "nodes" are names, and each node's command runs as a local ``sh``
(``-R exec`` / ``backend="exec"``, ``%h`` the node's name), or under a local server of
ours (``spawn_local``). On a real cluster, drop ``-R exec`` (ssh to each node) or the
``client=`` argument (our server started over ssh, nothing installed there).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from easycluster import Cluster, NodeSet
from easycluster.cluster import EventHandler, Task
from easycluster.server import spawn_local

SHELL = [sys.executable, "-m", "easycluster", "shell"]


def banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def show(argv: list, stdin: str = "") -> None:
    """Run an easycluster command, print what it printed and its exit code."""
    shown = shlex.join(argv[2:] if argv[:2] == [sys.executable, "-m"] else argv)
    print("$", shown + (f" <<< {stdin!r}" if stdin else ""), flush=True)
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    for line in (done.stdout + done.stderr).splitlines():
        print("  ", line)
    print(f"   (exit code {done.returncode})", flush=True)


class Live(EventHandler):
    """Print each line as it comes and each node's end (on the Task's thread)."""

    def ev_read(self, worker, node, sname, msg):
        print(f"   {node} {sname}: {msg.decode()}")

    def ev_hup(self, worker, node, rc):
        print(f"   {node} ended with {rc}")


def main() -> int:
    banner("node sets: folded, expanded, operators")
    nodes = NodeSet("node[1-10]!node[4-5]")
    print("NodeSet('node[1-10]!node[4-5]') ->", nodes, f"({len(nodes)} nodes)")
    print("its first three:", list(nodes)[:3], "| with web[1-2]:", nodes | NodeSet("web[1-2]"))

    banner("the parallel shell, gathered: identical output under one header (clush -b)")
    command = "echo kernel $(uname -r); [ %h = node3 ] && echo disk full >&2 && exit 3; true"
    show([*SHELL, "-R", "exec", "-b", "-w", "node[1-6]", command])

    banner("gather: the same from `node: line` text (clubak -b)")
    show(
        [sys.executable, "-m", "easycluster", "gather", "-b"], "n1: up\nn2: up\nn3: down\nn4: up\n"
    )

    banner("a Task: events as they happen, then ClusterShell's getters")
    task = Task()
    task.set_default("backend", "exec")
    task.shell("echo hello from %h; [ %h != n2 ]", nodes="n[1-3]", handler=Live())
    task.resume()
    for out, keys in task.iter_buffers():
        print(f"   iter_buffers: {NodeSet.fromlist(keys)} -> {out.decode()!r}")
    print("   max_retcode():", task.max_retcode())

    banner("a Cluster: one session per node kept open, for commands and Python calls")
    with Cluster("s[1-3]", client=lambda node: spawn_local()) as cluster:
        result = cluster.run("echo from pid $$")
        for key, value in result.items():
            print(f"   {key}: {value.stdout.decode().strip()} (rc {value.rc})")
        pids = cluster.call(os.getpid)
        print("   call(os.getpid) ->", dict(pids.items()))
        print("   summary:", repr(pids.summary()), "(empty: every node succeeded)")
    print("\ncluster demo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
