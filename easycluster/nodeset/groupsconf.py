"""Reading group configuration: ClusterShell's ``groups.conf`` and its companions.

A ClusterShell configuration works unchanged:

* ``groups.conf`` (INI, no inline comments, as ClusterShell reads it): ``[Main]`` with
  ``default`` (an empty value means the first source), ``confdir`` (or
  ``groupsdir``) and ``autodir`` (space-separated directories, ``$CFGDIR`` being the
  directory of the configuration file); one section per upcall source, ``[a,b]``
  defining sources ``a`` and ``b`` with the same upcalls (``map``, ``mapall``,
  ``all``, ``list``, ``reverse``, ``cache_time``). Our extension: a section with
  ``file = PATH`` is a flat-file source (``group: nodes`` lines; relative to the
  configuration's directory).
* ``confdir``: every ``*.conf`` file there adds sections (sources).
* ``autodir``: every ``*.yaml`` file there maps source names to ``{group: nodes}``;
  a value is a string or a list of strings, each holding node sets separated by
  whitespace (``words``), as ClusterShell reads them.

Without an explicit path the files are ClusterShell's: ``/etc/clustershell``,
``~/.local/etc/clustershell``, ``<sys.prefix>/etc/clustershell``,
``$XDG_CONFIG_HOME/clustershell`` (``~/.config``) and ``$CLUSTERSHELL_CFGDIR``, all
read and merged, later ones overriding; ``$EASYCLUSTER_GROUPS_CONF`` (one file), when
set, replaces that list. Sources are listed in ClusterShell's order: ``confdir``
parts, then YAML files, then ``groups.conf`` itself. Every mistake raises
``GroupResolverConfigError`` naming the file.
"""

from __future__ import annotations

import os
import sys

from ..errors import GroupResolverConfigError, GroupSourceError
from .groupsources import GroupSource, UpcallGroupSource, parse_group_lines
from .words import join_words

# configparser, glob, shlex and string load when a groups file is read: every NodeSet
# import passes here, most never read one (they cost ~2 ms of each start-up)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import configparser
    from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["GroupsConfig", "GROUPS_CONF_ENV", "default_paths", "load_groups_conf"]

GROUPS_CONF_ENV = "EASYCLUSTER_GROUPS_CONF"
MAIN = "Main"


class GroupsConfig(tuple["tuple[GroupSource, ...]", "Optional[str]"]):
    """Loaded group configuration: the sources in order, and the default's name.

    (A named tuple written out: fields by name or position, defaults, equality, hash
    and pickling of a tuple. Not a dataclass: ``dataclasses`` costs ``easycluster
    nodeset`` 6 ms of start-up; not ``typing.NamedTuple``: ``typing`` costs every
    NodeSet user 2-3 ms.)
    """

    __slots__ = ()

    def __new__(
        cls, sources: Tuple[GroupSource, ...] = (), default: Optional[str] = None
    ) -> GroupsConfig:
        return tuple.__new__(cls, (sources, default))

    @property
    def sources(self) -> Tuple[GroupSource, ...]:
        return self[0]

    @property
    def default(self) -> Optional[str]:
        return self[1]

    def __getnewargs__(self) -> Tuple[Tuple[GroupSource, ...], Optional[str]]:
        return (self[0], self[1])

    def __repr__(self) -> str:
        return f"GroupsConfig(sources={self[0]!r}, default={self[1]!r})"


def default_paths(environ: Optional[Mapping[str, str]] = None) -> List[str]:
    """The groups.conf files read when none is named (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get(GROUPS_CONF_ENV):
        return [env[GROUPS_CONF_ENV]]
    home = os.path.expanduser("~")
    paths = [
        "/etc/clustershell/groups.conf",
        os.path.join(home, ".local/etc/clustershell/groups.conf"),
        os.path.join(sys.prefix, "etc/clustershell/groups.conf"),
        os.path.join(
            env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "clustershell/groups.conf"
        ),
    ]
    if env.get("CLUSTERSHELL_CFGDIR"):
        paths.append(os.path.join(env["CLUSTERSHELL_CFGDIR"], "groups.conf"))
    return paths


def _parser() -> configparser.ConfigParser:
    import configparser

    # no interpolation, no inline comments: upcalls hold '%' and '#' (as ClusterShell)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    return parser


def _read(parser: configparser.ConfigParser, paths: Sequence[str]) -> List[str]:
    import configparser  # (loaded by _parser already)

    try:
        return parser.read(paths, encoding="utf-8")
    except configparser.Error as exc:
        raise GroupResolverConfigError(f"bad groups configuration: {exc}")


def _sources_of(parser: configparser.ConfigParser, cfgdir: str, where: str) -> List[GroupSource]:
    sources: List[GroupSource] = []
    for section in parser.sections():
        names = [n.strip() for n in section.split(",") if n.strip() and n.strip() != MAIN]
        if section == MAIN or not names:
            continue
        opts = parser[section]
        for name in names:
            if "file" in opts:
                path = os.path.join(cfgdir, opts["file"])
                try:
                    with open(path, encoding="utf-8") as handle:
                        mapping = parse_group_lines(handle.read(), path)
                except OSError as exc:
                    raise GroupResolverConfigError(
                        f"group source {name!r}: cannot read {path!r}: {exc}"
                    )
                except GroupSourceError as exc:
                    raise GroupResolverConfigError(str(exc))
                sources.append(GroupSource(name, mapping))
                continue
            if "map" not in opts and "mapall" not in opts:
                raise GroupResolverConfigError(
                    f"{where}: section [{section}] needs 'map', 'mapall' or 'file'"
                )
            try:
                cache_time = float(opts["cache_time"]) if "cache_time" in opts else None
                timeout = float(opts.get("timeout", "60"))
            except ValueError as exc:
                raise GroupResolverConfigError(f"{where}: section [{section}]: {exc}")
            sources.append(
                UpcallGroupSource(
                    name,
                    opts.get("map"),
                    opts.get("all"),
                    opts.get("list"),
                    opts.get("reverse"),
                    cfgdir,
                    cache_time,
                    opts.get("mapall"),
                    timeout=timeout,
                )
            )
    return sources


def _yaml_sources(path: str) -> List[GroupSource]:
    try:
        import yaml  # optional: only YAML group files need PyYAML
    except ImportError as exc:
        raise GroupResolverConfigError(f"{path}: reading YAML group files needs PyYAML ({exc})")
    try:
        with open(path, encoding="utf-8") as handle:
            content: Any = yaml.safe_load(handle)
    except PermissionError:
        return []  # as ClusterShell: a YAML file we may not read is skipped
    except (OSError, yaml.YAMLError) as exc:
        raise GroupResolverConfigError(f"{path}: {exc}")
    if not isinstance(content, dict):
        raise GroupResolverConfigError(f"{path}: invalid content (base is not a mapping)")
    sources: List[GroupSource] = []
    for name, groups in content.items():
        if not isinstance(name, str) or not isinstance(groups, dict):
            raise GroupResolverConfigError(
                f"{path}: source {name!r} must be a name mapping group names to nodes"
            )
        mapping: Dict[str, str] = {}
        for group, nodes in groups.items():
            if not isinstance(group, str):
                raise GroupResolverConfigError(
                    f"{path}: {name}: group name {group!r} is not a string (add quotes?)"
                )
            if isinstance(nodes, list):
                nodes = ",".join(str(n) for n in nodes)
            # a value is node sets separated by whitespace, as in ClusterShell ('n1 n2')
            mapping[group] = "" if nodes is None else join_words(str(nodes))
        sources.append(GroupSource(name, mapping))
    return sources


def _dirs(value: str, cfgdir: str) -> List[str]:
    import shlex
    from string import Template

    found: List[str] = []
    for item in shlex.split(value):
        path = os.path.normpath(Template(item).safe_substitute(CFGDIR=cfgdir))
        if path in found or not os.path.exists(path):
            continue
        if not os.path.isdir(path):
            raise GroupResolverConfigError(f"{path} (in [Main]) is not a directory")
        found.append(path)
    return found


def load_groups_conf(paths: Sequence[str], strict: bool = True) -> GroupsConfig:
    """Read and merge the groups.conf files ``paths`` (see the module docstring).

    With ``strict``, a path that cannot be read is an error (a file the user named);
    otherwise missing files are skipped and none at all gives an empty configuration.
    """
    import glob

    paths = [paths] if isinstance(paths, str) else list(paths)
    if strict:
        for path in paths:
            if not os.access(path, os.R_OK) or os.path.isdir(path):
                raise GroupResolverConfigError(f"cannot read groups file {path!r}")
    parser = _parser()
    parsed = _read(parser, paths)
    if not parsed:
        return GroupsConfig()
    cfgdir = os.path.dirname(os.path.abspath(parsed[-1]))  # $CFGDIR: the last file read
    sources: List[GroupSource] = []
    main = parser[MAIN] if parser.has_section(MAIN) else {}
    for confdir in _dirs(main.get("groupsdir", main.get("confdir", "")), cfgdir):
        for part in sorted(glob.glob(os.path.join(glob.escape(confdir), "*.conf"))):
            sub = _parser()
            _read(sub, [part])
            sources.extend(_sources_of(sub, confdir, part))
    for autodir in _dirs(main.get("autodir", ""), cfgdir):
        for part in sorted(glob.glob(os.path.join(glob.escape(autodir), "*.yaml"))):
            sources.extend(_yaml_sources(part))
    sources.extend(_sources_of(parser, cfgdir, parsed[-1]))
    names = [s.name for s in sources]
    for name in names:
        if names.count(name) > 1:
            raise GroupResolverConfigError(f"group source {name!r} is defined twice")
    default = (main.get("default") or "").strip() or None
    if default is not None and default not in names:
        raise GroupResolverConfigError(f"default group source not found: {default!r}")
    return GroupsConfig(tuple(sources), default or (names[0] if names else None))
