"""Node group sources: where ``@name`` in a node set comes from.

A groups file is INI text, in the spirit of ClusterShell's ``groups.conf``::

    [Main]
    default = racks            # source used by @name and @*

    [racks]                    # a flat-file source
    file = racks.groups        # relative to the directory of the groups file

    [slurm,sl]                 # an external-command source with an alias
    map = sinfo -h -o %N -p "$GROUP"
    all = sinfo -h -o %N
    list = sinfo -h -o %R
    reverse = ...              # optional: the groups of "$NODE"

Commands run with ``/bin/sh`` in the directory of the groups file, stdin from
/dev/null, and the environment variables ``GROUP``, ``NODE`` and ``SOURCE`` set
(so ``$GROUP`` is never pasted into the command text). A flat file has one
``group: nodeset`` per line; ``#`` starts a comment.

Sources return node set *text*; ``easycluster.nodeset`` parses it. A
``GroupResolver`` caches answers for its own lifetime; there is no global state.
"""

from __future__ import annotations

import configparser
import os
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple, TypeVar, cast

from ..errors import GroupSourceError

__all__ = [
    "GroupSource",
    "FileGroupSource",
    "CommandGroupSource",
    "GroupResolver",
    "GroupsConfig",
    "load_groups_conf",
    "parse_group_lines",
    "GROUPS_CONF_ENV",
]

GROUPS_CONF_ENV = "EASYCLUSTER_GROUPS_CONF"
_BAD_GROUP_CHARS = set("@,!&^* \t\n")
_T = TypeVar("_T")


class GroupSource:
    """Base class: a named source of node groups (subclasses have a ``name``).

    ``resolve(group)`` returns node set text, ``all_nodes()`` the text of every
    node (or None if the source cannot tell), ``groups()`` the group names and
    ``node_groups(node)`` the groups holding a node (or None if unsupported).
    """

    name: str  # declared here, set by each subclass (a dataclass field)

    def resolve(self, group: str) -> str:
        raise NotImplementedError

    def all_nodes(self) -> Optional[str]:
        return None

    def groups(self) -> List[str]:
        return []

    def node_groups(self, node: str) -> Optional[List[str]]:
        return None


@dataclass(frozen=True)
class FileGroupSource(GroupSource):
    """Groups given as a mapping ``{group: nodeset text}`` (e.g. from a flat file).

    The special group ``all``, when present, is what ``@*`` means; otherwise
    ``@*`` is the union of every group. An unknown group raises GroupSourceError.
    """

    name: str
    mapping: Mapping[str, str] = field(default_factory=dict)

    def resolve(self, group: str) -> str:
        try:
            return self.mapping[group]
        except KeyError:
            raise GroupSourceError(f"unknown group {group!r} in source {self.name!r}")

    def all_nodes(self) -> Optional[str]:
        if "all" in self.mapping:
            return self.mapping["all"]
        return ",".join(text for text in self.mapping.values() if text.strip())

    def groups(self) -> List[str]:
        return sorted(self.mapping)


@dataclass(frozen=True)
class CommandGroupSource(GroupSource):
    """Groups answered by shell commands (``map`` required; others optional).

    Output is read as whitespace-separated node sets (``map``, ``all``) or group
    names (``list``, ``reverse``). A command that exits non-zero raises
    GroupSourceError naming the source, the command and its stderr; one that
    prints nothing gives an empty group.
    """

    name: str
    map: str
    all: Optional[str] = None
    list: Optional[str] = None
    reverse: Optional[str] = None
    cwd: Optional[str] = None
    timeout: float = 60.0

    def run(self, command: str, group: str = "", node: str = "") -> str:
        """Run one upcall and return its stdout."""
        env = dict(os.environ, GROUP=group, NODE=node, SOURCE=self.name)
        try:
            proc = subprocess.run(
                command,
                shell=True,
                cwd=self.cwd or None,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise GroupSourceError(f"group source {self.name!r}: command {command!r}: {exc}")
        if proc.returncode != 0:
            raise GroupSourceError(
                f"group source {self.name!r}: command {command!r} exited with "
                f"{proc.returncode}: {proc.stderr.strip() or '(no stderr)'}"
            )
        return proc.stdout

    def resolve(self, group: str) -> str:
        return ",".join(self.run(self.map, group=group).split())

    def all_nodes(self) -> Optional[str]:
        if self.all:
            return ",".join(self.run(self.all).split())
        if self.list:
            return ",".join(self.resolve(g) for g in self.groups()) or ""
        return None

    def groups(self) -> List[str]:
        if not self.list:
            return []
        return sorted(set(self.run(self.list).split()))

    def node_groups(self, node: str) -> Optional[List[str]]:
        if not self.reverse:
            return None
        return sorted(set(self.run(self.reverse, node=node).split()))


def parse_group_lines(text: str, where: str = "<groups>") -> Dict[str, str]:
    """Parse flat-file groups: ``group: nodeset`` lines, ``#`` comments, blank lines.

    A group listed twice gets the union of its lines. Raises GroupSourceError on a
    line without ``:`` or with an invalid group name.
    """
    mapping: Dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, nodes = line.partition(":")
        name = name.strip()
        if not sep or not name or _BAD_GROUP_CHARS & set(name):
            raise GroupSourceError(f"{where}:{lineno}: expected 'group: nodeset', got {line!r}")
        nodes = ",".join(nodes.split())
        mapping[name] = f"{mapping[name]},{nodes}" if mapping.get(name) else nodes
    return mapping


@dataclass(frozen=True)
class GroupsConfig:
    """Parsed groups file: the sources by name (aliases included) and the default."""

    sources: Tuple[GroupSource, ...] = ()
    default: Optional[str] = None
    aliases: Tuple[Tuple[str, str], ...] = ()  # (alias, source name)


def load_groups_conf(path: str) -> GroupsConfig:
    """Read a groups file (see module docstring). Raises GroupSourceError if invalid."""
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle, source=path)
    except (OSError, configparser.Error) as exc:
        raise GroupSourceError(f"cannot read groups file {path!r}: {exc}")
    confdir = os.path.dirname(os.path.abspath(path))
    sources: List[GroupSource] = []
    aliases: List[Tuple[str, str]] = []
    for section in parser.sections():
        if section == "Main":
            continue
        names = [n.strip() for n in section.split(",") if n.strip()]
        if not names:
            raise GroupSourceError(f"{path}: empty source section name")
        opts = parser[section]
        name = names[0]
        aliases.extend((alias, name) for alias in names[1:])
        if "file" in opts:
            file_path = os.path.join(confdir, opts["file"])
            try:
                with open(file_path, encoding="utf-8") as handle:
                    mapping = parse_group_lines(handle.read(), file_path)
            except OSError as exc:
                raise GroupSourceError(f"group source {name!r}: cannot read {file_path!r}: {exc}")
            sources.append(FileGroupSource(name, mapping))
        elif "map" in opts:
            sources.append(
                CommandGroupSource(
                    name,
                    opts["map"],
                    opts.get("all"),
                    opts.get("list"),
                    opts.get("reverse"),
                    cwd=confdir,
                    timeout=float(opts.get("timeout", "60")),
                )
            )
        else:
            raise GroupSourceError(f"{path}: source [{section}] needs 'file' or 'map'")
    default = parser.get("Main", "default", fallback=None)
    if default is None and sources:
        default = sources[0].name
    return GroupsConfig(tuple(sources), default, tuple(aliases))


class GroupResolver:
    """Answers group questions for node set parsing, with a per-instance cache.

    Build it from a ``GroupsConfig``, from sources directly, or with
    ``GroupResolver.from_file(path)`` / ``GroupResolver.from_env()``.
    """

    def __init__(
        self,
        config: Optional[GroupsConfig] = None,
        sources: Tuple[GroupSource, ...] = (),
        default: Optional[str] = None,
    ) -> None:
        config = config or GroupsConfig(
            tuple(sources), default or (sources[0].name if sources else None)
        )
        self.config = config
        self._sources: Dict[str, GroupSource] = {s.name: s for s in config.sources}
        for alias, name in config.aliases:
            if name in self._sources:
                self._sources[alias] = self._sources[name]
        self._cache: Dict[Tuple[str, str, str], object] = {}

    @classmethod
    def from_file(cls, path: str) -> GroupResolver:
        """Resolver for a groups file."""
        return cls(load_groups_conf(path))

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Optional[GroupResolver]:
        """Resolver for ``$EASYCLUSTER_GROUPS_CONF``, or None when it is unset."""
        path = (os.environ if environ is None else environ).get(GROUPS_CONF_ENV)
        return cls.from_file(path) if path else None

    def with_default(self, source: Optional[str]) -> GroupResolver:
        """A resolver using ``source`` as default source, sharing this one's cache."""
        if source is None or source == self.default:
            return self
        self.source(source)  # raise GroupSourceError if unknown
        other = GroupResolver(GroupsConfig(self.config.sources, source, self.config.aliases))
        other._cache = self._cache
        return other

    @property
    def default(self) -> Optional[str]:
        """Name of the default source (None if there is none)."""
        return self.config.default

    def source_names(self) -> List[str]:
        """Source names, the default first (aliases excluded)."""
        names = [s.name for s in self.config.sources]
        if self.default in names:
            names.remove(self.default)
            names.insert(0, self.default)
        return names

    def has_source(self, name: Optional[str]) -> bool:
        """True if ``name`` (None: the default source) is configured."""
        return (name or self.default) in self._sources

    def source(self, name: Optional[str] = None) -> GroupSource:
        """The source called ``name`` (None: default); GroupSourceError if unknown."""
        key = name or self.default
        if key is None or key not in self._sources:
            raise GroupSourceError(f"unknown group source {name or '(default)'!r}")
        return self._sources[key]

    def _cached(self, kind: str, src: GroupSource, arg: str, func: Callable[[], _T]) -> _T:
        key = (kind, src.name, arg)
        if key not in self._cache:
            self._cache[key] = func()
        # one kind, one answer type: what func returned for this key before
        return cast(_T, self._cache[key])

    def resolve(self, group: str, source: Optional[str] = None) -> str:
        """Node set text of one group."""
        src = self.source(source)
        return self._cached("map", src, group, lambda: src.resolve(group))

    def all_nodes(self, source: Optional[str] = None) -> str:
        """Node set text of every node of a source; GroupSourceError if unsupported."""
        src = self.source(source)
        text = self._cached("all", src, "", src.all_nodes)
        if text is None:
            raise GroupSourceError(f"group source {src.name!r} cannot list all nodes")
        return text

    def groups(self, source: Optional[str] = None) -> List[str]:
        """Group names of a source, sorted."""
        src = self.source(source)
        return self._cached("list", src, "", src.groups)

    def node_groups(self, node: str, source: Optional[str] = None) -> Optional[List[str]]:
        """Groups holding ``node`` by the ``reverse`` upcall, or None if unsupported."""
        src = self.source(source)
        return self._cached("reverse", src, node, lambda: src.node_groups(node))
