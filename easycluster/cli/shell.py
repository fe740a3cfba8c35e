"""The ``easycluster shell`` command: run a command on many nodes (ClusterShell's clush).

``easycluster shell -w NODESET [options] COMMAND...`` runs COMMAND on every node of the
set (over ``ssh host COMMAND``, or any local command per node with ``-R exec`` and
``%h``), at most ``-f`` at a time, and prints what they write:

=============== =====================================================================
options         output (stdout; stderr lines go to stderr the same way)
=============== =====================================================================
(none)          ``node: line`` as lines arrive (``-N``: just the line)
``-b``          at the end, nodes with identical output and exit code in one block
                under their folded node set (``-B``: stderr gathered with stdout)
``-L``          at the end, ``node: line``, nodes in natural order
``-bL``         live: the i-th lines of all nodes, the same ones gathered as
                ``NODES: line``, once every node has sent its i-th line or ended
``--diff``      at the end, each output as a diff against the most common one
=============== =====================================================================

Nodes: ``-w`` (node sets; a node listed twice runs twice), ``--hostfile FILE`` (node
names or sets by blanks or lines, ``#`` comments, MPI's ``slots=N`` ignored), ``-g
GROUPS`` (``rack1,rack2``), ``-a`` (every node of the default group source), minus ``-x
NODESET`` and ``-X GROUPS``; ``--pick N`` keeps N of them at random. Standard input,
when it is not a terminal, goes to every node (``tar c dir | easycluster shell -w
n[1-64] tar -C /tmp -x``; ``-n``/``--nostdin`` to stop that). ``--outdir DIR`` and
``--errdir DIR`` also write each node's stdout and stderr to ``DIR/NODE``, a file that
appears complete when the node is done. ``-r`` writes the headers of gathered blocks
with groups (``@rack1,n9``); ``-s SOURCE`` is the group source of ``-g``, ``-X``, ``-a``
and ``-r``, ``-G`` leaves its ``@SOURCE:`` prefix out, ``--groupsconf FILE`` reads the
groups from FILE. ``-d`` prints each node's command line before the run. ``-o`` takes
ssh's options as one word, dashes and all (``-o '-p 2222'``).

Copies: ``easycluster shell -w NODESET --copy FILE... [--dest DIR]`` writes each file
or directory on every node (into DIR, or the same path), renamed into place only once
complete; ``--rcopy FILE... --dest DIR`` fetches them into the local DIR as
``FILE.NODE`` (``Task.copy``/``rcopy``; ``-p`` keeps mode and mtime). With several
files DIR must be a directory and no two may land on one name; a leading ``~`` or
``~/`` in a node's path is that node user's home.

Inside a SLURM allocation (``salloc``, ``sbatch``: ``SLURM_JOB_ID`` is set) and with
none of ``-w``/``-g``/``-a``, the nodes are the allocation's; ``-w @sj:JOBID`` names a
job's nodes from anywhere.

Without a command, commands are read one per line (with a prompt on a terminal) and
each runs on every node (``+NODESET``, ``-NODESET``, ``@NODESET``, ``?``, ``=``,
``!COMMAND``, ``help``: the shell's own lines, as clush's); the exit code is the
largest of theirs (130 if one was interrupted). (clush runs piped lines as one script
in the nodes' login shell: pipe a script into ``sh`` as the command for that,
``easycluster shell -w n[1-4] sh < script.sh``.) ``-u 0`` means no command timeout.

After the run, stderr gets a summary naming every node that did not succeed exactly
once, grouped by class (exit code, timed out, unreachable, host key refused, could not
start here, interrupted), each as a folded node set (``-q``: no summary). A progress line shows
on stderr when it is a terminal (``-P`` forces it, ``--no-progress`` hides it).

Exit codes (``cluster/summary.py``): 0 every node exited 0; 250 some node exited
non-zero (``-S``: the largest exit code instead); 251 some node timed out; 252 some
node unreachable; 253 a host key refused; 254 some node's command could not start here
(a wrong ssh_path); 130 interrupted (143 or 129: SIGTERM or SIGHUP, cleaned up as
after Ctrl-C); 1 easycluster failed; 2 bad usage. Several
classes: the most severe decides (interrupted, could not start, host key, unreachable,
timeout, failed).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, List, Optional

from ..cluster.events import EventHandler
from ..cluster.gather import Gatherer, LineGatherer, LineWriter, write_gathered
from ..cluster.progress import Progress
from ..cluster.summary import Outcome, Summary
from ..cluster.terminal import palette_for
from ..cluster.treeconfig import topology_for
from ..nodeset.nodeset import NodeSet
from . import groupopts, shellconf
from .exitcodes import (
    INTERRUPTED,
    Terminated,
    UsageError,
    run_command,
    terminate_as_interrupt,
)
from .shellevents import ShellHandler
from .shellfiles import OutputFiles, same_dir
from .shellinput import (
    SCRIPT,
    copy_landings,
    copy_operands,
    interactive,
    stdin_for_nodes,
    stdin_is_terminal,
)
from .shellnodes import command_lines, select_nodes
from .shellparser import PROG
from .shellparser import build_parser as build_parser

if TYPE_CHECKING:  # annotations only: the Task and its backends load once a run starts
    from ..cluster.worker import Worker

RAN = frozenset(("hup", "timeout"))  # the states of a node whose command ran
HOSTKEY_HINT = (
    "to trust a host seen for the first time: -o '-oStrictHostKeyChecking=accept-new' "
    "(a changed key needs 'ssh-keygen -R HOST' after checking why it changed)"
)


class Shell:
    """One ``easycluster shell`` invocation: its options, streams and Task."""

    def __init__(self, args: argparse.Namespace, nodes: List[str]) -> None:
        from ..cluster.task import Task  # deferred: `shell --help` starts without the engine

        self.args = args
        self.nodes = nodes
        self.stdout: IO[bytes] = sys.stdout.buffer
        self.stderr: IO[bytes] = sys.stderr.buffer
        self.environ = dict(os.environ)
        self.gathered = bool(args.gather or args.gather_all or args.lines or args.diff)
        self.task = Task()
        task = self.task
        task.set_info("fanout", args.fanout)
        if args.connect_timeout is not None:
            task.set_info("connect_timeout", args.connect_timeout)
        if args.command_timeout is not None:
            task.set_info("command_timeout", args.command_timeout)
        task.set_info("ssh_user", args.user)
        task.set_info("ssh_options", " ".join(args.options))
        if args.ssh_path:
            task.set_info("ssh_path", args.ssh_path)
        task.set_default("backend", KEPT.get(args.worker, args.worker))
        task.set_default("stderr", not args.gather_all)
        topology = topology_for(args.topology, args.no_topology)
        if topology:
            task.load_topology(topology)

    def run(self, command: str, stdin: Any, prefix: bool = True) -> int:
        """Run ``command`` on every node; print its output and summary; return the code.
        ``prefix``: put ``command_prefix`` (``-O``, ``--conf``) before it."""
        if prefix:
            command = f"{self.args.command_prefix} {command}".lstrip()
        if self.args.verbose or self.args.debug:
            print(f"{PROG}: {NodeSet.fromlist(self.nodes)}: {command}", file=sys.stderr)
        if self.args.debug:  # (-d: what runs for each node)
            for line in command_lines(self.task, self.nodes, command, self.args.no_topology):
                print(f"{PROG}: debug: {line}", file=sys.stderr)
        return self.execute(
            lambda h: [self.task.shell(command, nodes=self.nodes, handler=h, stdin=stdin)]
        )

    @property
    def gather(self) -> bool:
        """``-b`` (or ``-B``) is on: output is gathered in blocks."""
        return bool(self.args.gather or self.args.gather_all)

    @gather.setter
    def gather(self, on: bool) -> None:  # (``=`` of an interactive run)
        args = self.args
        args.gather = on
        if not on:
            args.gather_all = args.diff = False
        self.gathered = bool(on or args.lines)

    def run_here(self, command: str) -> int:
        """Run ``command`` on this machine (``!COMMAND`` of an interactive run)."""
        import subprocess

        self.stdout.flush()
        return subprocess.call(command, shell=True)

    def say(self, text: str) -> None:
        print(f"{PROG}: {text}", file=sys.stderr)

    def copy(self, sources: List[str], dest: Optional[str], reverse: bool) -> int:
        """``--copy`` (to the nodes) or ``--rcopy`` (from them) of every source."""
        args = self.args
        if not sources:
            raise UsageError("--copy and --rcopy take the files to copy as arguments")
        if args.worker == "exec":
            raise UsageError("--copy/--rcopy run over ssh; -R exec is not offered for copies")
        if reverse and not dest:
            raise UsageError("--rcopy needs --dest DIR (a local directory)")
        if reverse and dest and not os.path.isdir(dest):
            why = "not a directory" if os.path.exists(dest) else "no such directory"
            raise UsageError(f"--rcopy --dest {dest}: {why} (it must exist)")
        for src in sources if not reverse else ():
            if not os.path.exists(src):
                raise UsageError(f"{src}: no such file or directory to copy")
        into = copy_landings(sources, dest, reverse)
        labels: Dict[Worker, str] = {}

        def schedule(handler: EventHandler) -> List[Worker]:
            workers = []
            for src in sources:
                where = into or os.path.dirname(os.path.abspath(src))
                how = self.task.rcopy if reverse else self.task.copy
                way = f"rcopy {src} to {where} (here)" if reverse else f"copy {src} to {where}"
                if args.verbose or args.debug:  # (-v, -d: what goes where, as for commands)
                    print(f"{PROG}: {NodeSet.fromlist(self.nodes)}: {way}", file=sys.stderr)
                worker = how(src, where, nodes=self.nodes, handler=handler, preserve=args.preserve)
                workers.append(worker)
                labels[worker] = f"{'rcopy' if reverse else 'copy'} {src}"
            return workers

        return self.execute(schedule, labels if len(sources) > 1 else None)

    def execute(
        self,
        schedule: Callable[[EventHandler], List[Worker]],
        labels: Optional[Dict[Worker, str]] = None,
    ) -> int:
        """Run what ``schedule(handler)`` puts on the Task; print output and summary;
        return the exit code. ``labels``: the summary says what failed per worker, as
        ``LABEL: NODES: what happened`` (the sources of a copy)."""
        args = self.args
        palette = palette_for(sys.stdout, self.environ, args.color)
        err_palette = palette_for(sys.stderr, self.environ, args.color)
        label = not args.nolabel
        progress = Progress(
            sys.stderr, len(self.nodes), self.environ, prefix=PROG + ": ", enabled=args.progress
        )
        live_lines = args.lines and (args.gather or args.gather_all) and not args.diff
        live_out = None if self.gathered else LineWriter(self.stdout, label, palette)
        live_err = None if args.gather_all else LineWriter(self.stderr, label, err_palette)
        files = None
        if args.outdir and args.errdir and same_dir(args.outdir, args.errdir):
            raise UsageError("--outdir and --errdir need two directories (both write NODE)")
        if args.outdir or args.errdir:
            files = OutputFiles(args.outdir, args.errdir)
        handler = ShellHandler(live_out, live_err, progress, files)
        workers = schedule(handler)
        if live_lines:  # (-bL: rows of lines gathered as they come, over every slot)
            keys = [k for w in workers for k in w.keys]
            regroup = groupopts.regroup(args)
            handler.out = LineGatherer(self.stdout, keys, label, palette, regroup)
        interrupted: Optional[KeyboardInterrupt] = None
        complete = False
        try:
            self.task.resume()
            complete = True
        except KeyboardInterrupt as e:  # the engine killed and reaped everything already
            interrupted, complete = e, True
        finally:
            progress.clear()
            keys = [k for w in workers for k in w.keys]
            for writer in (handler.out, handler.err):  # (-bL rows, pieces of long lines
                if writer is not None:  # held for a node that never ended: Ctrl-C)
                    writer.end(keys)
            if files is not None:
                files.close(complete)  # (an error: no file under a node's name)
        if self.gathered and not live_lines:
            for worker in workers:
                self._print_gathered(worker)
        self.stdout.flush()
        outcomes = {
            k: Outcome.of_slot(w.node_status(k), w.node_retcode(k)) for w in workers for k in w.keys
        }
        summary = Summary(outcomes)
        if not args.quiet:
            self._print_summary(workers, summary, labels)
        self.stderr.flush()
        if isinstance(interrupted, Terminated):
            raise interrupted  # (SIGTERM, SIGHUP: the session ends too; exit 128 + N)
        return INTERRUPTED if interrupted else summary.exit_code(maxrc=args.maxrc)

    def _print_gathered(self, worker: Worker) -> None:
        args = self.args
        gatherer = Gatherer()
        codes: Dict[str, int] = {}
        for key in worker.keys:
            status = worker.node_status(key)
            if args.diff and status not in RAN:
                continue  # (in the summary; never the reference output of a diff)
            if self.task.results.slot(key).stdout:  # something, if only an empty line
                gatherer.extend(key, worker.node_buffer(key).split(b"\n"))
                if status == "hup":  # (-B: ssh's words of a node never reached have no code)
                    codes[key] = worker.node_retcode(key) or 0
            elif args.diff:
                gatherer.add_key(key)  # (--diff shows a node that ran and printed nothing)
        if args.diff:
            mode = "diff"
        elif args.gather or args.gather_all:
            mode = "block-lines" if args.lines else "blocks"
        else:
            mode = "lines"
        palette = palette_for(sys.stdout, self.environ, args.color)
        write_gathered(
            self.stdout,
            gatherer,
            mode,
            label=not args.nolabel,
            palette=palette,
            codes=codes if mode == "blocks" else None,
            regroup=groupopts.regroup(args),
        )

    def _print_summary(
        self, workers: List[Worker], summary: Summary, labels: Optional[Dict[Worker, str]]
    ) -> None:
        lines = summary.lines(PROG)
        if labels and lines:  # (per worker, its nodes by name: not n1#2 for a 2nd source)
            lines = [f"{PROG}: {labels[w]}: {line}" for w in workers for line in per_node(w)]
            lines.append(summary.lines(PROG)[-1])
        keys = [k for w in workers for k in w.keys]
        dropped = [k for k in keys if self.task.node_dropped(k)]
        if dropped:
            lines.append(
                f"{PROG}: output beyond {self.task.buffer_max} bytes per stream was not kept "
                f"for {NodeSet.fromlist(dropped)} (shown live without -b/-L/--diff)"
            )
        if any(w.node_status(k) == "hostkey" for w in workers for k in w.keys):
            lines.append(f"{PROG}: {HOSTKEY_HINT}")
        for line in lines:
            self.stderr.write(line.encode("utf-8", "backslashreplace") + b"\n")


# In a keeper process (``--keep``): the backend whose sessions outlive each run, by name.
KEPT: Dict[str, Any] = {}


def _through_keeper(args: argparse.Namespace, argv: List[str]) -> int:
    """``--keep``/``--keep-exit``: hand the run to the keeper of these connection options
    (``keeper.py``), started now if none runs."""
    import shlex
    import shutil

    from . import keeper

    if args.worker not in (None, "rpc"):
        raise UsageError(f"--keep keeps rpc sessions: it does not go with -R {args.worker}")
    if args.keep_exit and (args.keep is not None or args.command or args.copy or args.rcopy):
        raise UsageError("--keep-exit ends the keeper: it takes no command and no --keep")
    if args.keep is not None and args.keep <= 0:
        raise UsageError(f"--keep takes seconds > 0, not {args.keep:g}")
    options = [args.user or "", *args.options, str(args.connect_timeout)]
    if args.ssh_path:  # (the sessions' ssh: a keeper of another one must not serve)
        options.append(f"ssh_path={args.ssh_path}")
    # what the sessions' ssh takes from the environment, fixed for a session's life
    program = (shlex.split(args.ssh_path or "ssh") or ["ssh"])[0]
    options.append(f"ssh={shutil.which(program) or program}")
    options += [f"{k}={os.environ.get(k, '')}" for k in ("HOME", "SSH_AUTH_SOCK")]
    if args.keep_exit:
        if not keeper.stop_keeper(options):
            print(f"{PROG}: no keeper was running for these options", file=sys.stderr)
        return 0

    def serve(request: List[str]) -> int:
        if not KEPT:  # (first request in the keeper: its sessions live as long as it)
            KEPT["rpc"] = Shell(args, []).task.rpc_backend()
        groupopts.forget()  # (the groups of this request's environment and directory)
        return main(request)

    limit = args.command_timeout or None  # (-u: also bounds the wait for the keeper)
    return keeper.run_kept(argv, options, args.keep, serve, wait_limit=limit)


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``easycluster shell`` with ``argv`` (default ``sys.argv[1:]``); return the exit
    code (module docstring). Never calls ``sys.exit``."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()

    def body() -> int:
        restore = terminate_as_interrupt()
        try:
            return command()
        finally:
            restore()

    def command() -> int:
        args = parser.parse_args(argv)
        verbose = args.verbose or args.debug  # (clush.conf keys we ignore: named with -v)
        shellconf.apply(args, lambda text: verbose and print(f"{PROG}: {text}", file=sys.stderr))
        if (args.keep is not None or args.keep_exit) and not KEPT:
            return _through_keeper(args, argv)
        args.worker = args.worker or ("rpc" if args.keep is not None else "ssh")
        groupopts.apply(args)
        shell = Shell(args, select_nodes(args))
        try:
            if args.copy or args.rcopy:
                if args.copy and args.rcopy:
                    raise UsageError("--copy and --rcopy go one way each: choose one")
                sources, dest = copy_operands(list(args.command), args)
                return shell.copy(sources, dest, reverse=args.rcopy)
            command = " ".join(args.command).strip()
            if args.worker != "ssh" and "%hosts" in command:
                from ..cluster.backends import HOSTS_REFUSED, uses_hosts

                if uses_hosts(command):  # (the backend's own reading: %%hosts is text)
                    raise UsageError(HOSTS_REFUSED)
            if command:
                return shell.run(command, stdin_for_nodes(args))
            if stdin_is_terminal():
                return interactive(shell)
            stdin = stdin_for_nodes(args)
            if stdin is None:
                why = "is /dev/null" if not args.nostdin else "is not to be read (-n)"
                raise UsageError(f"no command given, and stdin {why}")
            return shell.run(SCRIPT, stdin, prefix=False)  # (clush: `ssh host < script`)
        finally:
            shell.task.close_sessions()  # (-R rpc: the nodes' servers end with them)
            # (a keeper's sessions are its own: KEPT's backend is not the Task's _rpc)

    return run_command(PROG, parser, body)


def per_node(worker: Worker) -> List[str]:
    """The summary lines of one worker's slots (no count), each slot under its node's
    name where the worker has one slot of that node."""
    nodes = [worker.task.slot(k).node for k in worker.keys]
    names = {k: n if nodes.count(n) == 1 else k for k, n in zip(worker.keys, nodes)}
    outcomes = {
        names[k]: Outcome.of_slot(worker.node_status(k), worker.node_retcode(k))
        for k in worker.keys
    }
    return [group.text() for group in Summary(outcomes).groups]
