"""A fan-out's sends: one request, pickled once, posted to many servers.

``Client.send_request`` is the funnel of every call: it pickles the request, makes a
``Response`` (a Future) and asks the reader to watch for waiters that do not read. A
fan-out (``call_multi`` & co., in ``parallel.py``) needs none of that per server: its
request is the same for all, and the calling thread itself reads each reply in turn.
So when the request is plain data (``prepare``), ``PostCalls.post_prepared`` sends the
one pickle to each server, and the reply lands in a ``Posted``, a ``Slot`` the fan-out
waits on as on a Response (``wait``, ``done``). With 1,000 local servers this is about a
sixth of the master's CPU per call.

Only for a plain ``Client`` (its reader inline) whose class leaves the call path as
``Client`` has it (``parallel.py`` checks the class): anything else, and a request
that is not plain data (proxies among the arguments are pinned per connection), takes
``send_request``.
"""

from __future__ import annotations

from ..errors import ConnectionLost
from ..objects import serialize
from ..protocol import frames
from ..protocol.messages import REQUEST_HEAD
from ..transport.outbox import POST_MAX
from .outcome import Slot, raise_reply, timeout_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional

    from ..transport.channel import Channel


def prepare(oid: int, meth: str, args: tuple) -> Optional[bytes]:
    """The pickled request ``send_request(oid, meth, args)`` would send, if it may be
    sent as is to every server of a fan-out: plain data (nothing pinned or tracked per
    connection) small enough to post. None otherwise."""
    main = serialize.dumps_plain((oid, meth, args, {}))
    if main is None or len(main) > POST_MAX:
        return None
    return main


class Posted(Slot):
    """Where a posted request's reply lands; waited on by the fan-out that sent it."""

    __slots__ = ("client", "reader", "rid", "thread")

    def __init__(self, client: Any, reader: Any, rid: int, thread: int):
        Slot.__init__(self)
        self.client = client
        self.reader = reader
        self.rid = rid
        self.thread = thread

    def wait(self, timeout: Optional[float], origexc: Any) -> Any:
        """As ``Response.wait``: the value, or the error raised as ``origexc`` says
        (``CallTimeout`` when ``timeout`` passed first: None is the client's
        ``call_timeout``). A reply that did not come is forgotten (a late one is
        dropped): nobody waits on it again."""
        if not self.finished:
            client = self.client
            if timeout is None:
                timeout = client.call_timeout
            self.reader.wait_for(self, timeout)
            if not self.finished:
                self.reader.forget(self.rid)
                if timeout is None:  # (no time limit: only a connection gone ends it)
                    raise ConnectionLost(f"{client.peername}: connection closed during the call")
                raise timeout_error(client, self.rid, "", timeout, self.thread)
        exc = self.exc
        if exc is None:
            return self.value
        raise_reply(self.client, exc, origexc)


class PostCalls:
    """``Client``'s side of posting: ``post_prepared``, and ``_unsent``, what any request
    that failed to leave leaves behind (``send_request``'s too)."""

    # (set by Client; declared here for the type checker)
    _channel: Optional[Channel]
    _reader: Any
    _proxies: Any
    _rids: Any
    peername: str
    _thread_for_call: Callable[[], int]
    _send_releases: Callable[[bool], None]
    send_request: Callable[..., Any]
    _lost: Callable[[Channel, ConnectionLost], None]

    def post_prepared(
        self, main: bytes, oid: int, meth: str, args: tuple, threadid: Optional[int] = None
    ) -> Any:
        """Send the request ``prepare(oid, meth, args)`` returned (``main``) to this
        server; returns a ``Posted`` (a Response where the reader is not inline: a
        ThreadedClient's). Raises as ``send_request`` does when it cannot be sent."""
        reader = self._reader
        if not reader.inline:
            return self.send_request(oid, meth, args, nonblocking=True, threadid=threadid)
        channel = self._channel
        if channel is None:
            raise ConnectionLost(f"{self.peername}: not connected")
        if self._proxies.releases:
            self._send_releases(False)
        tid = self._thread_for_call() if threadid is None else threadid
        rid = next(self._rids)
        posted = Posted(self, reader, rid, tid)
        pending = reader.pending
        pending[rid] = posted
        try:
            channel.post(frames.FT_REQUEST, REQUEST_HEAD.pack(rid, tid) + main, False)
        except BaseException as e:
            self._unsent(channel, pending, rid, e)
            raise
        return posted

    def _unsent(
        self, channel: Channel, pending: Dict[int, Any], rid: int, e: BaseException
    ) -> None:
        """Request ``rid`` failed to leave (``e``): no reply will come (``send_request``'s
        too)."""
        pending.pop(rid, None)
        if isinstance(e, ConnectionLost) and channel.closed:
            # lost while sending: ended now, as a read would end it (its transport too:
            # an ssh is reaped, no zombie)
            self._lost(channel, e)
