"""Which nodes ``easycluster shell`` runs on: its node options, and host files.

The slots come in the order given: ``-w`` node sets, then ``--hostfile`` files, then
``-g`` groups, then ``-a``; a node named twice runs twice (the engine keys the second
listing ``node#2``). ``-x``/``-X`` then remove nodes, ``--pick N`` keeps N at random.
With none of ``-w``, ``--hostfile``, ``-g`` or ``-a``, a run inside a SLURM allocation
takes the allocation's nodes. ``-s SOURCE`` names the group source of ``-g``, ``-X``
and ``-a`` (default: the configuration's default source).

A host file (``--hostfile``/``--machinefile``, clush's and MPI's habit) holds node
names or node sets separated by blanks or lines; ``#`` starts a comment, and words
with ``=`` (an MPI host file's ``slots=4``) are attributes of the node before them,
not nodes.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import sys
from typing import Any, List, Optional

from ..cluster.slots import top_level_items
from ..nodeset.nodeset import NodeSet
from .exitcodes import UsageError

OPERATORS = "!&^"  # (an item using them is an expression, whose emptiness may be meant)


def select_nodes(args: argparse.Namespace) -> List[str]:
    """The slots to run on, in the order given (duplicates kept), or UsageError."""
    from ..cluster.task import node_list  # the engine loads only once a run starts

    names: List[str] = []
    for text in args.nodes:
        check_groups(text, f"-w {text}")
        names += node_list(text)
    for path in args.hostfiles:
        for text in read_hostfile(path):
            names += node_list(text)
    for group in args.groups:
        ref = group_ref(group, args.groupsource)
        check_groups(ref, f"-g {group}")
        names += list(NodeSet(ref))
    if args.all:
        names += list(NodeSet.fromall(groupsource=args.groupsource))
    if not (args.nodes or args.hostfiles or args.groups or args.all):
        names = allocation_default()
    if not names:
        named = [
            *(f"-w {shlex.quote(w)}" for w in args.nodes),
            *(f"--hostfile {h}" for h in args.hostfiles),
            *(f"-g {g}" for g in args.groups),
            *(["-a"] if args.all else []),
        ]
        raise UsageError(f"no node in {', '.join(named)} (empty, or an unknown group?)")
    excluded = NodeSet()
    for text in args.exclude:
        found = NodeSet(text)
        if not found and "@" in text:
            _warn(f"-x {text}: no node in it (an unknown group?): nothing excluded by it")
        excluded.update(found)
    for group in args.exclude_groups:
        found = NodeSet(group_ref(group, args.groupsource))
        if not found:
            _warn(f"-X {group}: no node in it (an unknown group?): nothing excluded by it")
        excluded.update(found)
    if excluded:
        names = [n for n in names if n not in excluded]
    if args.pick is not None:
        if args.pick < 1:
            raise UsageError(f"--pick takes a number of nodes >= 1, not {args.pick}")
        chosen = set(random.sample(range(len(names)), min(args.pick, len(names))))
        names = [n for i, n in enumerate(names) if i in chosen]
    if not names:
        raise UsageError("no node left to run on (every node was excluded)")
    return names


def check_groups(text: str, where: str) -> None:
    """UsageError for each ``@group`` item of node-set ``text`` (given as ``where``:
    ``-g rack1``, ``FILE:LINE``) with no node: a mistyped group must not make a run
    quietly smaller."""
    for item in top_level_items(text):
        plain = item.startswith("@") and not any(op in item for op in OPERATORS)
        if plain and not NodeSet(item):
            raise UsageError(
                f"{where}: no node in {item} (an unknown or empty group?): check its "
                "name ('easycluster nodeset -l' lists the groups)"
            )


def _warn(text: str) -> None:
    print(f"easycluster shell: warning: {text}", file=sys.stderr)


def group_ref(groups: str, source: Optional[str]) -> str:
    """``-g GROUPS`` as node-set text: each comma-separated group (commas inside
    brackets belong to a group pattern: ``rack[1,3]``) as ``@GROUP``, or
    ``@SOURCE:GROUP`` with ``-s``; a group written with its own ``@`` or source is
    taken as written. ``rack1,rack2`` is both groups, as clush reads it."""
    refs = []
    for group in top_level_items(groups):
        if group.startswith("@"):
            refs.append(group)
        elif source and ":" not in group:
            refs.append(f"@{source}:{group}")
        else:
            refs.append("@" + group)
    return ",".join(refs)


def read_hostfile(path: str) -> List[str]:
    """The node sets written in the host file ``path`` (module doc), in file order.
    UsageError if it cannot be read (saying why)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError(f"--hostfile {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"--hostfile {path}: not UTF-8 text (byte {e.start})") from None
    words: List[str] = []
    for line in text.splitlines():
        words += [w for w in line.split("#", 1)[0].split() if "=" not in w]
    return words


def allocation_default() -> List[str]:
    """The nodes when none are named: the SLURM allocation's this runs in (as clush
    users expect inside ``salloc``/``sbatch``), else UsageError."""
    if not (os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOBID")):
        raise UsageError(
            "no nodes: give -w NODESET, --hostfile FILE, -g GROUP or -a "
            "(or run inside a SLURM allocation)"
        )
    from ..launch.srun import allocation_nodes  # only SLURM users pay for it

    return allocation_nodes()


def command_lines(task: Any, nodes: List[str], command: str, flat: bool) -> List[str]:
    """``-d``: what runs for each of ``nodes`` (ssh and exec: the local command line),
    as ``node: line`` (one line if the Task goes through gateways, unless ``flat``)."""
    from ..cluster.backends import ExecBackend
    from ..cluster.sshexec import SshBackend

    if task.topology is not None and not flat:
        return ["through the gateways of the topology"]
    backend = task.backend(None)
    lines = []
    for rank, node in enumerate(nodes):
        if isinstance(backend, SshBackend):
            line = shlex.join(backend.argv(node, command))
        elif isinstance(backend, ExecBackend):
            line = shlex.join(backend.argv(node, rank, command))
        else:
            line = f"{command} (in the rpc session)"
        lines.append(f"{node}: {line}")
    return lines
