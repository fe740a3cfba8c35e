"""Parsing node set expressions: operators, groups and wildcards (pure, given a resolver).

``parse_expr(text, ctx)`` returns the pattern map of a whole expression (see
``pattern``): operands are joined by ``,`` (union), ``!`` (difference), ``&``
(intersection) and ``^`` (symmetric difference), read strictly left to right; an
operand is a name or bracket pattern (``pattern.parse_pattern``), a group (``@g``,
``@src:g``, ``@src:*``, ``@*``, ``@@src``, ``@rack[1-3]``) or a wildcard (``n1?``,
matched against every node of the default source).

A ``Context`` carries the resolver argument (resolved only when a group or wildcard
is met, so plain node sets never load a configuration), the source that ``@g`` means
and the nesting depth, bounded so a group including itself is an error.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from ..errors import GroupSourceNoUpcall, NodeSetError, NodeSetParseError
from .groups import GroupResolver
from .pattern import (
    SCAN,
    apply_op,
    is_plain,
    names_to_pats,
    parse_pattern,
    sort_key,
)
from .rangeset import RangeSet
from .std import RESOLVER_NOGROUP, effective_resolver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterator, List, Optional

    from .pattern import Key, Value
    from .std import ResolverArg

__all__ = ["Context", "MAX_DEPTH", "parse_all", "parse_expr", "parse_names", "pats_names"]

MAX_DEPTH = 16
_OPS = {",": "|", "!": "-", "&": "&", "^": "^"}


class Context:
    """What parsing needs besides the text: the resolver argument, source and depth."""

    __slots__ = ("arg", "_resolver", "source", "depth")

    def __init__(self, arg: ResolverArg, source: Optional[str] = None, depth: int = 0):
        if depth > MAX_DEPTH:
            raise NodeSetError("node groups nested too deeply (a group includes itself?)")
        self.arg, self.source, self.depth = arg, source, depth
        self._resolver: Optional[GroupResolver] = arg if isinstance(arg, GroupResolver) else None

    @property
    def groups_off(self) -> bool:
        """True when ``@`` and wildcards are plain characters (``RESOLVER_NOGROUP``)."""
        return (
            self.arg is not None
            and not isinstance(self.arg, GroupResolver)
            and (self.arg == RESOLVER_NOGROUP)
        )

    def resolver(self) -> Optional[GroupResolver]:
        """The resolver to use (the standard one is looked up only now)."""
        if self._resolver is None and not self.groups_off:
            self._resolver = effective_resolver(self.arg)
        return self._resolver

    def nested(self, source: Optional[str]) -> Context:
        """The context for the text of a group of ``source``, one level deeper."""
        sub = Context(self.arg, source, self.depth + 1)
        sub._resolver = self._resolver
        return sub


def pats_names(pats: Dict[Key, Value]) -> Iterator[str]:
    """Every name of a pattern map (in pattern order)."""
    for key in sorted(pats, key=sort_key):
        value = pats[key]
        if value is None:
            yield key[0]
        elif isinstance(value, RangeSet):
            yield from value.format_iter(key[0], key[1])
        else:
            yield from map(sort_key(key).__mod__, value)


def _known_resolver(text: str, ctx: Context, source: Optional[str]) -> GroupResolver:
    resolver = ctx.resolver()
    if resolver is None or not resolver.source_names():
        raise NodeSetParseError(text, "no group source configured")
    if not resolver.has_source(source):
        raise NodeSetParseError(text, "unknown group source")
    return resolver


def _parse_group(text: str, ctx: Context) -> Dict[Key, Value]:
    body = text[1:]
    if body.startswith("@"):  # @@source: the names of the source's groups
        source = body[1:] or ctx.source
        resolver = _known_resolver(text, ctx, source)
        src = resolver.source(source)
        if not src.can_list:  # (its empty list would read as "no groups": ClusterShell errs)
            raise GroupSourceNoUpcall(f"group source {src.name!r} has no 'list' upcall", src)
        return names_to_pats(resolver.groups(source))
    source, sep, name = body.rpartition(":")
    if sep and not source:
        raise NodeSetParseError(text, "empty group source name")
    if not name:
        raise NodeSetParseError(text, "empty group name")
    source = source or ctx.source
    resolver = _known_resolver(text, ctx, source)
    sub = ctx.nested(source or resolver.default)
    if name == "*":
        return parse_all(resolver, source, sub)
    pats: Dict[Key, Value] = {}
    names = [name] if "[" not in name else list(pats_names(parse_pattern(name)))
    for group in names:
        apply_op(pats, "|", parse_expr(resolver.resolve(group, source), sub))
    return pats


def parse_all(resolver: GroupResolver, source: Optional[str], ctx: Context) -> Dict[Key, Value]:
    """Every node of ``source`` (None: the default one): the union of the texts of
    ``resolver.all_nodes``, each parsed on its own with ``ctx`` (whose source should
    be ``source``, so that ``@g`` in a text means a group of that source)."""
    pats: Dict[Key, Value] = {}
    for text in resolver.all_nodes(source):
        apply_op(pats, "|", parse_expr(text, ctx))
    return pats


def _parse_operand(text: str, ctx: Context) -> Dict[Key, Value]:
    if text.startswith("@") and not ctx.groups_off:
        return _parse_group(text, ctx)
    if ("*" in text or "?" in text) and not ctx.groups_off:
        resolver = ctx.resolver()
        if resolver is None or not resolver.has_source(ctx.source):
            raise NodeSetParseError(text, "wildcards need a group source listing all nodes")
        # one level deeper: a source whose node list itself uses wildcards would
        # otherwise send this straight back here, forever
        every = parse_all(resolver, ctx.source, ctx.nested(ctx.source))
        return names_to_pats([n for n in pats_names(every) if fnmatchcase(n, text)])
    if "[" in text or "]" in text:
        return parse_pattern(text)
    if any(c.isspace() for c in text):
        raise NodeSetParseError(text, "space inside a node name")
    return names_to_pats([text])


def parse_expr(text: str, ctx: Context) -> Dict[Key, Value]:
    """Parse a whole node set expression, operators read left to right."""
    result: Dict[Key, Value] = {}
    if not text.strip():
        return result
    pending: List[str] = []  # plain names waiting to be unioned in bulk
    op, start, depth = ",", 0, 0

    def take(operand: str, op: str) -> None:
        operand = operand.strip()
        if not operand:
            raise NodeSetParseError(text, f"missing node set operand with {op!r} operator")
        if op == "," and is_plain(operand):
            pending.append(operand)
            return
        if pending:
            apply_op(result, "|", names_to_pats(pending))
            pending.clear()
        apply_op(result, _OPS[op], _parse_operand(operand, ctx))

    for match in SCAN.finditer(text):
        char = match.group()
        if char == "[":
            if depth:
                raise NodeSetParseError(text[start:], "illegal opening bracket")
            depth = 1
        elif char == "]":
            if not depth:
                raise NodeSetParseError(text[start:].strip(), "illegal closing bracket")
            depth = 0
        elif not depth:
            take(text[start : match.start()], op)
            op, start = char, match.end()
    if depth:
        raise NodeSetParseError(text[start:].strip(), "missing bracket")
    take(text[start:], op)
    if pending:
        apply_op(result, "|", names_to_pats(pending))
    return result


def parse_names(items: List[str], ctx: Context) -> Dict[Key, Value]:
    """Union of node set strings; plain names are parsed in bulk (fast)."""
    joined = "\n".join(items)
    if joined.count("\n") == len(items) - 1 and all(items) and is_plain(joined.replace("\n", "")):
        return names_to_pats(items)
    pats: Dict[Key, Value] = {}
    for item in items:
        apply_op(pats, "|", parse_expr(item, ctx))
    return pats
