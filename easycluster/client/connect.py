"""How a ``Client`` comes to be connected: ``from_spec``, ``connect``, ``attach``,
``reconnect`` and the handshake options it asks for.

``ConnectionSetup`` is a mixin of ``Client``. Its contract: ``connect`` opens a channel
(over ssh through ``launch/ssh.py``, or over TCP to an ``easycluster -S`` server with the
client's key) and hands it to ``attach``; ``attach`` makes the channel the client's one
connection (a fresh proxy table, a reader that has not served another connection),
sends the ``hello`` with the definitions blocks, and on any failure there shuts the
connection down and re-raises, so nothing leaks. Connecting a client that is connected
raises ``ConfigError``. The calls themselves, the replies and the shutdown stay in
``client.py``; nothing here is on a call's path.
"""

from __future__ import annotations

import threading
import time

from ..errors import CallTimeout, ConfigError, ConnectError, ConnectionLost, DefinitionsError
from ..objects import definitions
from ..protocol.handshake import WireOptions, check_key
from ..protocol.messages import CONTROL, DEFAULT_PORT
from ..transport.handshake import open_tcp_channel
from .proxytable import ProxyTable
from .reader import InlineReader
from .spec import client_from_spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

    from ..launch.killswitch import KillSwitch
    from ..transport.channel import Channel


class ConnectionSetup:
    """Connecting, attaching and reconnecting for ``Client``."""

    # (set by Client; declared here for the type checker)
    key: Optional[bytes]
    definitions: str
    enable_compression: bool
    connect_timeout: Optional[float]
    # over ssh: keep the server's code on the remote host (True: its ~/.cache, or a
    # folder there); off by default, nothing is written there (``ssh.open_channel``)
    remote_cache: Union[bool, str, None] = None
    max_frame: int
    remote_output: Any
    peername: str
    _channel: Optional[Channel]
    _closer: Optional[Callable[[], None]]
    _proxies: Any
    _reader: Any
    _sent_blocks: int
    _server_info: Dict[str, Any]
    _target: Optional[Tuple[Any, ...]]
    _ssh_target: Optional[Tuple[Any, ...]]

    send_request: Callable[..., Any]
    _send_releases: Callable[[bool], None]
    _handle: Callable[..., None]
    _lost: Callable[..., None]
    _shutdown: Callable[..., None]
    close: Callable[..., None]

    # True once the reader has served a connection: the next one gets a new reader
    _reader_used = False
    # Held while a connection is given (``attach``) or taken (``Client._shutdown``), each
    # a few assignments: one lock for every client (a class attribute, so a subclass
    # that skips ``__init__`` has it too)
    _channel_lock = threading.Lock()
    # (``connect``'s, for ``attach``: when connect_timeout runs out, hello included)
    _connect_deadline: Optional[float] = None

    @classmethod
    def from_spec(
        cls,
        spec: str,
        default_port: Optional[int] = None,
        default_key: Optional[bytes] = None,
        warn: bool = True,
        **kw: Any,
    ) -> Any:
        """A client connected as ``spec`` (``[user@]host[:port][:name=value]...``) says."""
        return client_from_spec(cls, spec, default_port, default_key, warn, **kw)

    def connect(
        self,
        host: str,
        port: Optional[int] = None,
        peername: Optional[str] = None,
        user: Optional[str] = None,
        ssh: Any = None,
        rpython: Optional[str] = None,
        extra_args: Sequence[str] = (),
        *,
        switch: Optional[KillSwitch] = None,
    ) -> None:
        """Connect to ``host`` and send the definitions. Raises ConnectionLost subclasses.

        Over ssh (``ssh`` set, a ``user`` given, or no key) the server is started through
        the system's ``ssh`` (see ``ssh.open_channel``; ``ssh`` may be a list of words, a
        wrapper and its arguments, and ``switch``, a ``KillSwitch``, lets another thread
        end that ssh); otherwise ``host:port`` is an ``easycluster -S`` server and
        ``key`` its key. ``connect_timeout`` bounds it all, up to the hello's answer.
        """
        if self._channel is not None:
            raise ConfigError(
                f"already connected to {self.peername}; close() it first (or use reconnect())"
            )
        timeout = self.connect_timeout
        self._connect_deadline = None if timeout is None else time.monotonic() + timeout
        if ssh or user or self.key is None:
            self._target = None
            self._ssh_target = (host, port, user, ssh, rpython, tuple(extra_args))
            from ..launch.ssh import open_channel  # loaded only for ssh

            channel, closer, name = open_channel(
                host,
                port=port,
                user=user,
                ssh=ssh,
                rpython=rpython,
                extra_args=extra_args,
                options=self.wire_options(),
                timeout=self.connect_timeout,
                switch=switch,
                remote_cache=_cache_folder(self.remote_cache),
            )
            self.attach(channel, peername or name, closer)
            return
        key = check_key(self.key)
        port = DEFAULT_PORT if port is None else int(port)
        self._target = (host, port, peername)
        self._ssh_target = None
        name = peername or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        try:  # (a handshake the server dropped, as under a flood, is tried again)
            channel = open_tcp_channel(host, port, key, self.wire_options(), self.connect_timeout)
        except ConnectionLost as e:  # (and its subclasses): say which server
            if name in str(e):
                raise
            raise type(e)(f"{name}: {e}") from e
        self.attach(channel, name)

    def wire_options(self) -> WireOptions:
        """The handshake options this client asks for (frame limit, compression)."""
        return WireOptions(max_frame=self.max_frame, compress=self.enable_compression)

    def attach(
        self,
        channel: Channel,
        peername: str,
        closer: Optional[Callable[[], None]] = None,
        wait: bool = True,
    ) -> None:
        """Use ``channel`` (a finished handshake) as this client's connection to the
        server called ``peername``, and send the definitions; ``closer`` runs once the
        connection is closed. EasyCluster 0.22 called this ``set_socket``. Raises
        ConnectionLost (and closes) when setting up the connection fails, and
        ConfigError when this client is connected already (``channel`` is closed and
        ``closer`` run then: ``close()`` the client first).

        ``wait=False`` (``spawn_local``, when its hello can only fail with the
        connection): the hello's answer is not waited for here; a connection that
        fails meanwhile fails the first call (ConnectionLost, saying why), and
        ``server_pid``/``server_version`` wait for the answer. Else the answer is
        waited for until ``connect_timeout`` runs out (counted from the start of
        ``connect()``, or from now), then ConnectError: a server stopped or hung right
        after its start never holds up the connect."""
        deadline, self._connect_deadline = self._connect_deadline, None
        limit = self.connect_timeout
        if deadline is not None:
            limit = max(0.0, deadline - time.monotonic())
        proxies = ProxyTable(self, self._send_releases)
        reader = self._reader
        if reader.pending or self._reader_used:  # one reader per connection
            reader = self._new_reader()
        # One step, as ``Client._shutdown`` takes a connection (see there): a loss of the
        # previous connection ended on another thread meanwhile ends that one, never
        # this one, and never leaves this channel to nobody.
        with self._channel_lock:
            busy = self._channel is not None
            if not busy:
                self._proxies, self._channel, self._reader = proxies, channel, reader
                self.peername = peername
                self._closer = closer
        if busy:  # (checked in the same step: two reconnects at once, one loses here)
            channel.close("the client was connected already")
            if closer is not None:
                closer()
            raise ConfigError(f"already connected to {self.peername}; close() it first")
        self._reader_used = True
        reader.start(channel)
        end, blocks = definitions.blocks_since(0)
        self._sent_blocks = end
        try:
            hello = (self.definitions, blocks, True) if self.remote_output else None
            if not wait:
                answer = self._server_info = HelloAnswer()
                # On the server's reading thread (CONTROL), run as it is read: the calls
                # sent after it, on any server thread, find its definitions in place.
                rid = self.send_request(  # (a callback: read with the first reply)
                    0,
                    "hello",
                    hello or (self.definitions, blocks),
                    threadid=CONTROL,
                    origexc="quiet",
                    oncomplete=answer.fill,
                    onerror=(self._hello_failed, channel),
                )
                if not answer:  # (else answered already)
                    answer.response = self._reader.pending.get(rid)
                return
            self._server_info = self.send_request(
                0,
                "hello",
                hello or (self.definitions, blocks),
                threadid=0,
                origexc="quiet",
                timeout=limit,
            )
        except BaseException as e:  # e.g. a define_common block failing there: no leak
            if isinstance(e, DefinitionsError):
                e.host = peername
            self._shutdown(
                ConnectionLost,
                f"{peername}: setting up the connection failed: {type(e).__name__}: {e}",
            )
            if isinstance(e, CallTimeout) and limit is not None:
                raise ConnectError(
                    f"{peername}: connecting timed out after {self.connect_timeout:g} s: "
                    "no answer to the hello (the server is stopped, or hung)"
                ) from None
            raise

    def _hello_failed(self, err: BaseException, channel: Channel) -> None:
        """A hello sent without waiting failed (not by a lost connection, which ends the
        connection anyway): end the connection, saying why."""
        orig = getattr(err, "orig", err)  # (a RemoteException: what the server raised)
        if channel is self._channel and not isinstance(orig, ConnectionLost):
            if isinstance(orig, DefinitionsError):  # (a block that ran on another server)
                orig.host = self.peername
            self._shutdown(
                ConnectionLost,
                f"{self.peername}: setting up the connection failed: {type(orig).__name__}: {orig}",
                only=channel,
            )

    def _new_reader(self) -> Any:
        """The reader of a new connection (ThreadedClient makes a ThreadReader)."""
        return InlineReader(self._handle, self._lost)

    def reconnect(self) -> None:
        """Close and connect again to the same server: a fresh server process (a
        ``spawn_local`` client: a fresh local server, started the same way)."""
        ssh_target = self._ssh_target
        respawn = vars(self).get("_respawn")  # (set by spawn_local; not getattr: see Client)
        if self._target is None and ssh_target is None and respawn is None:
            raise ConfigError(
                "reconnect() needs a client that was connected with connect() or spawn_local()"
            )
        self.close("reconnecting")
        if self._target is None and ssh_target is None:
            if respawn is not None:  # (checked above; for the type checker)
                respawn()
        elif self._target is not None:
            host, port, peername = self._target
            self.connect(host, port, peername)
        elif ssh_target is not None:  # (one of the two is set: checked above)
            host, port, user, ssh, rpython, extra = ssh_target
            self.connect(host, port, user=user, ssh=ssh or "ssh", rpython=rpython, extra_args=extra)


def _cache_folder(setting: Union[bool, str, None]) -> Optional[str]:
    """``remote_cache`` as ``ssh.open_channel`` takes it: None (off), "" (the default
    folder) or a folder; ConfigError for anything else (``remote_cache=0`` would name a
    folder "0")."""
    if setting is None or setting is False:
        return None
    if setting is True:
        return ""
    if isinstance(setting, str):
        return setting
    fspath = getattr(setting, "__fspath__", None)  # (a pathlib path)
    if fspath is not None:
        return str(fspath())
    raise ConfigError(
        f"remote_cache must be True, False, None or a folder on the remote host, not {setting!r}"
    )


if TYPE_CHECKING:
    _Answer = Dict[str, Any]
else:
    _Answer = dict  # (typing loads only for the checker)


class HelloAnswer(_Answer):
    """The server's answer to a hello sent without waiting (``attach(wait=False)``),
    filled in when it is read; ``get`` waits for it first (reading, as a call would)."""

    response: Any = None  # the hello's Response until answered or looked at

    def fill(self, info: Dict[str, Any]) -> None:
        self.update(info)
        self.response = None  # (no cycle through the client kept past the answer)

    def settle(self) -> None:
        """Wait for the answer (reading, as a call would); an error is the callback's.
        Every thread that asks waits until it is in (``response`` is dropped after)."""
        response = self.response
        if response is not None:
            if response.exception() is None:
                self.update(response.result())  # (its callback may not have run yet)
            self.response = None

    def get(self, key: str, default: Any = None) -> Any:
        self.settle()
        return super().get(key, default)
