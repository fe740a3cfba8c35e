"""``easycluster nodeset -l/-L``: list the groups of one source or of every source.

What is printed, one group a line (ClusterShell's ``nodeset -l`` forms):

======================  ==========================================================
``-l`` / ``-L``         ``@group`` names only: asks the source for its group list,
                        never for a group's nodes (one ``list`` upcall, no ``map``)
``-ll`` / ``-LL``       ``@group NODES``
``-lll`` / ``-LLL``     ``@group NODES COUNT``; with node sets given,
                        ``COUNT/GROUPSIZE``
======================  ==========================================================

Names are ``@source:group`` with ``-L`` (every source, the default one too) and with
``-l -s SOURCE``; ``@group`` with plain ``-l`` or with ``-G``. When node sets are
given (even one that came out empty), only the groups meeting them are listed, with
the nodes they have in common. A group's text is read in its own source: ``@io`` in
a group of ``roles`` is ``@roles:io``.

A source that has no ``list`` upcall is an error for ``-l`` and a warning for ``-L``.
Under ``-L`` a source that fails (a failing upcall, a group that does not parse) does
not stop the listing: the other sources are listed, then ``SourceFailures`` is raised
naming every source that failed.
"""

from __future__ import annotations

import sys

from ..errors import GroupSourceNoUpcall, NodeSetError, NodeSetExternalError
from ..nodeset.groups import GroupResolver
from ..nodeset.nodeset import NodeSet

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional

__all__ = ["SourceFailures", "list_groups"]


class SourceFailures(NodeSetExternalError):
    """Some group sources could not be listed (the message names each, with why)."""


def _lines(
    resolver: GroupResolver,
    source: str,
    prefix: str,
    level: int,
    nodes: Optional[NodeSet],
    out: List[str],
) -> None:
    """Append the lines of one source to ``out`` as they are made."""
    src = resolver.source(source)
    if not src.can_list:  # its empty group list would read as "no groups" (ClusterShell)
        raise GroupSourceNoUpcall(f"group source {source!r} has no 'list' upcall", src)
    if nodes is not None:
        found = nodes.groups(source, noprefix=True, resolver=resolver)
        for name in sorted(found):
            members, common = found[name]
            line = prefix + name[1:]
            if level >= 2:
                line += f" {common}"
            if level >= 3:
                line += f" {len(common)}/{len(members)}"
            out.append(line)
        return
    own = resolver.with_default(source)  # '@g' inside a group's text: g of this source
    for group in resolver.groups(source):
        line = prefix + group
        if level >= 2:  # only then are the group's nodes needed (a 'map' upcall)
            members = NodeSet(resolver.resolve(group, source), resolver=own)
            line += f" {members}"
            if level >= 3:
                line += f" {len(members)}"
        out.append(line)


def list_groups(
    resolver: GroupResolver,
    out: List[str],
    *,
    level: int,
    every_source: bool,
    named_source: Optional[str] = None,
    groupbase: bool = False,
    nodes: Optional[NodeSet] = None,
    warn: Optional[str] = None,
) -> None:
    """Append the listing lines to ``out`` (see the module docstring).

    ``level`` 1-3 (the number of ``l``); ``every_source`` for ``-L``; ``named_source``
    the ``-s`` value, if any; ``nodes`` the node sets given (None: list every group);
    ``warn`` the command name for warnings on stderr (None: quiet). Raises
    GroupSourceNoUpcall (``-l`` on a source without ``list``), any ``NodeSetError``
    of the one source with ``-l``, or SourceFailures after listing the rest with ``-L``.
    """
    if not every_source:
        source = named_source or resolver.default
        if source is None:
            raise NodeSetError("no group source configured")
        prefix = f"@{source}:" if named_source and not groupbase else "@"
        _lines(resolver, source, prefix, level, nodes, out)
        return
    failures: List[str] = []
    for source in resolver.source_names():
        prefix = "@" if groupbase else f"@{source}:"
        try:
            _lines(resolver, source, prefix, level, nodes, out)
        except GroupSourceNoUpcall:
            if warn:
                print(f"{warn}: warning: source {source!r} cannot list groups", file=sys.stderr)
        except NodeSetError as exc:
            failures.append(f"{source}: {exc}" if repr(source) not in str(exc) else str(exc))
    if failures:
        raise SourceFailures("; ".join(failures))
