"""The ``easycluster gather`` command (ClusterShell's ``clubak``, pdsh's ``dshbak``).

Reads ``key: line`` records on stdin (what pdsh, clush and ``easycluster shell`` print),
splits each at the first separator (``-S``, default ``:``), drops the one space that
follows it and the blanks around the key, and prints the lines gathered
(``cluster/gather.py`` does the display):

=========== =================================================================
options     output
=========== =================================================================
(none)      one block per key, keys in natural order, each under its header
``-b``      keys with identical output in one block under their folded set
``-L``      ``key: line``, keys in natural order (``-bL``: ``NODES: line``)
``-N``      no header and no ``key:`` prefix
``--diff``  each output as a unified diff against the most common one
=========== =================================================================

Keys (``--interpret-keys``): ``auto`` takes a plain name as it is, expands a key
written in node-set notation (``n[1-2]: x`` counts for n1 and n2, so gathered output
can be gathered again) and keeps a key that does not parse as literal text; ``never``
takes every key as literal text (no expansion, no folding); ``always`` is ``auto``
but a key that does not parse is an error. Unlike clubak's ``auto``, one odd key does
not turn folding off for the others.

Input is bytes: a line may end with CR LF (the CR is dropped, as clubak does), and
undecodable bytes pass through unchanged (keys are decoded with
``surrogateescape``). A line without the separator (or with an empty key) is reported
on stderr with its line number (the first ten; then a count) and left out of the
output; the command then exits 1, after printing everything else. clubak stops at such
a line with an error and prints nothing.

``-r`` gathers (as ``-b``: clubak's ``-r`` does too) and writes headers with the groups
their nodes fill (``@rack1,n9``), from the group
source ``-s`` names (``-G``: without its ``@SOURCE:`` prefix; ``--groupsconf FILE``:
groups read from FILE); ``--axis`` folds headers along those axes only.
``-T/--tree`` (clubak's trace mode) and ``-v/-d`` are not offered; ``-c`` and ``-B`` are ``-b``, and
``-F/--fast`` is accepted and changes nothing (this command is always the fast one).

Exit codes (``exitcodes``): 0 success; 1 malformed input lines, or a key that does not
parse with ``--interpret-keys always``; 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Dict, List, Optional, Tuple

from ..cluster.gather import Gatherer, write_gathered
from ..cluster.terminal import palette_for
from ..errors import NodeSetError
from ..nodeset.nodeset import NodeSet
from ..nodeset.pattern import is_plain
from . import groupopts
from .exitcodes import FAILURE, OK, UsageError, run_command
from .gatherparser import INTERPRET_CHOICES as INTERPRET_CHOICES
from .gatherparser import PROG
from .gatherparser import build_parser as build_parser

MAX_REPORTED = 10


Records = Dict[bytes, List[bytes]]
Malformed = List[Tuple[int, bytes]]


def split_records(data: bytes, sep: bytes) -> Tuple[Records, Malformed]:
    """Lines of ``data`` per key (bytes, stripped), in input order, and the malformed
    lines as ``(line number, line)``. A final newline ends the last line; it does not
    start an empty one. A line may end with CR LF."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    records: Records = {}
    malformed: Malformed = []
    # the hot loop of the command: one partition, one dict lookup per line
    for number, line in enumerate(lines, 1):
        key, found, rest = line.partition(sep)
        key = key.strip()
        if not found or not key:
            malformed.append((number, line))
            continue
        if rest[:1] == b" ":
            rest = rest[1:]
        if rest[-1:] == b"\r":  # (a CR LF line ends as any other, as clubak's do)
            rest = rest[:-1]
        bucket = records.get(key)
        if bucket is None:
            records[key] = [rest]
        else:
            bucket.append(rest)
    return records, malformed


def _expander(interpret: str) -> Callable[[str], Optional[List[str]]]:
    """What a key stands for: None for itself, else the node names it expands to."""

    def expand(key: str) -> Optional[List[str]]:
        if interpret == "never" or is_plain(key):
            return None
        try:
            return list(NodeSet(key))
        except NodeSetError:
            if interpret == "always":
                raise
            return None

    return expand


def build_gatherer(data: bytes, sep: bytes, interpret: str) -> Tuple[Gatherer, Malformed]:
    """The gathered records of ``data`` (``interpret`` as ``--interpret-keys``)."""
    records, malformed = split_records(data, sep)
    expand = _expander(interpret)
    names = {raw: raw.decode("utf-8", "surrogateescape") for raw in records}
    targets = {raw: expand(name) for raw, name in names.items()}
    gatherer = Gatherer(literal=interpret == "never")
    if all(t is None for t in targets.values()):
        for raw, lines in records.items():
            gatherer.extend(names[raw], lines)
        return gatherer, malformed
    # Some keys stand for several nodes: walk the input again in order, so a node that
    # also has lines of its own keeps every line where it came.
    for raw in records:
        targets[raw] = targets[raw] or [names[raw]]
    del records
    for line in data.split(b"\n"):
        key, found, rest = line.partition(sep)
        key = key.strip()
        nodes = targets.get(key) if found else None
        if nodes is None:
            continue
        if rest[:1] == b" ":
            rest = rest[1:]
        if rest[-1:] == b"\r":  # (as in split_records)
            rest = rest[:-1]
        for node in nodes:
            gatherer.add(node, rest)
    return gatherer, malformed


def _mode(args: argparse.Namespace) -> str:
    if args.diff:
        return "diff"
    if args.gather or args.regroup:  # (-r gathers, as clubak's)
        return "block-lines" if args.lines else "blocks"
    return "lines" if args.lines else "per-key"


def _report(malformed: Malformed, sep: bytes, quiet: bool) -> None:
    shown = [] if quiet else malformed[:MAX_REPORTED]
    shown_sep = sep.decode("utf-8", "backslashreplace")
    for number, line in shown:
        text = line.decode("utf-8", "backslashreplace")
        what = "no node name before" if sep in line else "no separator"
        print(f"{PROG}: line {number}: {what} {shown_sep!r}: {text!r}", file=sys.stderr)
    rest = len(malformed) - len(shown)
    if rest:
        more = "" if not shown else " more"
        print(f"{PROG}: {rest}{more} malformed line(s) left out", file=sys.stderr)


def _separator(text: str) -> bytes:
    try:  # (escapes as \t, as clubak reads them; a lone trailing \ is itself)
        sep = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        sep = text
    if not sep or "\n" in sep:
        raise UsageError(f"the separator must be non-empty and on one line: {text!r}")
    return sep.encode("utf-8", "surrogateescape")


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``easycluster gather`` with ``argv`` (default ``sys.argv[1:]``): read
    ``sys.stdin.buffer``, write ``sys.stdout.buffer``, report on stderr; return the
    exit code (module docstring). Never calls ``sys.exit``."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        groupopts.apply(args)
        sep = _separator(args.separator)
        data = sys.stdin.buffer.read()
        gatherer, malformed = build_gatherer(data, sep, args.interpret_keys)
        del data
        palette = palette_for(sys.stdout, os.environ, args.color)
        out = sys.stdout.buffer
        try:
            write_gathered(
                out,
                gatherer,
                _mode(args),
                label=not args.nolabel,
                palette=palette,
                regroup=groupopts.regroup(args),
            )
            out.flush()
        except BrokenPipeError:
            # the reader left (| head): stop quietly, and keep the interpreter's own
            # flush at exit from failing again on the closed pipe
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return FAILURE
        if malformed:
            _report(malformed, sep, args.quiet)
            return FAILURE
        return OK

    return run_command(PROG, parser, body)
