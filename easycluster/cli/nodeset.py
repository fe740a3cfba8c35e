"""The ``easycluster nodeset`` command: count, expand, fold and regroup node sets.

Operands are read left to right: each positional node set is added (union), and
``-x`` / ``-i`` / ``-X`` apply to what has been gathered so far. An operand holding
ASCII whitespace is several node sets (``"$(scontrol show hostnames)"``); whitespace
next to an operator or inside brackets separates nothing (``"n[1-3] !n2"``). With no
positional node set (and no ``-a``), node sets are read from stdin first
(whitespace separated, ``#`` starts a comment; not for ``-l``/``-L``, which then
list every group); ``-`` reads stdin at that place.
``-R`` works on bare range sets (``1-5,9``) instead. The options are ClusterShell's
``nodeset``/``cluset`` ones.

Groups come from ``--groupsconf FILE``, else from the default configuration
(``$EASYCLUSTER_GROUPS_CONF`` or ClusterShell's groups.conf files), read only when a
group is needed. This module imports only the node-set package: start-up stays light.

Exit codes (``exitcodes``): 0 success; 1 a node set that does not parse or a group
source that fails; 2 bad usage; one message on stderr names what is wrong.
"""

from __future__ import annotations

import argparse
import math
import sys

from ..errors import GroupResolverSourceError, NodeSetError
from ..nodeset.groups import GROUPS_CONF_ENV, GroupResolver
from ..nodeset.indexes import check_expand
from ..nodeset.nodeset import NodeSet
from ..nodeset.rangeset import RangeSet
from ..nodeset.words import split_words
from ..version import VERSION
from .exitcodes import UsageError, run_command
from .nodesetlist import list_groups
from .parsing import Parser

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: the command starts without importing typing)
    from typing import Any, Callable, Iterator, List, Optional, Sequence, Union

    # What the command works on: node sets, or range sets with -R.
    AnySet = Union[NodeSet, RangeSet]

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
    "-O",
    "--output-format",
    "--pick",
    "--axis",
    "--index",
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


def _separator(text: str) -> str:
    """``-S``: the text with its backslash escapes (``\\n``, ``\\t``, ``\\\\``) read."""
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        # Python's own message names a codec and byte offsets, not the option
        raise argparse.ArgumentTypeError(
            f"invalid separator {text!r}: a backslash starts an escape such as \\n or "
            "\\t; write \\\\ for a backslash"
        )


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
    cmd.add_argument("--index", metavar="NODE", help="print the position of NODE in the set")
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
        type=_separator,
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
    parser.add_argument(
        "-R", "--rangeset", action="store_true", help="work on range sets (1-5,9), not node sets"
    )
    parser.add_argument(
        "-O",
        "--output-format",
        default="%s",
        metavar="FORMAT",
        help="printf-style format of each item (-e, -f: each node, before folding)",
    )
    parser.add_argument("--pick", type=_positive, metavar="N", help="keep N nodes at random")
    parser.add_argument(
        "--axis", metavar="RANGESET", help="fold only along these axes (1..n; -1 the last; -f)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print essential output only")
    parser.add_argument("-d", "--debug", action="store_true", help="show group upcalls as they run")
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}")
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


def _words(text: str) -> List[str]:
    """An operand as a list of node sets: split on ASCII whitespace (shell output),
    none next to an operator or inside brackets (``words.split_words``)."""
    return split_words(text) or [""]


def _read_stdin() -> List[str]:
    words: List[str] = []
    for line in sys.stdin:
        words.extend(split_words(line.split("#", 1)[0]))
    return words


def _make(words: List[str], args: argparse.Namespace, resolver: GroupResolver) -> AnySet:
    if args.rangeset:
        return RangeSet.fromlist(words)
    return NodeSet.fromlist(words, resolver=resolver)


def _items(args: argparse.Namespace, items: List[str], autostep: Any = None) -> AnySet:
    """A set of names (or indexes, -R) taken from a set: nothing in them to parse."""
    if args.rangeset:
        return RangeSet(items, autostep)
    return NodeSet.fromnames(items, autostep)


def _compute(args: argparse.Namespace, resolver: GroupResolver, stdin_first: bool) -> AnySet:
    """The set the operands give, left to right; ``stdin_first``: read stdin first when
    there is no positional node set and no ``-a``."""
    result: AnySet = RangeSet() if args.rangeset else NodeSet(resolver=resolver)
    if args.all:
        result.update(NodeSet.fromall(resolver=resolver))
    ops = list(args.ops)
    if stdin_first and not args.all and not any(op == "|" for op, _ in ops):
        ops.insert(0, ("|", "-"))
    for op, text in ops:
        other = _make(_read_stdin() if text == "-" else _words(text), args, resolver)
        if op != "|" and not result and not args.quiet:
            print(f"{PROG}: warning: empty left operand for {op!r}", file=sys.stderr)
        if op == "|":
            result.update(other)  # same kind: both -R or not
        elif op == "-":
            result.difference_update(other)
        elif op == "&":
            result.intersection_update(other)
        else:
            result.symmetric_difference_update(other)
    return result


def _parts(args: argparse.Namespace, nodes: AnySet) -> Iterator[AnySet]:
    if not nodes:  # an empty set is one empty part: one empty line (-c: 0), as ClusterShell
        return iter([nodes])
    if args.contiguous:
        return iter(nodes.contiguous())
    if args.split:
        return iter(nodes.split(args.split))
    return iter([nodes])


def _formatter(fmt: str) -> Callable[[object], str]:
    def apply(value: object) -> str:
        try:
            return fmt % (value,)
        except (TypeError, ValueError) as exc:
            raise NodeSetError(f"bad output format {fmt!r} (-O): {exc}") from exc

    return apply


def fold_axis(text: str) -> List[int]:
    """``--axis`` (a 1-based range set, or one negative number: -1 the last axis) as
    0-based axes; UsageError if it is neither."""
    bad = UsageError(f"bad --axis {text!r}: a range set such as 1-2, or -1")
    if text.startswith("-"):
        try:
            return [int(text)]
        except ValueError:
            raise bad from None
    try:  # (0 is no axis: folded along none, as ClusterShell)
        return [i - 1 for i in RangeSet(text).intiter() if i > 0]
    except NodeSetError:
        raise bad from None


def _check_usage(args: argparse.Namespace) -> None:
    if args.rangeset and (args.all or args.regroup or args.list or args.list_all):
        raise UsageError("-a, -r, -l and -L work on node sets, not with -R")
    if args.split and args.contiguous:
        raise UsageError("--split and --contiguous do not go together")
    if args.axis and (not args.fold or args.rangeset):
        raise UsageError("--axis works only with -f on node sets")
    if args.index is not None and args.pick:
        raise UsageError("--index and --pick do not go together")


def _resolver(args: argparse.Namespace) -> GroupResolver:
    base = (
        GroupResolver.from_file(args.groupsconf) if args.groupsconf else GroupResolver.from_config()
    )
    try:
        return base.with_default(args.groupsource)
    except GroupResolverSourceError:
        raise NodeSetError(
            f"unknown group source {args.groupsource!r} (known: "
            f"{', '.join(base.source_names()) or f'none; use --groupsconf or ${GROUPS_CONF_ENV}'})"
        )


def _need_groups(resolver: GroupResolver, what: str) -> None:
    if not resolver.source_names():
        raise NodeSetError(
            f"{what} needs a group source: no groups.conf found "
            f"(use --groupsconf or ${GROUPS_CONF_ENV})"
        )


def _run(args: argparse.Namespace, out: List[str]) -> None:
    _check_usage(args)
    if args.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format=f"{PROG}: %(message)s")
    resolver = _resolver(args)
    if args.list_sources:
        for pos, name in enumerate(resolver.source_names()):
            out.append(name + (" (default)" if pos == 0 and not args.quiet else ""))
        return
    listing = args.list or args.list_all
    if listing or args.all or args.regroup:
        _need_groups(resolver, "-l" if listing else "-a" if args.all else "-r")
    if listing:
        # as ClusterShell: stdin only with '-'; any operand (even -x alone) filters
        given = _compute(args, resolver, stdin_first=False) if args.ops or args.all else None
        if given is not None and not isinstance(given, NodeSet):  # refused by _check_usage
            raise UsageError("-l needs node sets")
        list_groups(
            resolver,
            out,
            level=listing,
            every_source=bool(args.list_all),
            named_source=args.groupsource,
            groupbase=args.groupbase,
            nodes=given,
            warn=None if args.quiet else PROG,
        )
        return
    nodes = _compute(args, resolver, stdin_first=True)
    if args.slice:
        # positions past the end are dropped before anything is listed: -I 0-1e9 on
        # ten nodes looks at ten positions
        size = len(nodes)
        wanted = [range(s.start, min(s.stop, size), s.step) for s in RangeSet(args.slice).slices()]
        check_expand(sum(map(len, wanted)))
        nodes = _items(args, [str(nodes[i]) for positions in wanted for i in positions])
    if args.autostep == "auto":
        nodes.autostep = max(3, len(nodes))
    elif isinstance(args.autostep, float):
        nodes.autostep = int(math.ceil(len(nodes) * args.autostep))
    else:
        nodes.autostep = args.autostep
    if args.axis and isinstance(nodes, NodeSet):
        nodes.fold_axis = fold_axis(args.axis)
    if args.pick and args.pick < len(nodes):
        import random  # only --pick needs it (start-up time)

        kept = sorted(random.sample(range(len(nodes)), args.pick))  # positions: no listing
        picked = _items(args, [str(nodes[i]) for i in kept], nodes.autostep)
        if isinstance(picked, NodeSet) and isinstance(nodes, NodeSet):
            picked.fold_axis = nodes.fold_axis
        nodes = picked
    fmt = _formatter(args.output_format)
    if args.index is not None:
        out.append(fmt(nodes.index(args.index)))
        return
    sep = args.separator
    for part in _parts(args, nodes):
        part.autostep = nodes.autostep
        if args.count:
            out.append(fmt(len(part)))
        elif args.expand:
            check_expand(len(part))  # (one line holding every name)
            out.append(sep.join(map(fmt, part)))
        elif args.regroup and isinstance(part, NodeSet):
            out.append(fmt(part.regroup(args.groupsource, noprefix=args.groupbase)))
        elif args.output_format != "%s" and isinstance(part, NodeSet):
            # ClusterShell formats each node, then folds the result; a formatted
            # string is one name (no group is resolved, no operator applied), without
            # the whitespace around it (-O %5s), as ClusterShell reads it
            names = [fmt(name).strip(" \t\n\r\f\v") for name in part]
            again = NodeSet.fromnames(names, nodes.autostep)
            again.fold_axis = part.fold_axis
            out.append(str(again))
        else:
            out.append(fmt(str(part)))  # -R: the folded range set, as ClusterShell


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
            args.index is not None,
        )
        if not any(commands):
            raise UsageError(
                "no command given: use one of -c -e -f -r -l -L --list-sources --index"
            )
        out: List[str] = []
        try:
            _run(args, out)
        except OverflowError:
            # a count beyond what len() can return (a huge range or product)
            raise NodeSetError("range too large")
        finally:
            # what was made before an error is printed too (-L: the sources that
            # worked), then run_command prints the error
            if out:
                sys.stdout.write("\n".join(out) + "\n")
            sys.stdout.flush()
        return 0

    return run_command(PROG, parser, body)
