"""The group resolver: answers ``@group`` questions from its group sources.

``GroupResolver`` has ClusterShell 1.10's interface (``GroupResolver(default_source,
illegal_chars)``, ``add_source``, ``sources``, ``default_source_name``,
``group_nodes``, ``all_nodes``, ``grouplist``, ``has_node_groups``, ``node_groups``)
and ours (``from_file``, ``from_env``, ``from_config``, ``resolve``, ``groups``,
``source_names``, ``with_default``). ``GroupResolverConfig(filenames)`` reads
ClusterShell's configuration files (``groupsconf``) the first time it is asked
something, so building one costs nothing. Sources are in ``groupsources``.

A resolver keeps no global state; the process-wide default one lives in ``std``.
"""

from __future__ import annotations

import os

from ..errors import (
    GroupResolverIllegalCharError,
    GroupResolverSourceError,
    GroupSourceNoUpcall,
)
from .groupsconf import GROUPS_CONF_ENV, GroupsConfig, default_paths, load_groups_conf
from .groupsources import (
    CommandGroupSource,
    FileGroupSource,
    GroupSource,
    UpcallGroupSource,
    parse_group_lines,
)
from .slurmgroups import with_slurm_sources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

__all__ = [
    "GroupResolver",
    "GroupResolverConfig",
    "GroupSource",
    "FileGroupSource",
    "UpcallGroupSource",
    "CommandGroupSource",
    "GroupsConfig",
    "GROUPS_CONF_ENV",
    "ILLEGAL_GROUP_CHARS",
    "load_groups_conf",
    "parse_group_lines",
]

# Characters node sets reserve, refused in group names read from a source.
ILLEGAL_GROUP_CHARS = frozenset("@,!&^*")


class GroupResolver:
    """Group sources by name, one of them the default.

    ``GroupResolver(default_source=None, illegal_chars=None)`` as in ClusterShell
    (``default_source`` a ``GroupSource``; a ``GroupsConfig`` is also taken), or
    ``GroupResolver(sources=(...), default="name")``. An unknown source name raises
    ``GroupResolverSourceError``; a group name from a source holding one of
    ``illegal_chars`` raises ``GroupResolverIllegalCharError``.
    """

    def __init__(
        self,
        default_source: Union[GroupSource, GroupsConfig, None] = None,
        illegal_chars: Optional[Iterable[str]] = None,
        *,
        sources: Sequence[GroupSource] = (),
        default: Optional[str] = None,
        loader: Optional[Callable[[], GroupsConfig]] = None,
    ) -> None:
        self.illegal_chars = frozenset(illegal_chars or ())
        self._sources: Dict[str, GroupSource] = {}
        self._default: Optional[str] = None
        self._loader = loader
        config = default_source if isinstance(default_source, GroupsConfig) else None
        if isinstance(default_source, GroupSource):
            sources = (default_source, *sources)
            default = default or default_source.name
        if config is not None:
            sources, default = (*config.sources, *sources), default or config.default
        for src in sources:
            self._sources[src.name] = src
        self._default = default or (sources[0].name if sources else None)

    def _load(self) -> None:
        # run the lazy loader once; a failure propagates and is retried next time
        if self._loader is not None:
            config = self._loader()
            self._loader = None
            for src in config.sources:
                self._sources.setdefault(src.name, src)
            self._default = self._default or config.default

    @classmethod
    def from_file(cls, path: str) -> GroupResolver:
        """Resolver for one groups.conf file (read now; errors raise at once)."""
        return cls(load_groups_conf([path]))

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Optional[GroupResolver]:
        """Resolver for ``$EASYCLUSTER_GROUPS_CONF``, or None when it is unset."""
        path = (os.environ if environ is None else environ).get(GROUPS_CONF_ENV)
        return cls.from_file(path) if path else None

    @classmethod
    def from_config(cls, environ: Optional[Mapping[str, str]] = None) -> GroupResolver:
        """Lazy resolver for the default configuration files (``groupsconf``)."""
        return GroupResolverConfig(default_paths(environ), ILLEGAL_GROUP_CHARS, strict=False)

    def with_default(self, source: Optional[str]) -> GroupResolver:
        """A resolver with ``source`` as its default, sharing this one's sources."""
        if source is None or source == self.default:
            return self
        self.source(source)  # GroupResolverSourceError if unknown
        return GroupResolver(
            None,
            self.illegal_chars,
            sources=tuple(self._sources.values()),
            default=source,
        )

    # -- sources ---------------------------------------------------------------
    @property
    def default(self) -> Optional[str]:
        """Name of the default source (None if there is none)."""
        self._load()
        return self._default

    @property
    def default_source_name(self) -> Optional[str]:
        """ClusterShell's name for ``default``; settable to another known source."""
        return self.default

    @default_source_name.setter
    def default_source_name(self, name: str) -> None:
        self.source(name)
        self._default = name

    def add_source(self, group_source: GroupSource) -> None:
        """Add a source; ValueError if its name is taken."""
        self._load()
        if group_source.name in self._sources:
            raise ValueError(f"GroupSource {group_source.name!r}: name collision")
        self._sources[group_source.name] = group_source
        self._default = self._default or group_source.name

    def source_names(self) -> List[str]:
        """Source names, the default first."""
        self._load()
        names = list(self._sources)
        if self._default in names:
            names.remove(self._default)
            names.insert(0, self._default)
        return names

    sources = source_names

    def has_source(self, name: Optional[str] = None) -> bool:
        """True if ``name`` (None: the default source) is configured."""
        self._load()
        return (name or self._default) in self._sources

    def source(self, name: Optional[str] = None) -> GroupSource:
        """The source called ``name`` (None: the default one)."""
        self._load()
        key = name or self._default
        if key is None or key not in self._sources:
            raise GroupResolverSourceError(name or "<default>")
        return self._sources[key]

    def set_verbosity(self, value: int) -> None:
        """Accepted for ClusterShell scripts; does nothing (upcalls are not traced)."""

    # -- questions ---------------------------------------------------------------
    def _checked(self, names: List[str]) -> List[str]:
        for name in names:
            bad = self.illegal_chars.intersection(name)
            if bad:
                raise GroupResolverIllegalCharError(" ".join(sorted(bad)))
        return names

    def resolve(self, group: str, source: Optional[str] = None) -> str:
        """Node set text of one group."""
        return self.source(source).resolve(group)

    def group_nodes(self, group: str, namespace: Optional[str] = None) -> List[str]:
        """The node set texts of one group (ClusterShell's form of ``resolve``)."""
        text = self.resolve(group, namespace)
        return [text] if text.strip() else []

    def all_nodes(self, namespace: Optional[str] = None) -> List[str]:
        """Node set texts whose union is every node of a source (its ``all`` group or
        upcall, else one text per group); GroupSourceNoUpcall if it cannot tell.

        Parse each text on its own in that source, then take the union: joining them
        with ``,`` is not the union when a text holds ``!``, ``&`` or ``^``.
        """
        src = self.source(namespace)
        parts = src.all_parts()
        if parts is None:
            raise GroupSourceNoUpcall(f"group source {src.name!r} cannot list all nodes", src)
        return [text for text in parts if text.strip()]

    def groups(self, source: Optional[str] = None) -> List[str]:
        """Group names of a source, sorted."""
        return self._checked(self.source(source).groups())

    grouplist = groups

    def has_node_groups(self, namespace: Optional[str] = None) -> bool:
        """True if the source has a reverse upcall (groups of a node)."""
        return self.has_source(namespace) and self.source(namespace).has_reverse

    def node_groups(self, node: str, namespace: Optional[str] = None) -> List[str]:
        """Groups holding ``node`` by the reverse upcall; GroupSourceNoUpcall without one."""
        src = self.source(namespace)
        found = src.node_groups(node)
        if found is None:
            raise GroupSourceNoUpcall(f"group source {src.name!r} has no reverse upcall", src)
        return self._checked(found)


class GroupResolverConfig(GroupResolver):
    """A resolver for ClusterShell configuration files, read on first use.

    ``GroupResolverConfig(filenames, illegal_chars=None)``: the files are read and
    merged as ClusterShell does (``groupsconf``); missing ones are skipped unless
    ``strict``. Where SLURM is usable, its built-in sources (``@sp:``, ``@sj:``,
    ``@st:``..., see ``slurmgroups``) are added under the names the files leave free.
    """

    def __init__(
        self,
        filenames: Union[str, Sequence[str]],
        illegal_chars: Optional[Iterable[str]] = None,
        strict: bool = False,
    ) -> None:
        paths = [filenames] if isinstance(filenames, str) else list(filenames)
        self.filenames = paths
        super().__init__(
            None,
            illegal_chars,
            loader=lambda: with_slurm_sources(load_groups_conf(paths, strict=strict)),
        )
