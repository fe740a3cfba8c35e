"""A server's replies: pickling a call's value (or its error) and sending it.

``ServerConnection._run_request`` sends the usual reply itself (a number or None for a
lone call, pickled by C's pickler alone); everything else comes here: values of any
kind, errors, replies held for a batch or handed to the writer thread, and the errors
of pickling or sending a reply, which become the reply.
"""

from __future__ import annotations

from ..errors import ConnectionLost, FrameTooLarge, RemoteException
from ..objects import serialize
from ..protocol import frames
from ..protocol.messages import REPLY_HEAD
from ..transport.outbox import POST_MAX
from .failures import unpicklable_return, unsendable_exception

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional


def send_reply(
    conn: Any,  # the ServerConnection (its channel, table and output)
    rid: int,
    status: int,
    value: Any,
    hold: bool = False,
    more: Optional[Callable[[], int]] = None,
    later: bool = False,
    request: Any = None,
) -> None:
    """Send a reply: held in the outbox if ``hold`` (the caller flushes), handed to
    the writer thread if ``later`` (small ones), else batched with others only while
    ``more()`` says requests wait behind it. ``request`` (the unpickled request, if
    it got that far) names the call when its return value cannot be pickled."""
    fwd = conn.output
    if fwd is not None and (fwd.out.pending or fwd.err.pending):
        fwd.flush_partial()  # a partial line printed by the call goes first
    try:
        main = serialize.dumps_plain((value,))  # (``dumps``' first step, written out)
        if main is None:
            main, bufs = serialize.dumps_full((value,), conn.table, 3)
        else:
            bufs = []
    except BaseException as e:
        if status == 0:  # the value: say which call, which part, and what to do
            status, value = 1, unpicklable_return(request, value, e, conn.table)
        else:
            value = unsendable_exception(value, e)
        try:
            main, bufs = serialize.dumps((value,), conn.table)
        except BaseException as e2:
            status, value = 1, unsendable_exception(value, e2)
            main, bufs = serialize.dumps((value,), conn.table)
    try:
        if bufs or hold or later or len(main) > POST_MAX:
            conn.channel.send_message(
                frames.FT_RESPONSE,
                REPLY_HEAD.pack(rid, status),
                main,
                bufs,
                flush=not (more and more()),
                hold=hold,
                later=later,
            )
        else:  # (``send_message``'s usual choice, made here: every reply comes this way)
            conn.channel.post(
                frames.FT_RESPONSE, REPLY_HEAD.pack(rid, status) + main, not (more and more())
            )
    except FrameTooLarge as e:
        value = RemoteException(e, [f"reply of request {rid} not sent: {e}\n"])
        try:
            conn.channel.send(
                frames.FT_RESPONSE,
                [REPLY_HEAD.pack(rid, 1), serialize.dumps((value,), conn.table)[0]],
            )
        except ConnectionLost:
            pass
    except ConnectionLost:
        pass  # the client is gone; the reader thread ends the process
