"""``Port``: messages from any thread to a Task's handlers (ClusterShell's ``task.port()``).

A thread that is not the Task's (a reader of the terminal, a watcher, a web request)
must not touch the Task's engine; it hands the Task a message instead:
``port.msg_send(obj)`` queues ``obj`` and wakes the Task's loop, which calls
``handler.ev_msg(port, obj)`` on the Task's thread, one message at a time, in the order
sent. ``handler.ev_port_start(port)`` comes once, before the port's first message: at
the start of the first run after ``task.port()``, or at once in a run going on.

Lifetime: a port belongs to its Task until ``port.close()`` (``task.remove_port``).
Messages sent while no run is in progress wait for the next run. Closing is orderly:
what was sent before ``close()`` is still delivered, a ``msg_send`` after it raises
ValueError. A port that is not ``autoclose`` keeps ``resume()`` running, waiting for
messages, until it is closed or the Task aborted (clush's way of keeping a session
open); an ``autoclose`` one does not: when only such ports (and autoclose workers and
timers) are left, the run ends, and its undelivered messages wait for the next run.
After ``task.abort()`` no ``ev_msg`` is delivered in that run (the messages stay queued).

Thread safety: ``msg_send`` and ``close`` from any thread. The queue is a ``deque``
(append and popleft are atomic); each of them pokes the run's ``Wakeup`` pipe (from the
Task's own thread too), and the loop delivers at the top of every turn, so nothing sent
waits for the loop's next timeout.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Deque, List, Protocol


class PortOwner(Protocol):
    """What a port needs of its Task."""

    def poke(self) -> None: ...
    def drop_port(self, port: Port) -> None: ...


class Port:
    """A thread-safe message queue into a Task (see the module docstring)."""

    def __init__(self, task: PortOwner, handler: Any, autoclose: bool) -> None:
        self.task = task
        self.handler = handler
        self.autoclose = autoclose
        self.queue: Deque[Any] = collections.deque()
        self.started = False  # ev_port_start delivered
        self.closing = False  # close() was called: deliver what is queued, then drop it

    def __repr__(self) -> str:
        state = "closing" if self.closing else "open"
        return f"<Port {state}, {len(self.queue)} queued>"

    def msg_send(self, msg: Any) -> bool:
        """Queue ``msg`` for ``ev_msg`` on the Task's thread (from any thread); True.
        ValueError once the port is closed."""
        if self.closing:
            raise ValueError("msg_send() on a closed port")
        self.queue.append(msg)
        self.task.poke()
        return True

    def msg(self, msg: Any, send_once: bool = False) -> bool:
        """ClusterShell's older name of ``msg_send`` (``send_once`` is accepted and has no
        effect: a message is never delivered twice)."""
        return self.msg_send(msg)

    def close(self) -> None:
        """No more messages: those already sent are delivered, then the port is gone."""
        if not self.closing:
            self.closing = True
            self.task.poke()

    @property
    def holds(self) -> bool:
        """This port keeps a run going (waiting for messages)."""
        return not self.autoclose and not self.closing

    def deliver(self, aborted: Callable[[], bool]) -> None:
        """On the Task's thread: ``ev_port_start`` if not done, then every message
        queued now (one sent meanwhile waits for the next turn of the loop), until
        ``aborted()`` turns true (a handler may abort the Task)."""
        if not self.started:
            self.started = True
            start = getattr(self.handler, "ev_port_start", None)
            if start is not None:
                start(self)
        for _ in range(len(self.queue)):
            if aborted():
                return
            msg = self.queue.popleft()
            handle = getattr(self.handler, "ev_msg", None)
            if handle is not None:
                handle(self, msg)


def deliver_all(ports: List[Port], aborted: Callable[[], bool]) -> None:
    """On the Task's thread: every port's start and queued messages, in the order the
    ports were made; a closed port whose queue is empty is then dropped from its Task.
    Nothing more once ``aborted()`` is true."""
    for port in list(ports):
        if aborted():
            return
        if not port.started or port.queue:
            port.deliver(aborted)
        if port.closing and not port.queue:
            port.task.drop_port(port)
