"""Node sets: ClusterShell's notation for many host names, such as ``node[1-100]``.

    >>> ns = NodeSet("node[1-4],login")
    >>> str(ns - NodeSet("node[2-3]")), len(ns), list(NodeSet("n[01-02]"))
    ('login,node[1,4]', 5, ['n01', 'n02'])

Notation (see docs/nodeset.md): a name's digit runs are its indexes and the rest
its *pattern*; ``prefix[ranges]suffix`` gives many indexes (``1-5,7,10-20/5``,
``001-100`` keeps zero padding); several brackets make several dimensions
(``r[1-100]n[1-500]``); ``,`` union, ``!`` difference, ``&`` intersection and ``^``
symmetric difference are read left to right; ``@group``, ``@source:group``,
``@source:*``, ``@*`` and ``@@source`` (the group names) are resolved by the
``resolver`` given, else by the standard one (``std``: the site's groups.conf).

The class has ClusterShell 1.10's constructor and methods, so its scripts run after
changing their import; the set machinery is ``NodeSetBase`` (``nodesetbase``).
"""

from __future__ import annotations

from ..errors import GroupSourceError, NodeSetExternalError
from .groups import GroupResolver
from .indexes import check_expand
from .nodesetbase import NodeSetBase
from .parse import Context, parse_all, parse_expr, parse_names
from .pattern import names_to_pats
from .rangeset import split_sequence
from .std import RESOLVER_NOGROUP, effective_resolver, std_group_resolver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

    from .nodesetbase import NodeSetLike
    from .std import ResolverArg

    Nodes = Union[str, NodeSetBase, Iterable[str], None]
    # Where a group method looks: a source name (ClusterShell) or, in our older form,
    # a resolver passed first.
    SourceArg = Union[str, GroupResolver, None]

__all__ = ["NodeSet", "NodeSetBase", "expand", "fold", "count", "grouplist"]


class NodeSet(NodeSetBase):
    """An ordered set of unique node names written in ClusterShell's notation.

    ``NodeSet(nodes=None, autostep=None, resolver=None, fold_axis=None)`` parses
    ``nodes`` (text), copies a node set (keeping its autostep and fold axes unless
    given), or takes an iterable of names as ``fromlist``. ``resolver``: a
    ``GroupResolver``, None or ``RESOLVER_STD_GROUP`` (the standard one, looked up
    only when a group is met), or ``RESOLVER_NOGROUP`` (``@`` is a plain character).
    Parse errors raise ``NodeSetParseError`` (``part`` is the piece that failed).
    """

    __slots__ = ()

    def __init__(
        self,
        nodes: Nodes = None,
        autostep: Optional[float] = None,
        resolver: ResolverArg = None,
        fold_axis: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__(autostep=autostep, fold_axis=fold_axis)
        self._resolver = resolver
        if nodes is None:
            return
        if isinstance(nodes, NodeSetBase):
            self._pats = nodes.copy()._pats
            if autostep is None:
                self._autostep = nodes.autostep
            if fold_axis is None:
                self.fold_axis = nodes.fold_axis
        elif isinstance(nodes, str):
            self._pats = parse_expr(nodes, Context(resolver))
        else:
            self._pats = parse_names(list(nodes), Context(resolver))

    @classmethod
    def fromlist(
        cls, nodelist: Iterable[str], autostep: Optional[float] = None, resolver: ResolverArg = None
    ) -> NodeSet:
        """Union of node set strings; plain names are parsed in bulk (fast)."""
        inst = cls(autostep=autostep, resolver=resolver)
        inst._pats = parse_names(list(nodelist), Context(resolver))
        return inst

    @classmethod
    def fromnames(cls, names: Iterable[str], autostep: Optional[float] = None) -> NodeSet:
        """A node set of ``names``, each string taken as one node name as it is: no
        group, operator, bracket or whitespace in it means anything (``"@n1"``,
        ``"n1!x"`` and ``"[n1]"`` are names). For names made by formatting, as
        ClusterShell's ``nodeset -f -O``; the empty string is no name."""
        inst = cls(autostep=autostep, resolver=RESOLVER_NOGROUP)
        inst._pats = names_to_pats(list(names))
        return inst

    @classmethod
    def fromall(
        cls,
        groupsource: SourceArg = None,
        autostep: Optional[float] = None,
        resolver: ResolverArg = None,
        source: Optional[str] = None,
    ) -> NodeSet:
        """Every node of a group source (its ``all`` group or upcall, else the union of
        its groups, each read in that source). ``fromall(resolver, source)``, our older
        form, is also accepted."""
        if isinstance(groupsource, GroupResolver):
            resolver, groupsource = groupsource, source
        found = effective_resolver(resolver)
        if found is None:
            raise NodeSetExternalError("no node group resolver")
        inst = cls(autostep=autostep, resolver=resolver)
        # the texts are read in the source they come from (@g is a group of that source)
        ctx = Context(found).nested(groupsource or found.default)
        inst._pats = parse_all(found, groupsource, ctx)
        return inst

    @property
    def resolver(self) -> ResolverArg:
        """The resolver argument this set was made with (None: the standard one)."""
        return self._resolver

    def split(self, nbr: int) -> Iterator[NodeSet]:
        """Up to ``nbr`` node sets of nearly equal size (larger first), in order."""
        check_expand(len(self))  # (the names are listed, then cut)
        for chunk in split_sequence(list(self), nbr):
            yield self._new(parse_names(list(chunk), Context(RESOLVER_NOGROUP)))

    # -- groups ---------------------------------------------------------------
    def _group_args(
        self, first: SourceArg, resolver: Optional[GroupResolver], source: Optional[str]
    ) -> Tuple[GroupResolver, Optional[str]]:
        if isinstance(first, GroupResolver):
            resolver, first = first, source
        found = resolver or effective_resolver(self._resolver)
        if found is None:
            raise NodeSetExternalError("no node group resolver")
        return found, first if first is not None else source

    def _member_groups(self, resolver: GroupResolver, source: Optional[str]) -> Dict[str, NodeSet]:
        """``{group: its nodes}`` for the groups holding at least one node of this set:
        by the source's reverse upcall when it has one and the set is no larger than
        its group list (ClusterShell's choice), else by looking through every group."""
        names = resolver.groups(source)
        if resolver.has_node_groups(source) and (not names or len(names) >= len(self)):
            names = sorted({g for node in self for g in resolver.node_groups(node, source)})
        found = {}
        for group in names:
            try:
                text = resolver.resolve(group, source)
            except GroupSourceError as exc:
                raise NodeSetExternalError(f"cannot map group {group!r}: {exc}") from exc
            members = NodeSet(text, resolver=resolver.with_default(source))
            if not members.isdisjoint(self):
                found[group] = members
        return found

    def isdisjoint(self, other: NodeSetLike) -> bool:
        """True if no node is in both sets."""
        return not self.intersection(other)

    def groups(
        self,
        groupsource: SourceArg = None,
        noprefix: bool = False,
        *,
        resolver: Optional[GroupResolver] = None,
        source: Optional[str] = None,
    ) -> Dict[str, Tuple[NodeSet, NodeSet]]:
        """``{"@group": (group nodes, nodes of this set in it)}`` for the groups
        meeting this set; keys are ``@source:group`` when a source is named, unless
        ``noprefix``. ``groups(resolver, source)`` (our older form) is accepted."""
        found, src = self._group_args(groupsource, resolver, source)
        prefix = f"@{src}:" if src and not noprefix else "@"
        return {
            prefix + group: (members, members & self)
            for group, members in self._member_groups(found, src).items()
        }

    def regroup(
        self,
        groupsource: SourceArg = None,
        autostep: Optional[float] = None,
        overlap: bool = False,
        noprefix: bool = False,
        *,
        resolver: Optional[GroupResolver] = None,
        source: Optional[str] = None,
    ) -> str:
        """The set written with the largest groups fully inside it, then the nodes left.

        Groups are taken largest first (then by name), skipping one that overlaps a
        group already taken unless ``overlap``; group names fold like node names
        (``@rack[1-2]``), prefixed ``@source:`` when a source is named unless
        ``noprefix``. ``regroup(resolver, source)`` (our older form) is accepted.
        """
        if isinstance(groupsource, GroupResolver) and isinstance(autostep, str):
            source, autostep = autostep, None  # older positional form regroup(res, "src")
        found, src = self._group_args(groupsource, resolver, source)
        prefix = f"@{src}:" if src and not noprefix else "@"
        fulls = [
            (len(members), group, members)
            for group, members in self._member_groups(found, src).items()
            if members.issubset(self)
        ]
        fulls.sort(key=lambda item: (-item[0], item[1]))
        rest = NodeSet(self, resolver=RESOLVER_NOGROUP)
        chosen = NodeSet(resolver=RESOLVER_NOGROUP, autostep=autostep)
        for _, group, members in fulls:
            if not overlap and not members.issubset(rest):
                continue
            chosen.update(prefix + group)
            rest.difference_update(members)
        rest.autostep = autostep if autostep is not None else self._autostep
        return ",".join(str(part) for part in (chosen, rest) if part)


def expand(pat: str, resolver: ResolverArg = None) -> List[str]:
    """Every name of a node set string, in order."""
    return list(NodeSet(pat, resolver=resolver))


def fold(pat: Union[str, Iterable[str]], resolver: ResolverArg = None) -> str:
    """The folded text of a node set string or of an iterable of names."""
    if isinstance(pat, str):
        return str(NodeSet(pat, resolver=resolver))
    return str(NodeSet.fromlist(pat, resolver=resolver))


def count(text: str, resolver: ResolverArg = None) -> int:
    """Number of nodes of a node set string (without expanding ranges)."""
    return len(NodeSet(text, resolver=resolver))


def grouplist(
    namespace: Optional[str] = None, resolver: Optional[GroupResolver] = None
) -> List[str]:
    """Group names of a source (default: the default source of the standard resolver)."""
    return (resolver or std_group_resolver()).groups(namespace)
