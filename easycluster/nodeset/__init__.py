"""Node sets: ``node[1-100]``-style notation (pure code) and the group sources behind
``@group`` names, with ClusterShell 1.10's public API.

A ClusterShell script that does ``from ClusterShell.NodeSet import NodeSet, RangeSet,
RangeSetND, ...`` (or imports from ``ClusterShell.RangeSet`` / ``ClusterShell.NodeUtils``)
runs after changing that import to ``from easycluster.nodeset import ...``; what still
differs is listed in docs/nodeset.md.

Modules: ``nodeset`` (``NodeSet``, ``expand``, ``fold``, ``count``, ``grouplist``),
``nodesetbase`` (``NodeSetBase``: set algebra, order, folding), ``parse`` (operators,
groups, wildcards), ``pattern`` (names and brackets), ``rangeset`` (``RangeSet``),
``indexes`` (index codes and spans), ``rangesetnd`` (``RangeSetND``), ``ndfold``
(folding index tuples), ``groups`` (``GroupResolver``), ``groupsources`` (group
sources), ``groupsconf`` (reading groups.conf), ``words`` (node set text split on
whitespace), ``std`` (the process-wide default
resolver: the one module-level setting, for ClusterShell compatibility).
"""

from __future__ import annotations

from ..errors import (
    GroupResolverConfigError,
    GroupResolverError,
    GroupResolverIllegalCharError,
    GroupResolverSourceError,
    GroupSourceError,
    GroupSourceNoUpcall,
    GroupSourceQueryFailed,
    NodeSetError,
    NodeSetException,
    NodeSetExternalError,
    NodeSetParseError,
    NodeSetParseRangeError,
    RangeSetException,
    RangeSetPaddingError,
    RangeSetParseError,
    RangeSetTooLarge,
)
from .groups import (
    ILLEGAL_GROUP_CHARS,
    CommandGroupSource,
    FileGroupSource,
    GroupResolver,
    GroupResolverConfig,
    GroupSource,
    UpcallGroupSource,
)
from .nodeset import NodeSet, count, expand, fold, grouplist
from .nodesetbase import NodeSetBase
from .rangeset import AUTOSTEP_DISABLED, RangeSet
from .rangesetnd import RangeSetND
from .std import (
    RESOLVER_NOGROUP,
    RESOLVER_STD_GROUP,
    set_std_group_resolver,
    set_std_group_resolver_config,
    std_group_resolver,
)

__all__ = [
    "NodeSet",
    "NodeSetBase",
    "RangeSet",
    "RangeSetND",
    "GroupResolver",
    "GroupResolverConfig",
    "GroupSource",
    "FileGroupSource",
    "UpcallGroupSource",
    "CommandGroupSource",
    "expand",
    "fold",
    "count",
    "grouplist",
    "std_group_resolver",
    "set_std_group_resolver",
    "set_std_group_resolver_config",
    "AUTOSTEP_DISABLED",
    "RESOLVER_NOGROUP",
    "RESOLVER_STD_GROUP",
    "ILLEGAL_GROUP_CHARS",
    "NodeSetException",
    "NodeSetError",
    "NodeSetParseError",
    "NodeSetParseRangeError",
    "NodeSetExternalError",
    "RangeSetException",
    "RangeSetTooLarge",
    "RangeSetParseError",
    "RangeSetPaddingError",
    "GroupSourceError",
    "GroupSourceNoUpcall",
    "GroupSourceQueryFailed",
    "GroupResolverError",
    "GroupResolverSourceError",
    "GroupResolverIllegalCharError",
    "GroupResolverConfigError",
]
