"""``ServerOptions``: everything ``easycluster -S`` (``tcpserver.run_server``) needs to
serve, built by the command line (``config.py``) or by callers (``server.py``)."""

from __future__ import annotations

from ..protocol import frames, handshake
from ..protocol.messages import DEFAULT_PORT

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: the port opens without importing typing)
    from typing import Any, Dict, Optional, Tuple

_FIELDS = (
    "key",
    "port",
    "bind",
    "allow",
    "ipv6",
    "verbosity",
    "handshake_timeout",
    "max_pending",
    "max_frame",
    "pidfile",
    "daemonize",
    "max_connections",
    "grace",
)


class ServerOptions:
    """Everything ``run_server`` needs; built by the command line or by callers.

    ``max_connections`` caps the live connection processes (0: no cap); when reached, new
    connections wait in the kernel's backlog. ``grace`` is how long SIGTERM lets open
    connections finish. Immutable: ``replace`` gives a changed copy. (A plain class: not
    a dataclass nor a ``typing.NamedTuple``, so that ``easycluster -S`` opens its port
    without importing dataclasses or typing.)
    """

    __slots__ = _FIELDS
    key: bytes
    port: int
    bind: Optional[str]
    allow: Tuple[str, ...]
    ipv6: bool
    verbosity: int
    handshake_timeout: float
    max_pending: int
    max_frame: int
    pidfile: Optional[str]
    daemonize: bool
    max_connections: int
    grace: float

    def __init__(
        self,
        key: bytes,
        port: int = DEFAULT_PORT,
        bind: Optional[str] = None,
        allow: Tuple[str, ...] = (),
        ipv6: bool = True,
        verbosity: int = 0,
        handshake_timeout: float = 10.0,
        max_pending: int = 64,
        max_frame: int = frames.DEFAULT_MAX_FRAME,
        pidfile: Optional[str] = None,
        daemonize: bool = False,
        max_connections: int = 0,
        grace: float = 10.0,
    ):
        handshake.check_key(key)  # no empty key over TCP, anywhere
        values = locals()
        for name in _FIELDS:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ServerOptions are immutable: use replace({name}=...)")

    def replace(self, **changes: Any) -> ServerOptions:
        """A copy with ``changes`` (field names as keywords)."""
        return ServerOptions(**{**self._asdict(), **changes})

    def _asdict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerOptions):
            return NotImplemented
        return self._asdict() == other._asdict()

    def __hash__(self) -> int:
        return hash(tuple(self._asdict().values()))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{n}={'<key>' if n == 'key' else repr(getattr(self, n))}" for n in _FIELDS
        )
        return f"ServerOptions({shown})"
