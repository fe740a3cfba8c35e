"""``easycluster farm``'s options: ``build_parser`` (the command itself is ``farm.py``;
what each option does is told there and in docs/farm.md). Apart from the command so
that ``--help`` builds the parser without importing the farm."""

from __future__ import annotations

import argparse
import os

from ..version import VERSION
from .parsing import Parser

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: --help builds the parser without typing)
    from typing import Any, Optional

PROG = "easycluster farm"


def build_parser() -> argparse.ArgumentParser:
    """The parser: clstr's options, then ours."""
    p = Parser(
        prog=PROG,
        description="Run many jobs (shell commands) over many hosts, each job once, "
        "on warm sessions; retry work lost with a host; say what became of every job.",
        epilog="Exit codes: 0 all done; 250 a job exited non-zero; 251 a job stuck past "
        "--timeout; 252 a job lost with its hosts; 254 jobs not run; 130 interrupted "
        "(143 SIGTERM, 129 SIGHUP); "
        "1 failure; 2 usage.",
    )
    h = p.add_argument_group("hosts")
    _many(
        h,
        "-n",
        "--node",
        dest="nodes",
        metavar="HOST",
        help="hosts (a host named N times has N slots)",
    )
    _many(
        h,
        "-N",
        "--node-file",
        dest="node_files",
        metavar="FILE",
        help="files of hosts, one per line",
    )
    _each(
        h,
        "-w",
        dest="nodesets",
        metavar="NODESET",
        help="hosts as a node set, as clush -w (node[1-8], @group)",
    )
    _each(
        h,
        "-g",
        "--group",
        dest="groups",
        metavar="GROUP",
        help="hosts of a node group, as clush -g",
    )
    h.add_argument(
        "--slurm",
        nargs="?",
        const="",
        metavar="JOBID",
        help="the nodes of this SLURM allocation ($SLURM_JOB_ID, or JOBID), a slot per "
        "CPU, servers started with srun; with hosts given: those nodes of it",
    )
    h.add_argument("--slots", type=int, default=1, metavar="N", help="slots per host (1)")
    _count(h, "-m", "--max-nodes", default=0, help="hosts in use at once (0: no limit)")
    _count(h, "-u", "--max-node-uses", default=0, help="retire a host after N jobs (0: no limit)")
    j = p.add_argument_group("jobs")
    _each(j, "-j", "--job", dest="jobs", metavar="COMMAND")
    _many(
        j,
        "-J",
        "--job-file",
        dest="job_files",
        metavar="FILE",
        help="files of jobs, one per line (- : stdin)",
    )
    j.add_argument("-E", "--on-each-node", metavar="COMMAND", help="run COMMAND once per host")
    r = p.add_argument_group("running")
    r.add_argument("--timeout", type=float, metavar="SECONDS", help="seconds a job may run")
    _count(r, "--retries", default=3, help="reruns of work lost with a host or stuck (3)")
    _count(r, "--retry-failed", default=0, help="reruns of a job that exited non-zero (0)")
    r.add_argument("--halt", metavar="now|soon,fail=N", help="stop after N failed jobs")
    r.add_argument("--joblog", metavar="FILE", help="one line per attempt")
    r.add_argument("--resume", action="store_true", help="skip jobs the joblog records done")
    r.add_argument(
        "--heartbeat",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="a host silent for 2 heartbeats is lost (5)",
    )
    r.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    r.add_argument("-l", "--user", help="remote user name")
    r.add_argument(
        "--ssh-options",
        action="append",
        default=[],
        metavar="OPTIONS",
        help="ssh arguments, shell words ('-F cfg -p 2222')",
    )
    r.add_argument(
        "--topology",
        metavar="FILE",
        help="reach the hosts through the gateways of this topology (tree mode; default: "
        "$EASYCLUSTER_TOPOLOGY or a topology.conf, see docs/tree.md)",
    )
    r.add_argument(
        "--no-topology",
        action="store_true",
        help="connect every host directly, whatever topology is configured",
    )
    r.add_argument(
        "-R",
        "--worker",
        choices=("ssh", "local"),
        default="ssh",
        help="ssh (default), or local servers named by the hosts (tests)",
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "-o",
        "--stdout",
        nargs="?",
        const=os.devnull,
        metavar="FILE",
        help="jobs' stdout to FILE (no FILE: discard)",
    )
    o.add_argument(
        "-e",
        "--stderr",
        nargs="?",
        const=os.devnull,
        metavar="FILE",
        help="jobs' stderr to FILE (no FILE: discard)",
    )
    o.add_argument("--outdir", metavar="DIR", help="per-job files DIR/SEQ.out, DIR/SEQ.err")
    o.add_argument(
        "-s",
        "--status",
        dest="status",
        action="store_true",
        default=None,
        help="status line on stderr (default: when it is a terminal)",
    )
    o.add_argument("--no-status", dest="status", action="store_false")
    o.add_argument("-A", "--active-nodes", metavar="FILE", help="running jobs, kept current")
    o.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-V", "--version", action="version", version=f"easycluster {VERSION}")
    return p


def _many(group: Any, *flags: str, dest: str, metavar: str, help: str) -> None:
    """A repeatable option taking one or more values, gathered into one list."""
    group.add_argument(
        *flags, dest=dest, action="extend", nargs="+", default=[], metavar=metavar, help=help
    )


def _each(group: Any, *flags: str, dest: str, metavar: str, help: Optional[str] = None) -> None:
    """A repeatable option taking one value each time, gathered into one list."""
    group.add_argument(*flags, dest=dest, action="append", default=[], metavar=metavar, help=help)


def _count(group: Any, *flags: str, default: int, help: str) -> None:
    """An option taking a whole number N."""
    group.add_argument(*flags, type=int, default=default, metavar="N", help=help)
