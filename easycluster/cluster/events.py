"""``EventHandler``: what a Task tells your code, and in which order.

Subclass it and override the events you need; the others do nothing. Every handler runs
on the thread that called ``Task.resume()`` / ``Task.run()`` (the Task's I/O thread),
one at a time, so a handler needs no lock to touch the Task or its results, and a slow
handler delays every node (keep them short, or hand work to another thread).

The signatures are public API and will not change: every value an event is about is an
argument (the node, the stream, the line, the return code), never an attribute to read
back from the worker (ClusterShell's #232 and #358 changed its signatures for that
reason; #377 broke subclasses by removing events). New events may be added later under
new names, with a do-nothing default, so a subclass written today keeps working. Extra
arguments will never be appended to these methods.

``node`` is always the slot key: the node's name, or ``name#k`` for its k-th listing
in one run (a node listed twice runs twice and gets two keys, never merged). ``sname``
is ``"stdout"`` or ``"stderr"`` (``"stdin"`` for ``ev_written``). ``msg`` is one line
of output as bytes, without its end-of-line, and the last line arrives even without a
newline (as does the unfinished line of a node that times out, just before it is
killed). A line longer than ``engine.LINE_MAX`` bytes (64 KiB) arrives in pieces of
``LINE_MAX`` (the memory a node's unfinished line may hold): each piece but the last is a
``Piece`` (a ``bytes`` subclass), so ``isinstance(msg, Piece)`` means "the line goes on
in this node's next ``ev_read`` on this stream" (unless the node is aborted first). In
tree mode too: a gateway sends the pieces on unjoined, and a line that came through
whole is cut the same way, so a handler sees what it would see flat (the cuts of a line
still arriving may fall elsewhere than every ``LINE_MAX`` bytes).

The events of one worker (one ``task.shell(...)``), in order; the events of different
nodes interleave, those of one node come in this order::

                                        when                                    per
    ev_start(worker)                    before the worker's first ev_pickup     worker, once
    ev_pickup(worker, node)             the node's command started              node, once
    ev_read(worker, node, sname, msg)   a line came on stdout or stderr         line
    ev_written(worker, node, sname, n)  n bytes of stdin were written           write
    ev_hup(worker, node, rc)            the command ended with return code rc   node, at most once
    ev_timeout(worker)                  some node timed out (before ev_close)   worker, at most once
    ev_close(worker, timedout)          every node of the worker is done        worker, once
    ev_timer(timer)                     a timer fired (any time during resume)  firing
    ev_port_start(port)                 a port's first run began (port.py)      port, once
    ev_msg(port, msg)                   a message sent with port.msg_send       message

So a node's events are ``ev_pickup``, then its ``ev_read``/``ev_written`` events, then
``ev_hup`` unless it timed out or was aborted (``worker.node_status(node)`` then says
``"timeout"`` or ``"aborted"``). Every ``ev_read`` of a node comes before its
``ev_hup``. A node whose command could not be started here gets ``ev_pickup``, the
reason as ``ev_read`` lines (on ``"stderr"``, ``"stdout"`` if the worker merges stderr;
kept in that buffer too) and ``ev_hup(worker, node, 127)`` with status ``"failed"``. A
fetched copy (``rcopy``) that cannot be written here has the reason on ``"stderr"``
before its ``ev_hup``. A node ssh could not reach gets ``ev_hup(worker, node, 255)`` (as
ClusterShell reports it), with status ``"unreachable"`` or ``"hostkey"`` telling it
apart from a command that itself exited 255 (status ``"hup"``). ``ev_timeout`` keeps
ClusterShell's signature (one call per worker, the nodes in
``worker.iter_keys_timeout()``); the nodes of a worker end with one ``ev_close``,
``timedout`` True if any node timed out.
After ``Task.abort()`` no further event is delivered but ``ev_close(worker, timedout)``,
once for each worker that had started; nodes that never started get no event at all.
``worker.abort()`` does the same for that worker alone: its ``ev_close`` comes before
``abort()`` returns, and the other workers go on. When the run's own timeout passes
(``resume(timeout)``), the nodes still running count as timed out: their worker gets
``ev_timeout`` then ``ev_close(worker, True)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (types only: the engine imports this module, not the reverse)
    from .port import Port
    from .worker import Timer, Worker


class Piece(bytes):
    """An ``ev_read`` message that is not a whole line but a piece of a longer one: the
    line continues in the next ``ev_read`` of the same node and stream."""

    __slots__ = ()


class EventHandler:
    """Base class of Task event handlers; see the module docstring for the order."""

    def ev_start(self, worker: Worker) -> None:
        """The worker starts: called once, before its first ``ev_pickup``."""

    def ev_pickup(self, worker: Worker, node: str) -> None:
        """``node``'s command started (it has a place in the fan-out window)."""

    def ev_read(self, worker: Worker, node: str, sname: str, msg: bytes) -> None:
        """A line of output (without its end-of-line) came from ``node`` on ``sname``."""

    def ev_written(self, worker: Worker, node: str, sname: str, size: int) -> None:
        """``size`` bytes were written to ``node``'s ``sname`` (``"stdin"``)."""

    def ev_hup(self, worker: Worker, node: str, rc: int) -> None:
        """``node``'s command ended with return code ``rc`` (128+N if killed by signal N)."""

    def ev_timeout(self, worker: Worker) -> None:
        """Some nodes of ``worker`` timed out (``worker.iter_keys_timeout()``); called once,
        just before ``ev_close``."""

    def ev_close(self, worker: Worker, timedout: bool) -> None:
        """Every node of ``worker`` is done; ``timedout`` is True if any timed out."""

    def ev_timer(self, timer: Timer) -> None:
        """``timer`` fired."""

    def ev_port_start(self, port: Port) -> None:
        """``port`` (``task.port(handler=...)``) is live: called once, before its first
        ``ev_msg``."""

    def ev_msg(self, port: Port, msg: Any) -> None:
        """``msg``, sent with ``port.msg_send(msg)`` from any thread, reached the Task's
        thread (messages of one port arrive in the order sent)."""
