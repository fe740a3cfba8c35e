"""``Client``: calls on one server, and ``Response``, the future a call returns.

A plain ``Client`` has no reader thread of its own: the thread that waits for a reply
reads the socket (one reader at a time; others wait for it) and completes every reply it
reads. ``ThreadedClient`` (in ``threaded.py``) has a reader thread instead. Either way one
thread owns the reads (``reader.py``) and replies are handed to futures. Connecting
(``connect``, ``attach``, ``reconnect``) is the ``ConnectionSetup`` mixin (``connect.py``).
"""

from __future__ import annotations

import _pickle as pickle  # the C module: pickle.py imports re and enum (~2 ms per start)
import itertools
import sys
import threading

from ..errors import (
    CallTimeout,
    ConnectionLost,
    ProtocolError,
    RemoteException,
    UnpicklableError,
)
from ..objects import definitions, serialize
from ..objects.proxy import GlobalProxy, split_opts
from ..protocol import frames
from ..protocol.messages import REPLY_HEAD, REQUEST_HEAD
from ..transport.channel import Channel
from ..transport.outbox import POST_MAX
from .asyncapi import AsyncCalls
from .connect import ConnectionSetup
from .failures import unpicklable_request
from .incoming import FrameHandling
from .legacy022 import Legacy022
from .outcome import (
    CLIENT_ORIGEXC,
    ORIGEXC_VALUES,
    Slot,
    invalid_state,
    raise_reply,
    settle,
    timeout_error,
)
from .posting import PostCalls
from .verbs import ServerVerbs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

    from .outcome import Callback
    from .output import OutputSink

# call_timeout= in the call sugar (rmt.func(..., call_timeout=5)) sets send_request's
# timeout; 'timeout' itself is left to the remote function, as in EasyCluster.


_GLOBALS_KEPT = 256  # instance attributes, including GlobalProxy objects kept by __getattr__
# close()'s goodbye waits this long for another thread's send (one stuck on a server
# that stopped reading keeps the writes: then no goodbye; the transport's end wakes it)
GOODBYE_WAIT = 1.0


class Client(ConnectionSetup, FrameHandling, ServerVerbs, PostCalls, Legacy022, AsyncCalls):
    """A connection to one server; remote globals are reached as attributes.

    ``Client(key, host, port)`` connects to a standalone server at once (key from
    ``read_key_file``). ``definitions`` names the definitions module whose names calls
    resolve against. Calls take the special keywords ``nonblocking``, ``oncomplete``,
    ``onerror``, ``threadid``, ``origexc`` and ``call_timeout`` (seconds; then
    ``CallTimeout``). ``call_timeout=`` given here bounds every call and wait that sets
    no timeout of its own (default None: no bound, as in EasyCluster 0.22): a stopped or
    stuck server then never makes a script hang. After a ``CallTimeout`` the call may
    still run on its server thread; later calls on that thread wait behind it (the
    error says what to do: another ``threadid``, or a new connection).

    What remote code prints (``sys.stdout``/``sys.stderr`` on the server) comes back
    over the connection on every transport and is printed here line by line as
    ``host: line``, stdout to stdout and stderr to stderr (``remote_output=True``, the
    default); ``remote_output=callable`` receives ``(host, stream, text)`` instead, and
    ``False`` leaves it where the server's own streams go (``remote/output.py``).

    ``origexc=`` given here is how this client's calls raise a remote exception when
    they say nothing themselves (a call's own ``origexc=`` wins): True (the default, as
    in 0.22) prints the remote traceback and raises the original exception, ``"quiet"``
    raises it without printing, False raises the ``RemoteException`` around it.
    Over ssh, ``remote_cache=True`` (or a folder there) keeps the server's code on the
    remote host for later connections (off by default: docs/ssh.md).
    """

    _channel: Optional[Channel] = None
    _closer: Optional[Callable[[], None]] = None
    _ssh_target: Optional[Tuple[Any, ...]] = None
    _proxies: Any = None
    peername = "(not connected)"
    origexc: Any = True  # (set per instance; here for subclasses that skip __init__)

    def __init__(
        self,
        key: Optional[bytes] = None,
        host: Optional[str] = None,
        port: Optional[int] = None,
        definitions: str = definitions.DEFAULT_MODULE,
        enable_compression: bool = False,
        ssh: Any = None,
        user: Optional[str] = None,
        rpython: Optional[str] = None,
        extra_args: Sequence[str] = (),
        *,
        connect_timeout: Optional[float] = 10.0,
        max_frame: int = frames.DEFAULT_MAX_FRAME,
        call_timeout: Optional[float] = None,
        remote_output: Union[bool, OutputSink] = True,
        origexc: Any = True,
        remote_cache: Union[bool, str, None] = None,
    ):
        if isinstance(key, str):
            # Client('node1') is the habit from RPyC and Fabric: say so at once instead
            # of making an unconnected client that fails later
            raise TypeError(
                f"Client's first argument is the key (bytes), not {key!r}: to connect "
                f"over ssh write Client(host={key!r}); over TCP "
                "Client(read_key_file(FILE), host, port); or Client.from_spec('HOST')"
            )
        if not any(origexc is v or origexc == v for v in ORIGEXC_VALUES):
            raise ValueError(f"origexc must be True, False or 'quiet', not {origexc!r}")
        self.key = key
        # how calls that give no origexc= of their own raise remote exceptions
        self.origexc = origexc
        self.definitions = definitions
        self.enable_compression = enable_compression
        self.connect_timeout = connect_timeout
        self.remote_cache = remote_cache  # (ssh only: ``ConnectionSetup.remote_cache``)
        # seconds a call without its own timeout may take (None: no bound, as in 0.22)
        self.call_timeout = call_timeout
        # remote print: True prints each line here as "host: line" (stdout to stdout,
        # stderr to stderr), a callable(host, stream, text) gets the text instead, False
        # leaves it where the server's own streams go (differs by transport)
        self.remote_output = remote_output
        self.max_frame = max_frame
        self._reader: Any = self._new_reader()
        self._rids = itertools.count(1)
        self._default_thread = 0
        # ends a lost connection's transport beside the code that noticed the loss
        self._closing: Optional[threading.Thread] = None
        self._sent_blocks = 0
        self._server_info: Dict[str, Any] = {}
        self._target: Optional[Tuple[Any, ...]] = None
        if host is not None:
            self.connect(host, port, user=user, ssh=ssh, rpython=rpython, extra_args=extra_args)

    # -- calls -----------------------------------------------------------------------

    def send_request(
        self,
        oid: int,
        meth: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Dict[str, Any]] = None,
        nonblocking: bool = False,
        oncomplete: Callback = None,
        onerror: Callback = None,
        threadid: Optional[int] = None,
        origexc: Any = CLIENT_ORIGEXC,
        timeout: Optional[float] = None,
        target: Any = None,
        call_timeout: Optional[float] = None,
    ) -> Any:
        """Send one request; the funnel every call goes through.

        Returns the value; or, with ``nonblocking``, a ``Response``; or, with
        ``oncomplete``, the request id (the callback gets the value later, ``onerror``
        the ``RemoteException``, defaulting to ``oncomplete``). A blocking call with
        ``timeout`` raises ``CallTimeout`` when no reply came in time: the outcome is
        unknown (the call may still run remotely), it is never retried, and a late
        reply is dropped. ``target`` (the proxy a method call is made on) is kept alive
        until the reply, like the proxies among the arguments. ``origexc`` defaults to
        the client's (``Client(origexc=...)``, True unless set there). ``call_timeout``
        is ``timeout``'s other name (the call sugar's: ``rmt.eval(..., call_timeout=5)``
        as ``rmt.func(..., call_timeout=5)``).

        An argument that cannot be pickled raises ``UnpicklableError`` (naming the call,
        the argument and its type) before anything is sent.
        """
        channel = self._channel
        if channel is None:
            raise ConnectionLost(f"{self.peername}: not connected")
        if timeout is None:
            timeout = call_timeout
        tid = self._thread_for_call() if threadid is None else threadid
        if origexc is CLIENT_ORIGEXC:
            origexc = self.origexc
        rid = next(self._rids)
        proxies = self._proxies
        request = (oid, meth, tuple(args), kwargs or {})
        main = serialize.dumps_plain(request)
        pins: Optional[List[Any]] = None
        if main is None:  # not plain data: proxies among the arguments are pinned
            bufs: Sequence[Any] = ()
            proxies.pin_start()
            try:
                main, bufs = serialize.dumps_full(request, proxies, 4)
            except Exception as e:
                proxies.pin_take()  # (the probe below must not pin proxies again)
                err = unpicklable_request(
                    self.peername, oid, meth, args, kwargs, target, e, proxies
                )
                if err is e:
                    raise
                raise err from e
            finally:
                pins = proxies.pin_take()
        else:
            bufs = ()
        if target is not None:
            pins = [target] if pins is None else pins + [target]
        if proxies.releases:
            self._send_releases(flush=False)
        wait_here = not nonblocking and oncomplete is None and onerror is None
        reader = self._reader
        if wait_here and reader.inline:
            resp: Any = Slot()  # this thread reads the reply itself: no Future needed
        else:
            resp = (_Response or _response_class())(self, reader, rid, origexc, tid)
        if pins:
            resp.pins = pins  # released only after the reply (see ProxyTable.pin_take)
        if oncomplete is not None or onerror is not None:  # (before the send: a quick
            # reply would otherwise run it here, not on a ThreadedClient's reader)
            resp.add_done_callback(_callback_runner(oncomplete, onerror))
        pending = reader.pending
        pending[rid] = resp
        try:
            # a non-blocking call may wait a moment to leave with others
            if bufs or len(main) > POST_MAX:
                channel.send(frames.FT_REQUEST, [REQUEST_HEAD.pack(rid, tid), main], bufs)
            else:  # (``send_message``'s choice, made here: every call comes this way)
                channel.post(frames.FT_REQUEST, REQUEST_HEAD.pack(rid, tid) + main, wait_here)
        except BaseException as e:
            self._unsent(channel, pending, rid, e)
            raise
        if oncomplete is not None:
            return rid
        if nonblocking:
            reader.watch()  # concurrent.futures.wait() and friends do not read
            return resp
        if timeout is None:
            timeout = self.call_timeout
        if resp.__class__ is Slot:
            reader.wait_for(resp, timeout)
            if not resp.finished:
                pending.pop(rid, None)
                if timeout is None or self._channel is None:
                    # the connection closed while this request was being sent: the
                    # sweep of pending calls at close missed it (it was not listed yet)
                    raise ConnectionLost(f"{self.peername}: connection closed during the call")
                raise timeout_error(self, rid, meth, timeout, tid)
            if resp.exc is None:
                return resp.value
            raise_reply(self, resp.exc, origexc)
        try:
            return resp.wait(timeout)
        except CallTimeout:
            pending.pop(rid, None)
            raise

    def _send_releases(self, flush: bool) -> None:
        """Tell the server which objects no proxy here refers to any more."""
        body = self._proxies.take_releases()
        channel = self._channel
        if body and channel is not None:
            channel.post(frames.FT_RELEASE, body, flush=flush)

    def _thread_for_call(self) -> int:
        return self._default_thread

    def raw_call(
        self,
        func: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Dict[str, Any]] = None,
        **opts: Any,
    ) -> Any:
        """Call remote ``func`` (a dotted name) with ``args``/``kwargs`` as given."""
        return self.send_request(0, "call", (func, tuple(args), kwargs or {}), **opts)

    def call(self, _func: str, *args: Any, **kwargs: Any) -> Any:
        """Call remote ``_func``; the special keywords are taken out of ``kwargs``."""
        if not kwargs:
            return self.send_request(0, "call", (_func, args, {}))
        opts = split_opts(kwargs)
        return self.send_request(0, "call", (_func, args, kwargs), **opts)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        proxy = GlobalProxy(self, name)
        d = self.__dict__
        if name[0] != "_" and len(d) < _GLOBALS_KEPT:
            d[name] = proxy  # kept: the next rmt.name skips this slow path (proxies are stateless)
        return proxy

    # -- replies ---------------------------------------------------------------------

    def report_exception(self, exc: RemoteException) -> None:
        """Print the remote traceback to stderr (override to change); quiet for
        StopIteration and for a traceback without frames (nothing the error's own
        message does not say)."""
        if isinstance(exc.orig, StopIteration):
            return
        if not any(line.startswith("  File ") for line in exc.text):
            return  # no frames (a return value that failed to pickle): the error says it all
        sys.stderr.write(f"Remote traceback from {self.peername}:\n{''.join(exc.text)}")

    def _handle(self, got: List[frames.Frame]) -> None:
        """Complete the replies in ``got`` (frames as ``Channel.recv_frames`` returns them)."""
        f = got[0]
        ftype, flags, payload, _ = f  # (a tuple's unpacking: the named fields are properties)
        if len(got) == 1 and ftype == frames.FT_RESPONSE:  # a lone reply
            # (nothing to undo, the usual case: ``parts`` skipped)
            self._complete(*f.parts()) if flags else self._complete(memoryview(payload), ())
        else:
            self._handle_many(got)

    def _complete(self, main: memoryview, bufs: Sequence[memoryview]) -> None:
        if len(main) < REPLY_HEAD.size:
            raise ProtocolError(f"reply too short from {self.peername}")
        rid, status = REPLY_HEAD.unpack_from(main)
        resp = self._reader.pending.pop(rid, None)
        if resp is None:
            return  # the caller gave up (timeout): late replies are dropped by design
        if resp.pins is not None:
            resp.pins = None  # the server has resolved the request's proxies by now
        try:
            (value,) = serialize.loads(main[REPLY_HEAD.size :], bufs, self._proxies)
        except BaseException as e:
            err = pickle.UnpicklingError(
                f"the reply to request {rid} from {self.peername} "
                f"cannot be unpickled here: {type(e).__name__}: {e}"
            )
            settle(resp.set_exception, RemoteException(err, []))
            return
        try:  # a close racing with this reader may have completed it already
            if status == 0:
                resp.set_result(value)
            else:
                if not isinstance(value, RemoteException):
                    value = RemoteException(value, [])
                elif isinstance(value.orig, UnpicklableError) and not value.orig.host:
                    value.orig.host = self.peername  # the server cannot name itself as we do
                resp.set_exception(value)
        except invalid_state():
            pass

    def read_response(self, block: bool = True) -> None:
        """Read and handle incoming replies once (running callbacks); for plain clients."""
        self._reader.read_response(block)

    def _lost(self, channel: Channel, exc: ConnectionLost) -> None:
        """``channel`` failed: end the connection, unless it was already replaced.

        Whoever reads notices the loss (a fan-out collecting replies, a reader thread):
        it must not wait for the transport to end (an ssh client whose peer went quiet
        gets a second's grace, and a fan-out would pay it per lost host, one after
        another), so the closer runs on a thread of its own; ``close()`` waits for it."""
        self._shutdown(type(exc), f"{self.peername}: {exc}", later=True, only=channel)

    def _shutdown(
        self, kind: type, message: str, later: bool = False, only: Optional[Channel] = None
    ) -> None:
        """End the connection (``only``: if it is still that channel's, as ``_lost`` asks).

        The connection is taken in one step under ``_channel_lock``, as ``attach`` gives
        one: a loss ended on another thread (a reader, the standby) while this client
        reconnects would else end the new connection, or, reading the old channel
        before ``attach`` set the new one and writing None after, leave the new one to
        nobody: never closed, its socket (a local server's) left to the garbage
        collector, and the reconnect failed ("not connected")."""
        with self._channel_lock:
            channel = self._channel
            if only is not None and channel is not only:
                return  # ended already, or replaced by a reconnect: not ours to end
            self._channel = None
            reader, proxies = self._reader, self._proxies
            closer, self._closer = self._closer, None
        if channel is not None:
            # Shut down, let the reader end, then close: a reader thread still between
            # taking the descriptor and waiting on it would otherwise wait on whatever
            # socket reuses that number next (for up to its keep-alive interval).
            channel.shutdown()
            reader.stop()
            channel.close(message)
        else:
            reader.stop()
        if proxies is not None:  # (None: never connected; closing it is a no-op)
            proxies.invalidate()
        pending, reader.pending = reader.pending, {}
        for resp in list(pending.values()):  # a reader may still pop from it meanwhile
            settle(resp.set_exception, kind(message))
        if closer is not None:
            if later:  # (not a daemon: the interpreter's exit waits for it, no orphan)
                closing = threading.Thread(target=closer, name="easycluster-closer")
                closing.start()
                self._closing = closing  # (started first: a close() elsewhere joins it)
            else:
                closer()

    # -- housekeeping ----------------------------------------------------------------

    def close(self, message: str = "Connection closed") -> None:
        """Close the connection; pending calls fail with ConnectionLost(message)."""
        channel = self._channel
        if channel is not None:
            try:  # the goodbye, unless a send is stuck on a server that stopped reading
                channel.send(frames.FT_CLOSE, b"", wait=GOODBYE_WAIT)
            except ConnectionLost:
                pass
        self._shutdown(ConnectionLost, message)
        closing = vars(self).get("_closing")  # (not getattr: see __getattr__)
        self._closing = None
        if closing is not None and closing is not threading.current_thread():
            closing.join()  # a lost connection's transport, ended on the side: done now

    @property
    def connected(self) -> bool:
        return self._channel is not None

    @property
    def server_version(self) -> Optional[str]:
        return self._server_info.get("version")

    @property
    def server_pid(self) -> Optional[int]:
        return self._server_info.get("pid")

    def fileno(self) -> int:
        if self._channel is None:
            raise ConnectionLost(f"{self.peername}: not connected")
        return self._channel.fileno()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self._channel is not None else "closed"
        return f"<{type(self).__name__} {self.peername} {state}>"


# What this module imports on first need (below) yet needs at run time: a payload that
# carries it (a tree gateway's) carries these too (``launch/payload.py`` reads this).
LOADED_LATER = (".response",)

# ``response.py`` (Response, the Future), loaded when a call first needs one: it loads
# concurrent.futures and logging (about 5 ms of a master's start-up), which a script
# making only blocking calls on a plain client never needs. Cached here, since every
# non-blocking call makes a Response.
_Response: Any = None
_callback_runner: Any = None  # (bound with _Response: a call with callbacks makes one)


def _response_class() -> Any:
    global _Response, _callback_runner
    from .response import Response, callback_runner

    _Response, _callback_runner = Response, callback_runner
    return Response


# EasyCluster's common base of Client and Server; scripts only ever named it in isinstance
# checks and subclassing of clients, which the Client class serves.
Connection = Client
