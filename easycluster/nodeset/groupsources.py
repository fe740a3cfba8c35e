"""Group sources: where the nodes of ``@name`` come from.

Two kinds, with ClusterShell 1.10's constructors:

* ``GroupSource(name, groups=None, allgroups=None)``: a mapping ``{group: node set
  text}`` (a flat file, a YAML file, or a dict in a script). ``FileGroupSource`` is the
  same class under our older name.
* ``UpcallGroupSource(name, map_upcall, all_upcall, list_upcall, reverse_upcall,
  cfgdir, cache_time, mapall_upcall)``: shell commands, as in ``groups.conf``
  (``CommandGroupSource`` is the same class).

Upcall commands are written as in ClusterShell: ``$GROUP``, ``$NODE``, ``$SOURCE`` and
``$CFGDIR`` are replaced in the command text (``string.Template``), so a ClusterShell
``groups.conf`` works unchanged, including ``'$GROUP'`` inside single quotes. A value
that is not made of shell-safe characters only is replaced by its shell-quoted form,
so a name can never inject a command. The same values are also set as environment
variables. Commands run with ``/bin/sh`` in ``cfgdir``, stdin from /dev/null.
Answers are kept ``cache_time`` seconds (default 3600, as in ClusterShell).
"""

from __future__ import annotations

import os
import re
import time

from ..errors import GroupSourceError, GroupSourceNoUpcall, GroupSourceQueryFailed
from .words import join_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional, Tuple

__all__ = [
    "GroupSource",
    "FileGroupSource",
    "UpcallGroupSource",
    "CommandGroupSource",
    "parse_group_lines",
    "DEFAULT_CACHE_TIME",
]

DEFAULT_CACHE_TIME = 3600.0
BAD_GROUP_CHARS = frozenset("@,!&^* \t\n")
_SHELL_SAFE = re.compile(r"[\w@%+=:,./-]*\Z", re.ASCII)


def shell_value(value: str) -> str:
    """``value`` as it is put into a command: as is when shell-safe, else quoted."""
    if _SHELL_SAFE.match(value):
        return value
    import shlex  # (with string, loaded on first use: upcalls only)

    return shlex.quote(value)


class GroupSource:
    """A named source of node groups held in memory: ``{group: node set text}``.

    ``resolve(group)`` returns node set text (GroupSourceError for an unknown group:
    ClusterShell returns an empty set, see docs/nodeset.md); ``all_parts()`` texts
    whose union is every node: ``allgroups`` if given, else the group ``all``, else
    one text per group; ``groups()`` the group names; ``node_groups(node)`` None (this
    kind has no reverse upcall; the resolver then looks through the groups).
    """

    has_reverse = False
    #: True if ``groups()`` can tell the group names (False: an upcall source
    #: without a ``list`` or ``mapall`` upcall, whose ``groups()`` is empty)
    can_list = True

    def __init__(
        self,
        name: str,
        groups: Optional[Mapping[str, str]] = None,
        allgroups: Optional[str] = None,
    ) -> None:
        self.name = name
        self.mapping: Dict[str, str] = dict(groups or {})
        self.allgroups = allgroups

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def resolve(self, group: str) -> str:
        """Node set text of ``group``."""
        try:
            return self.mapping[group]
        except KeyError:
            raise GroupSourceError(f"unknown group {group!r} in source {self.name!r}", self)

    def all_parts(self) -> Optional[List[str]]:
        """Node set texts whose union is every node (None if the source cannot tell).

        Each text is to be parsed on its own, in this source, then unioned: joined
        by ``,`` they would not be the union, because operators read left to right
        (a ``!`` in one group's text would take nodes away from the groups before it).
        """
        if self.allgroups is not None:
            return [self.allgroups]
        if "all" in self.mapping:
            return [self.mapping["all"]]
        return [text for text in self.mapping.values() if text.strip()]

    def all_nodes(self) -> Optional[str]:
        """``all_parts()`` as one text, when the source has a single one (an ``all``
        group or upcall, ``allgroups``); None otherwise: a union of groups has no one
        text (see ``all_parts``)."""
        parts = self.all_parts()
        if parts is None or len(parts) > 1:
            return None
        return parts[0] if parts else ""

    def groups(self) -> List[str]:
        """Group names, sorted."""
        return sorted(self.mapping)

    def node_groups(self, node: str) -> Optional[List[str]]:
        """Groups holding ``node`` by a reverse upcall, or None without one."""
        return None

    # ClusterShell's names for the same questions (text answers)
    def resolv_map(self, group: str) -> str:
        return self.resolve(group)

    def resolv_list(self) -> str:
        return " ".join(self.groups())

    def resolv_all(self) -> str:
        text = self.all_nodes()
        if text is None:  # ClusterShell's resolver then unions the groups itself
            raise GroupSourceNoUpcall("all groups info not available", self)
        return text


FileGroupSource = GroupSource


class UpcallGroupSource(GroupSource):
    """Groups answered by shell commands (``map`` or ``mapall`` required).

    Output is read as whitespace-separated node sets (``map``, ``all``) or group
    names (``list``, ``reverse``); ``mapall`` prints ``group: nodes`` lines and then
    answers both ``map`` and ``list``. A command that exits non-zero raises
    GroupSourceQueryFailed naming the source, the command and its stderr; a question
    without an upcall raises GroupSourceNoUpcall. ``timeout`` bounds each command.
    """

    def __init__(
        self,
        name: str,
        map_upcall: Optional[str] = None,
        all_upcall: Optional[str] = None,
        list_upcall: Optional[str] = None,
        reverse_upcall: Optional[str] = None,
        cfgdir: Optional[str] = None,
        cache_time: Optional[float] = None,
        mapall_upcall: Optional[str] = None,
        *,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(name)
        if not map_upcall and not mapall_upcall:
            raise GroupSourceError(f"group source {name!r} needs a 'map' or 'mapall' upcall")
        self.upcalls = {
            key: cmd
            for key, cmd in (
                ("map", map_upcall),
                ("all", all_upcall),
                ("list", list_upcall),
                ("reverse", reverse_upcall),
                ("mapall", mapall_upcall),
            )
            if cmd
        }
        self.has_reverse = "reverse" in self.upcalls
        self.can_list = "list" in self.upcalls or "mapall" in self.upcalls
        self.cfgdir = cfgdir
        self.cache_time = DEFAULT_CACHE_TIME if cache_time is None else float(cache_time)
        self.timeout = timeout
        self._cache: Dict[Tuple[str, str], Tuple[float, str]] = {}

    def clear_cache(self) -> None:
        """Forget every cached answer."""
        self._cache.clear()

    def run(self, upcall: str, group: str = "", node: str = "") -> str:
        """Run one upcall (``map``, ``all``, ...) now and return its stdout."""
        if upcall not in self.upcalls:
            raise GroupSourceNoUpcall(f"group source {self.name!r} has no {upcall!r} upcall", self)
        from string import Template

        values = {"GROUP": group, "NODE": node, "SOURCE": self.name, "CFGDIR": self.cfgdir or ""}
        command = Template(self.upcalls[upcall]).safe_substitute(
            {key: shell_value(value) for key, value in values.items()}
        )
        # imported here: they cost `easycluster nodeset` start-up time (7 ms) and only
        # upcalls need them (logging: for nodeset -d)
        import logging
        import subprocess

        from ..launch.said import last_said

        logging.getLogger(__name__).debug("group source %s: running %s", self.name, command)
        try:
            proc = subprocess.run(
                command,
                shell=True,
                cwd=self.cfgdir or None,
                env=dict(os.environ, **values),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise GroupSourceQueryFailed(
                f"group source {self.name!r}: command {command!r}: {exc}{last_said(exc)}", self
            )
        if proc.returncode != 0:
            raise GroupSourceQueryFailed(
                f"group source {self.name!r}: command {command!r} exited with "
                f"{proc.returncode}: {proc.stderr.strip() or '(no stderr)'}",
                self,
            )
        return proc.stdout

    def _cached(self, upcall: str, key: str, group: str = "", node: str = "") -> str:
        now = time.monotonic()
        hit = self._cache.get((upcall, key))
        if hit is not None and hit[0] > now:
            return hit[1]
        text = self.run(upcall, group=group, node=node)
        self._cache[(upcall, key)] = (now + self.cache_time, text)
        return text

    def _mapall(self) -> Dict[str, str]:
        mapping: Dict[str, str] = {}
        for line in self._cached("mapall", "").splitlines():
            line = line.strip()
            if not line:
                continue
            group, sep, nodes = line.partition(":")
            group = group.strip()
            if not sep or not group or len(group.split()) > 1:
                self._cache.pop(("mapall", ""), None)  # do not keep unusable output
                raise GroupSourceQueryFailed(
                    f"group source {self.name!r}: mapall: expected 'group: nodes', got {line!r}",
                    self,
                )
            nodes = join_words(nodes)
            mapping[group] = f"{mapping[group]},{nodes}" if mapping.get(group) else nodes
        return mapping

    def resolve(self, group: str) -> str:
        if "mapall" in self.upcalls:
            mapping = self._mapall()
            if group in mapping or "map" not in self.upcalls:
                return mapping.get(group, "")
        return join_words(self._cached("map", group, group=group))

    def all_parts(self) -> Optional[List[str]]:
        if "all" in self.upcalls:
            return [join_words(self._cached("all", ""))]
        if "list" in self.upcalls or "mapall" in self.upcalls:
            return [text for text in map(self.resolve, self.groups()) if text]
        return None

    def groups(self) -> List[str]:
        if "list" in self.upcalls:
            return sorted(set(self._cached("list", "").split()))
        if "mapall" in self.upcalls:
            return sorted(self._mapall())
        return []

    def node_groups(self, node: str) -> Optional[List[str]]:
        if not self.has_reverse:
            return None
        return sorted(set(self._cached("reverse", node, node=node).split()))


CommandGroupSource = UpcallGroupSource


def parse_group_lines(text: str, where: str = "<groups>") -> Dict[str, str]:
    """Parse flat-file groups: ``group: nodeset`` lines, ``#`` comments, blank lines.

    The node sets of a line are separated by whitespace (``words.join_words``).

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
        if not sep or not name or BAD_GROUP_CHARS & set(name):
            raise GroupSourceError(f"{where}:{lineno}: expected 'group: nodeset', got {line!r}")
        nodes = join_words(nodes)
        mapping[name] = f"{mapping[name]},{nodes}" if mapping.get(name) else nodes
    return mapping
