"""clush's settings habits for ``easycluster shell``: ``--conf FILE`` and ``-O KEY=VALUE``.

A clush user keeps settings in ``clush.conf`` (its ``[Main]`` section: ``fanout: 128``,
``ssh_options: -oStrictHostKeyChecking=no``) and overrides one with ``-O key=value``.
``--conf FILE`` reads such a file (no file is read unless named: ours is not clush's
``/etc/clustershell/clush.conf``, whose other settings we would not honour), and ``-O``
(repeatable) sets one key. An option of the command line wins over ``-O``, ``-O`` over
the file, the file over the built-in defaults (clush lets ``-O`` win over the command
line). The file is read as clush reads it: ``%%`` in a value stands for ``%``.

Keys understood (clush's names): ``fanout``, ``connect_timeout``, ``command_timeout``
(0: none), ``color`` (``never``/``always``/``auto``), ``verbosity`` (0 quiet, 1, 2
verbose, 3 debug), ``maxrc`` (yes/no: ``-S``), ``ssh_user``, ``ssh_path``,
``ssh_options`` (shell words; ``-o`` replaces them) and ``command_prefix``
(put before every command, ``sudo -n`` say). Keys clush has and we have no use for
(``fd_max``, ``history_size``, ``node_count``, ``confdir``, ``password_prompt``, the
``scp_*``/``rsh_*``/``rcp_*`` paths and options: our copies run over ssh) are accepted
in a file and named once on stderr; with ``-O`` such a key, or an unknown one, is a
usage error, as is a value of the wrong kind (the message names the key and the file).
"""

from __future__ import annotations

import argparse

from .exitcodes import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: --help builds the parser without typing)
    from typing import Any, Callable, Dict, List, Optional, Tuple

SECTION = "Main"

_YES = {"yes": True, "true": True, "on": True, "1": True}
_NO = {"no": False, "false": False, "off": False, "0": False}


def _flag(text: str) -> bool:
    value = _YES.get(text.lower(), _NO.get(text.lower()))
    if value is None:
        raise ValueError("yes or no")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("seconds >= 0")
    return value


def _color(text: str) -> str:
    if text not in ("", "never", "always", "auto"):
        raise ValueError("never, always or auto")
    return text or "auto"


def _verbosity(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 3:
        raise ValueError("0 to 3")
    return value


# key -> (how its text is read, what it takes)
KEYS: Dict[str, Tuple[Callable[[str], Any], str]] = {
    "fanout": (int, "a number of nodes"),
    "connect_timeout": (_seconds, "seconds"),
    "command_timeout": (_seconds, "seconds (0: none)"),
    "color": (_color, "never, always or auto"),
    "verbosity": (_verbosity, "0 to 3"),
    "maxrc": (_flag, "yes or no"),
    "ssh_user": (str, "a user name"),
    "ssh_path": (str, "a command"),
    "ssh_options": (str, "ssh options"),
    "command_prefix": (str, "words"),
}
UNUSED = (
    "fd_max",
    "history_size",
    "node_count",
    "confdir",
    "password_prompt",
    "scp_path",
    "scp_options",
    "rsh_path",
    "rcp_path",
    "rsh_options",
)


def add_options(parser: Any) -> None:
    """Add ``--conf FILE`` and ``-O KEY=VALUE`` to ``parser`` (a parser or a group)."""
    parser.add_argument("--conf", metavar="FILE", help="read clush.conf-style settings")
    parser.add_argument(
        "-O",
        "--option",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one setting, as in clush.conf (fanout=128, ssh_options=...)",
    )


def read_file(path: str, warn: Callable[[str], None]) -> Dict[str, str]:
    """The ``[Main]`` keys of ``path`` that we understand; unused ones are named through
    ``warn``; UsageError for a file that cannot be read or parsed, or an unknown key."""
    import configparser  # (here: a parser built for --help reads no file)

    conf = configparser.ConfigParser()  # (clush's reading: %% in a value is one %)
    try:
        with open(path, encoding="utf-8") as f:
            conf.read_file(f)
        items = conf.items(SECTION) if conf.has_section(SECTION) else []
    except (OSError, UnicodeDecodeError, configparser.Error) as e:
        raise UsageError(f"--conf {path}: cannot read it: {e}") from None
    found: Dict[str, str] = {}
    unused: List[str] = []
    for key, value in items:
        if key in KEYS:
            found[key] = value
        elif key in UNUSED:
            unused.append(key)
        else:
            known = ", ".join(KEYS)
            raise UsageError(f"--conf {path}: unknown key {key!r} (known: {known})")
    if unused:
        warn(f"--conf {path}: not used here: {', '.join(unused)}")  # (shown with -v)
    others = [name for name in conf.sections() if name != SECTION]
    if others:  # ([mode:sudo] & co.: clush's run modes, not offered)
        warn(f"--conf {path}: sections not used here: {', '.join(others)}")
    return found


def parse_setting(text: str) -> Tuple[str, str]:
    """``KEY=VALUE`` of ``-O`` as (key, value); UsageError for anything else."""
    key, sep, value = text.partition("=")
    key = key.strip().lower()
    if not sep or not key:
        raise UsageError(f"-O takes KEY=VALUE, not {text!r}")
    if key not in KEYS:
        why = "is clush's, not used here" if key in UNUSED else "is unknown"
        raise UsageError(f"-O {key} {why} (known: {', '.join(KEYS)})")
    return key, value.strip()


def settings(args: argparse.Namespace, warn: Callable[[str], None]) -> Dict[str, Any]:
    """The values of ``--conf`` then ``-O`` (the later wins), read and checked."""
    raw: Dict[str, Tuple[str, str]] = {}  # key -> (text, where it came from)
    if args.conf:
        for key, text in read_file(args.conf, warn).items():
            raw[key] = (text, f"--conf {args.conf}")
    for item in args.settings:
        key, text = parse_setting(item)
        raw[key] = (text, "-O")
    values: Dict[str, Any] = {}
    for key, (text, where) in raw.items():
        read, takes = KEYS[key]
        try:
            values[key] = read(text)
        except ValueError:
            raise UsageError(f"{where}: {key} takes {takes}, not {text!r}") from None
    return values


def apply(args: argparse.Namespace, warn: Callable[[str], None]) -> None:
    """Fill ``args`` from ``--conf``/``-O`` where the command line left a setting unset
    (None), then the built-in defaults; UsageError for a fan-out or timeout out of range,
    wherever it came from."""
    found = settings(args, warn)

    def unset(dest: str, key: str, default: Optional[Any] = None) -> None:
        if getattr(args, dest, None) is None:
            setattr(args, dest, found.get(key, default))

    unset("fanout", "fanout", 64)
    unset("connect_timeout", "connect_timeout")
    unset("command_timeout", "command_timeout")
    unset("color", "color", "auto")
    unset("user", "ssh_user")
    unset("ssh_path", "ssh_path")
    if "ssh_options" in found and not args.options:  # (-o replaces them, as in clush)
        args.options = [found["ssh_options"]]
    if found.get("maxrc"):
        args.maxrc = True
    level = found.get("verbosity")
    if level is not None and not (args.quiet or args.verbose or args.debug):
        args.quiet, args.verbose, args.debug = level == 0, level >= 2, level >= 3
    args.command_prefix = found.get("command_prefix", "")
    if args.fanout < 1:
        raise UsageError(f"-f (fanout) takes a number of nodes >= 1, not {args.fanout}")
    if args.connect_timeout is not None and args.connect_timeout <= 0:
        raise UsageError(f"-t (connect_timeout) takes seconds > 0, not {args.connect_timeout:g}")
    if args.command_timeout is not None and args.command_timeout < 0:
        raise UsageError(
            f"-u (command_timeout) takes seconds (0: none), not {args.command_timeout:g}"
        )
