"""``easycluster gather``'s options: ``build_parser`` (the command itself is
``gather.py``; what each option does is told there). Apart from the command so that
``--help`` builds the parser without importing the gathering code."""

from __future__ import annotations

import argparse

from ..cluster.colorchoice import COLOR_CHOICES
from ..version import VERSION
from . import groupopts
from .parsing import Parser

PROG = "easycluster gather"
INTERPRET_CHOICES = ("never", "always", "auto")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``easycluster gather``."""
    parser = Parser(
        prog=PROG,
        description="Gather 'node: line' output (from pdsh, clush or easycluster shell) "
        "read on stdin.",
        epilog="Exit codes: 0 ok, 1 malformed input lines (reported on stderr), 2 usage.",
    )
    parser.add_argument(
        "-b",
        "-c",
        "-B",
        "--dshbak",
        dest="gather",
        action="store_true",
        help="gather nodes with identical output into one block",
    )
    parser.add_argument(
        "-L", dest="lines", action="store_true", help="print 'node: line', nodes in order"
    )
    parser.add_argument(
        "-N", dest="nolabel", action="store_true", help="no header and no node prefix"
    )
    parser.add_argument(
        "--diff", action="store_true", help="show how each output differs from the most common"
    )
    parser.add_argument(
        "-S",
        "--separator",
        default=":",
        metavar="SEP",
        help="separator between node and line (default ':'; escapes such as \\t work)",
    )
    parser.add_argument(
        "--interpret-keys",
        choices=INTERPRET_CHOICES,
        default="auto",
        help="read keys as node sets: auto (default), always, never",
    )
    parser.add_argument(
        "--color", choices=COLOR_CHOICES, default="auto", help="colour headers and prefixes"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="report malformed lines by count only"
    )
    groupopts.add_options(parser)
    parser.add_argument("-F", "--fast", action="store_true", help="accepted; no effect")
    parser.add_argument("--version", action="version", version=f"easycluster {VERSION}")
    return parser
