"""The ``easycluster farm`` command: a job farm (clstr's options, made robust).

``easycluster farm -w node[1-8] -J jobs.txt --joblog run.log`` runs every job (one shell
command each) once on some host slot, over one warm session per host (``cluster/farm.py``),
and at the end says what became of each job: done, failed (with its class and last exit
code) or not run. ``docs/farm.md`` is the user's guide.

Hosts: ``-n HOST...`` (repeatable; a host named N times has N slots), ``-N FILE...`` (one
host or node set per line), ``-w NODESET``, ``-g GROUP``; ``--slots N`` multiplies.
``--slurm [JOBID]``: the nodes of the SLURM allocation this runs in (or JOBID), each with
as many slots as it has CPUs there (``SLURM_JOB_CPUS_PER_NODE``; 1 when unknown), and a
server started on each as an ``srun`` step instead of over ssh; with hosts also given,
those nodes of the allocation (their slots as usual). A node SLURM takes out of service
(DOWN, DRAIN, FAIL) is retired as lost and its jobs rerun elsewhere.
Jobs: ``-j COMMAND`` (repeatable), ``-J FILE...`` (one per line; blank lines and lines
starting with ``#`` are skipped; ``-`` is stdin), or ``-E COMMAND`` once on each host.

Exit codes (``cluster/farmout.py``): 0 every job done; 250 some job exited non-zero;
251 some job stuck past ``--timeout``; 252 some job lost with its hosts; 254 some job
not run (no hosts left, or halted); 130 interrupted (128 + N for SIGTERM, SIGHUP: taken as
Ctrl-C); 1 easycluster failed; 2 bad usage.
The most severe decides: interrupted, not run, lost, stuck, failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import IO, TYPE_CHECKING, Dict, List, Optional, Set, Tuple

from ..cluster.farmlog import JobLogError, read_done, read_done_hosts
from ..cluster.terminal import is_terminal
from ..cluster.treeconfig import topology_for
from ..errors import OutputFileError
from ..nodeset.nodeset import NodeSet
from .exitcodes import FAILURE, Terminated, UsageError, run_command, terminate_as_interrupt

# (re-exported: their home was this module)
from .farmconnect import connector as connector
from .farmconnect import tree_connect as tree_connect
from .farminput import (
    group_hosts,
    hosts_in,
    numbered_lines,
    open_joblog,
    open_outputs,
    prepare_active,
    prepare_outdir,
)
from .farmparser import PROG
from .farmparser import build_parser as build_parser

if TYPE_CHECKING:  # annotations only: the farm, its scheduler and clients load at run time
    from ..cluster.farm import FarmOptions, Job
    from ..cluster.farmout import FarmWriter

MAX_SECONDS = threading.TIMEOUT_MAX  # the longest wait the OS is given


def _read_lines(path: str, what: str, stdin: IO[str]) -> List[str]:
    """Non-blank lines of ``path`` that do not start with ``#``, stripped."""
    return [line for _, line in numbered_lines(path, what, stdin)]


def select_hosts(args: argparse.Namespace, stdin: IO[str]) -> List[str]:
    """Host slots in the order given (a host named N times appears N times).
    UsageError for a node set that does not parse or a group with no node."""
    hosts: List[str] = []
    for name in args.nodes:
        hosts += hosts_in(name, f"-n {name}")
    for path in args.node_files:
        for n, line in numbered_lines(path, "node", stdin):
            hosts += hosts_in(line, f"{path}:{n}")
    for text in args.nodesets:
        hosts += hosts_in(text, "-w")
    for group in args.groups:
        hosts += group_hosts(group)
    if args.slurm is not None:
        return slurm_hosts(args, hosts)
    if not hosts:
        raise UsageError("no hosts: give -n HOST, -N FILE, -w NODESET, -g GROUP or --slurm")
    return hosts


def slurm_hosts(args: argparse.Namespace, named: List[str]) -> List[str]:
    """``--slurm``: the host slots on the allocation (``named``: the hosts given, which
    must be its nodes; none: every node, a slot per CPU). Notes the job and its nodes on
    ``args`` (``slurm_job``, ``slurm_nodes``) for ``connector`` and the node watch.
    ConfigError (exit 2) outside an allocation or for a node not in it."""
    from ..launch import slurmwatch, srun  # only --slurm needs SLURM's commands

    if args.worker == "local":
        raise UsageError("--slurm starts servers with srun: it does not go with -R local")
    job = srun.current_jobid(args.slurm or None)
    members = srun.allocation_nodes(job)
    for node in named:  # (before any step starts)
        srun.node_in_allocation(node, job, members)
    args.slurm_job, args.slurm_nodes = job, members
    if named:
        return named
    if job == os.environ.get("SLURM_JOB_ID"):
        cpus = slurmwatch.cpus_per_node(members)
    else:  # (another allocation: its variables are not ours to read; SLURM says)
        cpus = srun.allocation_cpus(job, members)
    return [node for node in members for _ in range(cpus.get(node, 1))]


def select_jobs(args: argparse.Namespace, hosts: List[str], stdin: IO[str]) -> List[str]:
    """The job commands in order (``-j`` first, then each ``-J`` file)."""
    if args.on_each_node is not None:
        if args.jobs or args.job_files:
            raise UsageError("-E runs one command on each host: do not give -j or -J with it")
        if not args.on_each_node.strip():
            raise UsageError("-E needs a command")
        return [args.on_each_node] * len(dict.fromkeys(hosts))
    jobs = [j for j in args.jobs]
    for j in jobs:
        if not j.strip():
            raise UsageError("-j got an empty command: give the command to run")
    for path in args.job_files:
        jobs += _read_lines(path, "job", stdin)
    if not jobs:
        raise UsageError("no jobs: give -j COMMAND, -J FILE or -E COMMAND")
    return jobs


def parse_halt(text: Optional[str]) -> Optional[Tuple[str, int]]:
    """``now,fail=N`` or ``soon,fail=N`` (GNU parallel's spelling); ``never``: None."""
    if text is None or text == "never":
        return None
    when, _, rest = text.partition(",")
    key, _, count = rest.partition("=")
    if when not in ("now", "soon") or key != "fail" or not count.isdigit() or int(count) < 1:
        raise UsageError(
            f"--halt takes now,fail=N or soon,fail=N (N >= 1), not {text!r}: 'soon' lets "
            "running jobs finish, 'now' abandons them"
        )
    return when, int(count)


def check_numbers(args: argparse.Namespace) -> None:
    """UsageError for a number out of range, or options that do not go together."""
    for flag, value, low in (
        ("--slots", args.slots, 1),
        ("-m/--max-nodes", args.max_nodes, 0),
        ("-u/--max-node-uses", args.max_node_uses, 0),
        ("--retries", args.retries, 0),
        ("--retry-failed", args.retry_failed, 0),
    ):
        if value < low:
            raise UsageError(f"{flag} takes a whole number >= {low}, not {value}")
    for flag, fvalue in (
        ("--timeout", args.timeout),
        ("--heartbeat", args.heartbeat),
        ("--connect-timeout", args.connect_timeout),
    ):
        # (inf and nan too: a job's wait is given to the OS, which takes neither)
        if fvalue is not None and not 0 < fvalue <= MAX_SECONDS:
            raise UsageError(
                f"{flag} takes seconds > 0 (at most {MAX_SECONDS:.0f}), not {fvalue:g}"
            )
    if args.resume and not args.joblog:
        raise UsageError("--resume reads the joblog: give --joblog FILE too")
    if args.outdir and (args.stdout or args.stderr):
        raise UsageError("--outdir writes each job's output to its own files: drop -o/-e")


def choose_topology(args: argparse.Namespace) -> None:
    """``args.topology_file``: ``--topology``, else the configured default (none with
    ``--no-topology``, ``-R local`` or ``--slurm``, which start no ssh)."""
    if args.topology and (args.worker == "local" or args.slurm is not None):
        raise UsageError("--topology goes with ssh hosts, not with -R local or --slurm")
    if args.topology and args.no_topology:
        raise UsageError("give --topology FILE or --no-topology, not both")
    flat = args.no_topology or args.worker == "local" or args.slurm is not None
    args.topology_file = topology_for(args.topology, flat)


def run_farm(args: argparse.Namespace, stdin: IO[str]) -> int:
    """Everything after parsing: returns the exit code."""
    from ..cluster.farm import FarmOptions, Job  # deferred: see connector
    from ..cluster.farmout import FarmWriter

    check_numbers(args)
    halt = parse_halt(args.halt)
    hosts = select_hosts(args, stdin)
    commands = select_jobs(args, hosts, stdin)
    each = args.on_each_node is not None
    if each:
        hosts = list(dict.fromkeys(hosts))  # one copy per host: a host listed twice runs once
    # -E: each copy pinned to its host, retries too (another host has run its own copy)
    pins = hosts if each else [None] * len(commands)
    all_jobs = {seq: Job(seq, c, pins[seq - 1]) for seq, c in enumerate(commands, 1)}
    skipped: Set[int] = set()
    if args.resume:
        try:
            if each:  # a copy is done where it ran: skip by host, not by number
                done = read_done_hosts(args.joblog, args.on_each_node)
                skipped = {s for s, j in all_jobs.items() if j.host in done}
            else:
                skipped = read_done(args.joblog, {s: j.command for s, j in all_jobs.items()})
        except JobLogError as e:
            raise UsageError(str(e)) from None
    jobs = {s: j for s, j in all_jobs.items() if s not in skipped}
    if args.outdir:
        prepare_outdir(args.outdir)
    if args.active_nodes:
        prepare_active(args.active_nodes)
    options = FarmOptions(
        slots=args.slots,
        retries=args.retries,
        retry_failed=args.retry_failed,
        max_hosts=args.max_nodes,
        max_uses=0 if each else args.max_node_uses,  # (-E: used up after its own job)
        timeout=args.timeout,
        halt=halt,
    )
    stdout, stderr, opened = open_outputs(
        args.stdout, args.stderr, (sys.stdout.buffer, sys.stderr.buffer)
    )
    joblog = None
    try:
        joblog = open_joblog(args.joblog, append=args.resume) if args.joblog else None
        writer = FarmWriter(
            PROG,
            sys.stderr,
            stdout=stdout,
            stderr=stderr,
            outdir=args.outdir,
            joblog=joblog,
            active_file=args.active_nodes,
            status=is_terminal(sys.stderr) if args.status is None else args.status,
            verbose=args.verbose,
        )
        return _run(args, jobs, all_jobs, skipped, hosts, options, writer)
    finally:
        if joblog is not None:
            joblog.close()
        for f in opened:
            f.close()


def _run(
    args: argparse.Namespace,
    jobs: Dict[int, Job],
    all_jobs: Dict[int, Job],
    skipped: Set[int],
    hosts: List[str],
    options: FarmOptions,
    writer: FarmWriter,
) -> int:
    from ..cluster.farm import Farm
    from ..cluster.farmout import INTERRUPTED, Outcome

    if args.verbose:
        writer.say(
            f"{len(jobs)} jobs ({len(skipped)} done before) on "
            f"{NodeSet.fromlist(list(dict.fromkeys(hosts)))} ({len(hosts) * options.slots} slots)"
        )
    choose_topology(args)
    farm = Farm(list(jobs.values()), hosts, connector(args), options)
    watch = None
    if args.slurm is not None and jobs:  # SLURM's word on the nodes, besides heartbeats
        from ..launch.slurmwatch import SlurmWatch

        watch = SlurmWatch(list(dict.fromkeys(hosts)), farm.host_gone).start()
    interrupted: Optional[KeyboardInterrupt] = None
    broken: Optional[OutputFileError] = None
    try:
        report = farm.run(writer) if jobs else farm.scheduler.report()
    except KeyboardInterrupt as e:  # (SIGTERM and SIGHUP too: ``Terminated``)
        interrupted = e
        report = farm.scheduler.report()
    except OutputFileError as e:  # (the farm killed what ran): say so, then the summary
        broken = e
        report = farm.scheduler.report()
    finally:
        if watch is not None:
            watch.stop()
        if getattr(args, "relay", None) is not None:
            args.relay.close()  # (after the farm closed its sessions: the gateways end)
    writer.finish()
    if broken is not None:
        reason = "abandoned: output could not be written"
        writer.say(f"{broken}: running jobs killed, the run stopped")
    elif interrupted:
        reason = "interrupted"
    elif farm.halted == "now":
        reason = "halted while running"
    else:
        reason = "unfinished"
    outcome = Outcome(all_jobs, report, skipped, reason, farm.killed)
    for line in outcome.lines(PROG, farm.retired, limit=0 if args.verbose else 10):
        print(line, file=sys.stderr)
    sys.stdout.flush()
    if broken is not None:
        return FAILURE
    if isinstance(interrupted, Terminated):
        return 128 + interrupted.signum  # (as a shell reports a command it ended)
    return INTERRUPTED if interrupted else outcome.exit_code()


def main(argv: Optional[List[str]] = None, stdin: Optional[IO[str]] = None) -> int:
    """Run ``easycluster farm`` with ``argv`` (default ``sys.argv[1:]``); return the exit
    code (module docstring). Never calls ``sys.exit``."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()

    def body() -> int:
        # SIGTERM (a batch system's end) and SIGHUP as Ctrl-C: running jobs are killed on
        # their nodes, the job log is complete, the report is printed
        restore = terminate_as_interrupt()
        try:
            args = parser.parse_args(argv)
            return run_farm(args, stdin if stdin is not None else sys.stdin)
        finally:
            restore()

    return run_command(PROG, parser, body)


if __name__ == "__main__":
    sys.exit(main())
