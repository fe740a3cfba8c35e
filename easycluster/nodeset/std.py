"""The process-wide default group resolver, for ClusterShell scripts.

This module holds the one piece of module-level mutable configuration in EasyCluster,
the compatibility exception to house rule 5: ClusterShell scripts write
``NodeSet("@rack1")`` with no resolver and expect the groups of the site's
``groups.conf``, and some call ``set_std_group_resolver(...)`` to change that for the
whole process. Everything else in EasyCluster passes resolvers as arguments.

``std_group_resolver()`` returns the resolver set by ``set_std_group_resolver``, or
else one built on first use for the default configuration files (``groupsconf``:
``$EASYCLUSTER_GROUPS_CONF`` or ClusterShell's paths, read lazily, when a group is
first needed). ``NodeSet(text)`` with ``resolver=None`` or ``RESOLVER_STD_GROUP``
uses it; ``RESOLVER_NOGROUP`` turns groups off (``@x`` is then a plain name).
"""

from __future__ import annotations

import threading

from .groups import ILLEGAL_GROUP_CHARS, GroupResolver, GroupResolverConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, Optional, Union

    ResolverArg = Union[GroupResolver, int, None]

__all__ = [
    "RESOLVER_NOGROUP",
    "RESOLVER_STD_GROUP",
    "effective_resolver",
    "set_std_group_resolver",
    "set_std_group_resolver_config",
    "std_group_resolver",
]

# ClusterShell's constants for NodeSet's ``resolver`` argument. RESOLVER_STD_GROUP
# is a marker here (ClusterShell's is its default resolver object): pass it, or None.
RESOLVER_NOGROUP = -1
RESOLVER_STD_GROUP = -3

_lock = threading.Lock()
# the process-wide state; see the module docstring for why it exists at all
_std: Dict[str, Optional[GroupResolver]] = {"resolver": None}


def std_group_resolver() -> GroupResolver:
    """The process-wide default resolver (built on first call, files read later)."""
    with _lock:
        resolver = _std["resolver"]
        if resolver is None:
            resolver = _std["resolver"] = GroupResolver.from_config()
        return resolver


def set_std_group_resolver(new_resolver: Optional[GroupResolver]) -> None:
    """Replace the process-wide default resolver (None: back to the configuration files)."""
    with _lock:
        _std["resolver"] = new_resolver


def set_std_group_resolver_config(
    groupsconf: str, illegal_chars: Optional[Iterable[str]] = None
) -> None:
    """Make the process-wide default resolver read ``groupsconf`` (lazily)."""
    chars = ILLEGAL_GROUP_CHARS if illegal_chars is None else illegal_chars
    set_std_group_resolver(GroupResolverConfig([groupsconf], chars, strict=True))


def effective_resolver(resolver: ResolverArg) -> Optional[GroupResolver]:
    """The resolver a NodeSet should use: the given one, the standard one for None or
    ``RESOLVER_STD_GROUP``, or None (no groups) for ``RESOLVER_NOGROUP``."""
    if isinstance(resolver, GroupResolver):
        return resolver
    if resolver == RESOLVER_NOGROUP:
        return None
    return std_group_resolver()
