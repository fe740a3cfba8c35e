"""The ``easycluster nodeset`` command: count, expand, fold and regroup node sets.

Operands are read left to right: each positional node set is added (union), and
``-x`` / ``-i`` / ``-X`` apply to what has been gathered so far. With no
positional node set (and no ``-a``), node sets are read from stdin first
(whitespace separated, ``#`` starts a comment); ``-`` reads stdin at that place.

Exit codes (``exitcodes``): 0 success; 1 a node set that does not parse or a group
source that fails; 2 bad usage; one message on stderr names what is wrong.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Iterator, List, Optional, Sequence, Union

from ..errors import NodeSetError
from ..nodeset.groups import GROUPS_CONF_ENV, GroupResolver
from ..nodeset.nodeset import NodeSet
from ..nodeset.rangeset import RangeSet
from .exitcodes import Parser, UsageError, run_command

PROG = "easycluster nodeset"
_VALUE_OPTS = {
    "-x",
    "--exclude",
    "-i",
    "--intersection",
    "-X",
    "--xor",
    "-s",
    "--groupsource",
    "-S",
    "--separator",
    "--split",
    "--autostep",
    "--groupsconf",
    "-I",
    "--slice",
}


class _Operand(argparse.Action):
    """Record an operand and its operation, in command-line order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Union[str, Sequence[Any], None],
        option_string: Optional[str] = None,
    ) -> None:
        ops = getattr(namespace, "ops", None) or []
        ops.append((self.const, values))
        namespace.ops = ops


def _autostep(text: str) -> object:
    if text == "auto":
        return text
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid autostep {text!r}: use N, P% or 'auto'")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser (positional node sets arrive as hidden ``--node`` options)."""
    parser = Parser(
        prog=PROG,
        usage=f"{PROG} COMMAND [OPTIONS] [NODESET ...] [-x|-i|-X NODESET ...]",
        description="Count, expand, fold or regroup node sets such as node[1-100].",
        epilog=f"Groups file: --groupsconf or ${GROUPS_CONF_ENV}. Exit codes: 0 ok, 1 error, "
        "2 usage.",
    )
    cmd = parser.add_mutually_exclusive_group()
    cmd.add_argument("-c", "--count", action="store_true", help="print the number of nodes")
    cmd.add_argument("-e", "--expand", action="store_true", help="print every node name")
    cmd.add_argument("-f", "--fold", action="store_true", help="print the folded node set")
    cmd.add_argument("-r", "--regroup", action="store_true", help="fold using node groups")
    cmd.add_argument(
        "-l",
        "--list",
        action="count",
        default=0,
        help="list groups of the source (-ll: with nodes, -lll: and counts)",
    )
    cmd.add_argument(
        "-L",
        "--list-all",
        action="count",
        default=0,
        help="list groups of every source (-LL, -LLL as for -l)",
    )
    cmd.add_argument(
        "--list-sources",
        "--groupsources",
        action="store_true",
        help="list the group sources, the default one first",
    )
    parser.add_argument(
        "-x",
        "--exclude",
        action=_Operand,
        const="-",
        metavar="NODESET",
        help="remove these nodes (difference)",
    )
    parser.add_argument(
        "-i",
        "--intersection",
        action=_Operand,
        const="&",
        metavar="NODESET",
        help="keep only these nodes (intersection)",
    )
    parser.add_argument(
        "-X",
        "--xor",
        action=_Operand,
        const="^",
        metavar="NODESET",
        help="symmetric difference with these nodes",
    )
    parser.add_argument("--node", action=_Operand, const="|", help=argparse.SUPPRESS)
    parser.add_argument("-a", "--all", action="store_true", help="start from all nodes")
    parser.add_argument("-s", "--groupsource", metavar="SOURCE", help="group source to use")
    parser.add_argument("--groupsconf", metavar="FILE", help="groups file")
    parser.add_argument(
        "-G", "--groupbase", action="store_true", help="no source prefix in group names (-r, -l)"
    )
    parser.add_argument(
        "-S",
        "--separator",
        default=" ",
        metavar="SEP",
        help="separator for -e (escapes such as \\n work)",
    )
    parser.add_argument(
        "-I", "--slice", metavar="RANGESET", help="keep the nodes at these 0-based positions"
    )
    parser.add_argument("--split", type=_positive, metavar="N", help="print N sub-sets")
    parser.add_argument("--contiguous", action="store_true", help="print contiguous sub-sets")
    parser.add_argument(
        "--autostep",
        type=_autostep,
        metavar="N|P%|auto",
        help="fold evenly spaced indexes as a-b/step",
    )
    parser.set_defaults(ops=[])
    return parser


def _tag_positionals(argv: Sequence[str]) -> List[str]:
    """Turn positional node sets into ``--node=X`` so their order with -x/-i/-X is kept."""
    out: List[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            out.extend(f"--node={t}" for t in argv[i + 1 :])
            break
        if token.startswith("-") and token != "-":
            out.append(token)
            if token in _VALUE_OPTS and i + 1 < len(argv):
                out.append(argv[i + 1])
                i += 1
        else:
            out.append(f"--node={token}")
        i += 1
    return out


def _read_stdin(resolver: Optional[GroupResolver]) -> NodeSet:
    words: List[str] = []
    for line in sys.stdin:
        words.extend(line.split("#", 1)[0].split())
    return NodeSet.fromlist(words, resolver=resolver)


def _compute(args: argparse.Namespace, resolver: Optional[GroupResolver]) -> NodeSet:
    result = NodeSet(resolver=resolver)
    if args.all:
        if resolver is None:
            raise NodeSetError(f"-a needs a groups file (--groupsconf or ${GROUPS_CONF_ENV})")
        result.update(NodeSet.fromall(resolver))
    ops = list(args.ops)
    if not args.all and not any(op == "|" for op, _ in ops):
        ops.insert(0, ("|", "-"))
    for op, text in ops:
        other = _read_stdin(resolver) if text == "-" else NodeSet(text, resolver=resolver)
        if op == "|":
            result.update(other)
        elif op == "-":
            result.difference_update(other)
        elif op == "&":
            result.intersection_update(other)
        else:
            result.symmetric_difference_update(other)
    return result


def _list_groups(
    args: argparse.Namespace, resolver: GroupResolver, nodes: NodeSet, out: List[str]
) -> None:
    level = args.list or args.list_all
    sources = resolver.source_names() if args.list_all else [resolver.default]
    for source in sources:
        prefix = "@" if (not args.list_all or args.groupbase) else f"@{source}:"
        for group in resolver.groups(source):
            members = NodeSet(resolver.resolve(group, source), resolver=resolver)
            if nodes:
                members = members & nodes
                if not members:
                    continue
            line = prefix + group
            if level >= 2:
                line += f" {members}"
            if level >= 3:
                line += f" {len(members)}"
            out.append(line)


def _parts(args: argparse.Namespace, nodes: NodeSet) -> Iterator[NodeSet]:
    if args.contiguous:
        return nodes.contiguous()
    if args.split:
        return nodes.split(args.split)
    return iter([nodes])


def _run(args: argparse.Namespace, out: List[str]) -> None:
    path = args.groupsconf
    base = GroupResolver.from_file(path) if path else GroupResolver.from_env()
    resolver = base.with_default(args.groupsource) if base is not None else None
    if resolver is None and args.groupsource:
        raise NodeSetError(
            f"no groups file to find source {args.groupsource!r} "
            f"(use --groupsconf or ${GROUPS_CONF_ENV})"
        )
    if args.list_sources:
        for pos, name in enumerate(resolver.source_names() if resolver else []):
            out.append(name + (" (default)" if pos == 0 else ""))
        return
    listing = args.list or args.list_all
    if listing and resolver is None:
        raise NodeSetError(f"no groups file (use --groupsconf or ${GROUPS_CONF_ENV})")
    nodes = NodeSet() if listing and not args.ops and not args.all else _compute(args, resolver)
    if listing:
        if resolver is None:  # refused above when listing; kept explicit for the reader
            raise NodeSetError("listing groups needs a groups file")
        _list_groups(args, resolver, nodes, out)
        return
    if args.slice:
        picked = list(nodes)
        nodes = NodeSet.fromlist(
            [picked[int(i)] for i in RangeSet(args.slice).intiter() if int(i) < len(picked)],
            resolver=resolver,
        )
    if args.autostep == "auto":
        nodes.autostep = max(3, len(nodes))
    elif isinstance(args.autostep, float):
        nodes.autostep = int(math.ceil(len(nodes) * args.autostep))
    else:
        nodes.autostep = args.autostep
    sep = args.separator.encode("latin-1", "backslashreplace").decode("unicode_escape")
    for part in _parts(args, nodes):
        part.autostep = nodes.autostep
        if args.count:
            out.append(str(len(part)))
        elif args.expand:
            out.append(sep.join(part))
        elif args.regroup:
            if base is None:
                raise NodeSetError(f"-r needs a groups file (--groupsconf or ${GROUPS_CONF_ENV})")
            out.append(part.regroup(base, source=args.groupsource, noprefix=args.groupbase))
        else:
            out.append(str(part))


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``easycluster nodeset`` with ``argv`` (default ``sys.argv[1:]``); return the exit
    code (see ``exitcodes``).

    Writes results to stdout and one error message to stderr. Never calls ``sys.exit``
    (``--help`` prints help and returns 0).
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(_tag_positionals(argv))
        commands = (
            args.count,
            args.expand,
            args.fold,
            args.regroup,
            args.list,
            args.list_all,
            args.list_sources,
        )
        if not any(commands):
            raise UsageError("no command given: use one of -c -e -f -r -l -L --list-sources")
        out: List[str] = []
        _run(args, out)
        if out:
            sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()
        return 0

    return run_command(PROG, parser, body)
