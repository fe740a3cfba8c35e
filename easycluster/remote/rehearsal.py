"""A rehearsal of a server's usual call, for the processes that fork servers.

CPython 3.11 runs a function's generic bytecode for its first calls and rewrites it
into a specialized form at the eighth ("quickening"; later versions specialize
sooner). A server runs each function of a call's path once per request, so a fresh
server pays the generic form for its first eight requests: in the side-by-side S5 (one
call on each of 50 fresh ``easycluster -S`` servers, ten rounds after one warm-up
round) the rounds before the eighth cost 30-50% more than the later ones, and most of
the measured rounds are among them. So the processes that fork servers (the TCP
listener once its port is open, the zygote) rehearse once before their first fork: a
connection over a socketpair of their own, served by the real loop on this thread, fed
``CALLS`` calls one at a time by a thread that plays the client; every server forked
after inherits every function of a call's path in its specialized form. Nothing else
outlives the rehearsal: its objects and sockets are gone and its one thread has ended
when ``rehearse`` returns (no standby thread is started), so a fork right after finds
no other thread. About 1.5 ms, once per listener or zygote.
"""

from __future__ import annotations

import socket
import threading

from ..objects import serialize
from ..protocol import frames
from ..protocol.messages import REQUEST_HEAD
from ..transport.channel import Channel
from .connection import ServerConnection

CALLS = 9  # one past the eighth call of each function
# A builtin called by name: the lookup every ``rmt.func(...)`` makes (``verb_call``),
# with nothing added to any definitions module.
_REQUEST: Tuple[int, str, Tuple[Any, ...], Dict[str, Any]] = (0, "call", ("abs", (-1,)), {})
_TIMEOUT = 5.0  # a rehearsal that has not ended by then is abandoned (the feeder closes)
_REPLY_MAX = 1 << 12  # a reply to ``abs(-1)`` is far smaller

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Tuple


def rehearse(calls: int = CALLS) -> bool:
    """Serve ``calls`` calls over a socketpair on this thread, then return whether the
    rehearsal ran through. Never raises (a rehearsal only: the servers forked after a
    failed one specialize their code as they go) and returns within ``_TIMEOUT`` even
    if the serving side stalls (the feeding side then gives up and closes)."""
    try:
        a, b = socket.socketpair()
    except OSError:
        return False
    try:
        _rehearse(a, b, calls)
        return True
    except Exception:
        return False
    finally:
        a.close()
        b.close()


def _rehearse(a: socket.socket, b: socket.socket, calls: int) -> None:
    key = bytes(32)  # (a key nobody holds: the two ends are both ours)
    server = Channel(a, frames.Session(key, key, frames.DIR_S2C, frames.DIR_C2S))
    client = frames.Session(key, key, frames.DIR_C2S, frames.DIR_S2C)
    body = serialize.dumps(_REQUEST)[0]
    wire = [  # every frame the client sends, made before the thread starts
        b"".join(client.pack(frames.FT_REQUEST, REQUEST_HEAD.pack(rid, 0) + body))
        for rid in range(1, calls + 1)
    ]
    wire.append(b"".join(client.pack(frames.FT_CLOSE, b"")))
    b.settimeout(_TIMEOUT)
    feeder = threading.Thread(target=_feed, args=(b, wire), name="easycluster-rehearsal")
    feeder.start()
    try:
        ServerConnection(server, "rehearsal", standby=False).serve()
    finally:
        try:  # (the feeder's wait for a reply ends at once, whatever stopped the server)
            a.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        feeder.join()


def _feed(sock: socket.socket, wire: List[bytes]) -> None:
    """Send the frames one at a time, each call once bytes of its reply came (a reply is
    not checked: the server's side is the one rehearsed); on any failure shut the
    socket (the server then ends)."""
    try:
        for data in wire[:-1]:
            sock.sendall(data)
            if not sock.recv(_REPLY_MAX):
                return  # the server ended
        sock.sendall(wire[-1])
    except OSError:  # (a timeout too: the server sees the end of the stream)
        pass
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
