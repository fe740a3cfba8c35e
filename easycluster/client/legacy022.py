"""EasyCluster 0.22's lower-level ``Client`` methods, kept so its scripts run unchanged.

``Legacy022`` is a mixin of ``Client``: these methods are thin shims over the real
connection logic in ``client.py`` (``attach``, the channel, the proxy table). Nothing
in the package calls them; ``tests/test_compat022.py`` is their guard.
"""

from __future__ import annotations

from ..errors import ConnectionLost
from ..objects import serialize
from ..protocol.handshake import WireOptions, check_key
from ..transport.handshake import client_handshake

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Tuple

    from ..transport.channel import Channel


class Legacy022:
    """0.22's ``ready``, ``wait_ready``, ``set_socket``, ``send_challenge``,
    ``send_message``, ``make_pickle``, ``write_fileno``, ``remote_host`` and
    ``remote_port`` for ``Client``."""

    # (set by Client; declared here for the type checker)
    key: Optional[bytes]
    connect_timeout: Optional[float]
    peername: str
    _channel: Optional[Channel]
    _proxies: Any
    _target: Optional[Tuple[Any, ...]]
    _ssh_target: Optional[Tuple[Any, ...]]

    if TYPE_CHECKING:

        def wire_options(self) -> WireOptions: ...

        def attach(self, channel: Channel, peername: str, closer: Any = None) -> None: ...

    def set_socket(self, sock: Any, peername: Optional[str] = None) -> None:
        """EasyCluster 0.22: adopt ``sock``, connected to a server; the handshake runs
        with this client's key (see ``attach`` for a finished channel)."""
        channel = client_handshake(
            sock, check_key(self.key), self.wire_options(), self.connect_timeout
        )
        self.attach(channel, peername or "socket")

    def ready(self) -> bool:
        return self._channel is not None

    def wait_ready(self) -> None:
        """EasyCluster 0.22 connected in the background; ours has when the constructor
        returns."""

    def send_challenge(self) -> None:
        """EasyCluster 0.22 started its handshake here; ours is done by connect()/attach()."""

    def send_message(self, typ: int, data: bytes, delay_hmac: bool = False) -> None:
        """EasyCluster 0.22's raw message; its messages are not this protocol's."""
        raise NotImplementedError("0.22's raw messages are not this protocol's; use send_request")

    def make_pickle(self, obj: Any) -> bytes:
        """``obj`` pickled as this connection pickles call arguments (proxies included)."""
        main, _ = serialize.dumps_full(obj, self._proxies)  # depth 0: nothing out of band
        return bytes(main)

    def write_fileno(self) -> int:
        """The file descriptor requests are written to (a pipe's for ssh connections)."""
        if self._channel is None:
            raise ConnectionLost(f"{self.peername}: not connected")
        sock = self._channel.sock
        wfd: Optional[int] = getattr(sock, "wfd", None)  # a PipeSocket writes elsewhere
        return sock.fileno() if wfd is None else wfd

    @property
    def remote_host(self) -> Optional[str]:
        """The host given to ``connect()`` (None for a local or adopted connection)."""
        target = self._target or self._ssh_target
        return target[0] if target else None

    @property
    def remote_port(self) -> Optional[int]:
        """The port given to ``connect()`` (22 for ssh without one; None if local)."""
        if self._target is not None:
            return int(self._target[1])
        if self._ssh_target is not None:
            return int(self._ssh_target[1] or 22)
        return None
