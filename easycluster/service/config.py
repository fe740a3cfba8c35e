"""The server's configuration file and how it meets the command line.

The file holds ``key = value`` lines; ``#`` starts a comment (at the start of a line, or
after a space). Keys (see ``easycluster/service/kit/easycluster.conf`` for the commented default)::

    port               TCP port, 0-65535 (0: any free port)
    bind               address to listen on; ``*`` means all interfaces (IPv4 and IPv6)
    keyfile            key file (relative paths are relative to the configuration file)
    allow              addresses or networks, separated by commas or spaces; repeatable;
                       empty or absent: every address (the key still decides)
    verbosity          0 refusals only, 1 one line per connection, 2 also every request
    max_connections    most connection processes at once (0: no limit)
    handshake_timeout  seconds an unauthenticated socket may take to authenticate
    max_pending        most unauthenticated sockets at once
    grace              seconds SIGTERM lets open connections finish
    ipv6               yes/no: with ``bind = *``, listen on IPv6 too

Every mistake is a ``ConfigError`` whose message starts with ``FILE:LINE:`` and quotes the
value. Precedence: command line, then the file, then the defaults. With a configuration
file the default bind address is loopback (127.0.0.1): a boot service listens on the
network only where the file says so. Without one (plain ``easycluster -S``) it is all
interfaces, as it always was.
"""

from __future__ import annotations

import os
import re

from .. import keys
from ..errors import ConfigError, KeyFileError
from ..protocol.messages import DEFAULT_PORT
from .listener import parse_allow
from .options import ServerOptions

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: the port opens without importing typing)
    from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

ALL_INTERFACES = "*"
SECRET_NAMES = ("key", "secret", "password", "passphrase")
CONFIG_DEFAULT_BIND = "127.0.0.1"


def _port(text: str) -> int:
    if not re.fullmatch(r"\d{1,5}", text) or int(text) > 65535:
        raise ValueError("expected a port number 0-65535")
    return int(text)


def _count(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"\d+", text) or int(text) < low:
            raise ValueError(f"expected a whole number >= {low}")
        return int(text)

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e6:
        raise ValueError("expected a number of seconds (e.g. 10 or 2.5)")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise ValueError("expected a number of seconds above 0")
    return value


def _verbosity(text: str) -> int:
    if text not in ("0", "1", "2", "3"):
        raise ValueError("expected 0, 1, 2 or 3")
    return int(text)


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("yes", "true", "on", "1"):
        return True
    if low in ("no", "false", "off", "0"):
        return False
    raise ValueError("expected yes or no")


def _bind(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise ValueError("expected one address or host name, or * for all interfaces")
    return text


def _allow(text: str) -> List[str]:
    entries = [e for e in re.split(r"[,\s]+", text) if e]
    parse_allow(entries)  # ValueError names the bad entry
    return entries


def _path(text: str) -> str:
    if not text:
        raise ValueError("expected a file name")
    return text


PARSERS: Dict[str, Callable[[str], Any]] = {
    "port": _port,
    "bind": _bind,
    "keyfile": _path,
    "allow": _allow,
    "verbosity": _verbosity,
    "max_connections": _count(0),
    "handshake_timeout": _positive_seconds,
    "max_pending": _count(1),
    "grace": _seconds,
    "ipv6": _bool,
}

DEFAULTS: Dict[str, Any] = {
    "port": DEFAULT_PORT,
    "bind": None,
    "keyfile": None,
    "allow": [],
    "verbosity": 0,
    "max_connections": 0,
    "handshake_timeout": 10.0,
    "max_pending": 64,
    "grace": 10.0,
    "ipv6": True,
}


class Settings:
    """Resolved settings: ``values`` by key, ``origins`` saying where each came from
    ("FILE:LINE", "command line" or "default"). Immutable (a small class rather than a
    dataclass: ``easycluster -S`` opens its port without importing dataclasses)."""

    __slots__ = ("values", "origins")
    values: Mapping[str, Any]
    origins: Mapping[str, str]

    def __init__(self, values: Mapping[str, Any], origins: Optional[Mapping[str, str]] = None):
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "origins", {} if origins is None else origins)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Settings are immutable: cannot set {name!r}")

    def __repr__(self) -> str:
        return f"Settings({dict(self.values)!r}, {dict(self.origins)!r})"

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def origin(self, name: str) -> str:
        return self.origins.get(name, "default")


def read_config(path: str) -> Dict[str, Tuple[Any, str]]:
    """Parse the file at ``path``: {key: (value, "FILE:LINE")}. Raises ConfigError."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read configuration file {path}: {reason}")
    return parse_config(text, path)


def parse_config(text: str, path: str = "<config>") -> Dict[str, Tuple[Any, str]]:
    """Parse configuration ``text`` (named ``path`` in messages); see the module doc."""
    out: Dict[str, Tuple[Any, str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise ConfigError(f"{where}: expected 'key = value', got {raw.strip()!r}")
        parse = PARSERS.get(name)
        if parse is None:
            if name.lower() in SECRET_NAMES:  # never echo what may be a key
                raise ConfigError(
                    f"{where}: unknown key {name!r}: the key itself never "
                    "goes in this file; name a key file with 'keyfile = FILE'"
                )
            raise ConfigError(
                f"{where}: unknown key {name!r} (value {value!r}); {_known_hint(name)}"
            )
        if name == "allow" and value == "":
            out.setdefault(name, ([], where))
            continue
        try:
            parsed = parse(value)
        except ValueError as e:
            raise ConfigError(f"{where}: bad {name} {value!r}: {e}")
        if name == "allow":
            before = out.get(name, ([], where))[0]
            out[name] = (before + parsed, where)
        elif name in out:
            raise ConfigError(
                f"{where}: {name} = {value!r} repeats the {name} set at {out[name][1]}"
            )
        else:
            out[name] = (parsed, where)
    if "keyfile" in out:
        value, where = out["keyfile"]
        out["keyfile"] = (os.path.join(os.path.dirname(os.path.abspath(path)), value), where)
    return out


def _known_hint(name: str) -> str:
    import difflib  # (only a misspelt key needs it: -S starts without it)

    close = difflib.get_close_matches(name, PARSERS, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "known keys: " + ", ".join(sorted(PARSERS))


def resolve(config_path: Optional[str], cli: Mapping[str, Any]) -> Settings:
    """Merge the command line (``cli``: keys of ``PARSERS`` that were given), the file at
    ``config_path`` (if any) and the defaults."""
    values = dict(DEFAULTS)
    origins: Dict[str, str] = {}
    if config_path:
        values["bind"] = CONFIG_DEFAULT_BIND
        for name, (value, where) in read_config(config_path).items():
            values[name], origins[name] = value, where
    for name, value in cli.items():
        if value is not None:
            values[name], origins[name] = value, "command line"
    if values["bind"] == ALL_INTERFACES:
        values["bind"] = None
    return Settings(values, origins)


def load_key(settings: Settings, key_text: Optional[str] = None) -> bytes:
    """The key: ``key_text`` (``-K``) if given, else the settings' key file, else b''.

    A key file named in the configuration that cannot be used raises a KeyFileError that
    names the file and line as well.
    """
    if key_text:
        return keys.decode_key(key_text)
    path = settings["keyfile"]
    if not path:
        return b""
    try:
        return keys.read_key_file(path)
    except KeyFileError as e:
        where = settings.origin("keyfile")
        if where in ("command line", "default"):
            raise
        raise KeyFileError(f"{where}: keyfile {path!r}: {e}")


def server_options(settings: Settings, key: bytes, **extra: Any) -> ServerOptions:
    """``ServerOptions`` from resolved settings and a key; ``extra`` sets other fields
    (pidfile, daemonize)."""
    v = settings.values
    return ServerOptions(
        key=key,
        port=v["port"],
        bind=v["bind"],
        allow=tuple(v["allow"]),
        ipv6=v["ipv6"],
        verbosity=v["verbosity"],
        handshake_timeout=v["handshake_timeout"],
        max_pending=v["max_pending"],
        max_connections=v["max_connections"],
        grace=v["grace"],
        **extra,
    )


def set_values(text: str, values: Mapping[str, str]) -> str:
    """Return configuration ``text`` with the first ``key = ...`` line of each key in
    ``values`` set to the new value (appended at the end when the key is absent)."""
    lines = text.splitlines()
    for name, value in values.items():
        pattern = re.compile(rf"^\s*{re.escape(name)}\s*=")
        for i, line in enumerate(lines):
            if pattern.match(line):
                lines[i] = f"{name} = {value}"
                break
        else:
            lines.append(f"{name} = {value}")
    return "\n".join(lines) + "\n"
