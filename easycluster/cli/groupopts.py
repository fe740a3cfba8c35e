"""The group options ``easycluster shell`` and ``gather`` share with clush and clubak.

``-r/--regroup`` writes the node sets of gathered headers with the groups they fill
(``@rack1,n9``); ``-s/--groupsource SOURCE`` names the group source (of ``-r``, and of
the shell's ``-g``, ``-X`` and ``-a``); ``-G/--groupbase`` leaves its ``@SOURCE:``
prefix out; ``--groupsconf FILE`` reads the groups from FILE instead of the usual
configuration files; ``--axis RANGESET`` folds the headers' node sets along those axes
only (``n[1-2]-[1-2]`` stays ``n1-[1-2],n2-[1-2]`` with ``--axis 2``). ``apply(args)``
checks them before anything runs.

The node set modules are imported by the functions that use them, not at the top: a
parser built for ``--help`` (``add_options``) needs none of them.
"""

from __future__ import annotations

import argparse
import os

from .exitcodes import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: --help builds the parser without typing)
    from typing import Any, Optional

    from ..cluster.slots import Regroup

# The --groupsconf this process applied last: a shell keeper serves many runs, and a
# run without --groupsconf must not keep the previous run's file.
_applied: Optional[str] = None


def add_options(parser: Any, what: str = "-r") -> None:
    """Add ``-r``, ``-s``, ``-G`` and ``--groupsconf`` to ``parser`` (a parser or an
    argument group); ``what`` says what ``-s`` names a source for (in the help)."""
    parser.add_argument(
        "-r", "--regroup", action="store_true", help="headers written with groups (@rack1)"
    )
    parser.add_argument(
        "-s",
        "--groupsource",
        metavar="SOURCE",
        help=f"the group source of {what} (default: the configured one)",
    )
    parser.add_argument(
        "-G", "--groupbase", action="store_true", help="no @SOURCE: prefix in -r headers"
    )
    parser.add_argument("--groupsconf", metavar="FILE", help="read the groups from FILE")
    parser.add_argument(
        "--axis",
        metavar="RANGESET",
        help="fold header node sets only along these axes (1..n of n-D names; -1 the last)",
    )


def apply(args: argparse.Namespace) -> None:
    """Use ``--groupsconf``, and check that ``-s`` names a configured source
    (UsageError saying which ones are)."""
    from ..nodeset.std import (
        set_std_group_resolver,
        set_std_group_resolver_config,
        std_group_resolver,
    )

    global _applied
    if args.groupsconf != _applied:
        if args.groupsconf and not os.access(args.groupsconf, os.R_OK):
            raise UsageError(f"--groupsconf {args.groupsconf}: cannot read it")
        if args.groupsconf:
            set_std_group_resolver_config(args.groupsconf)
        else:
            set_std_group_resolver(None)  # (back to the configuration files)
        _applied = args.groupsconf
    source: Optional[str] = args.groupsource
    if source and not std_group_resolver().has_source(source):
        known = ", ".join(std_group_resolver().source_names()) or "none configured"
        raise UsageError(f"-s {source}: unknown group source (known: {known})")


def forget() -> None:
    """Another caller's command comes (in the ``--keep`` keeper, with its own
    environment and working directory): the groups are read again, from its files."""
    from ..nodeset.std import set_std_group_resolver

    global _applied
    set_std_group_resolver(None)
    _applied = None


def regroup(args: argparse.Namespace) -> Optional[Regroup]:
    """What ``write_gathered(regroup=...)`` takes for these options (None: neither
    ``-r`` nor ``--axis``). UsageError for a bad ``--axis``."""
    # (here, not at the top: a parser built for --help needs none of the folding)
    from ..cluster.slots import Regroup
    from .nodeset import fold_axis

    axis = fold_axis(args.axis) if getattr(args, "axis", None) else None
    if not args.regroup and axis is None:
        return None
    return Regroup(args.groupsource, args.groupbase, bool(args.regroup), axis)
