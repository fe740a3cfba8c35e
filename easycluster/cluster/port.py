"""``Port``: messages from any thread to a Task's handlers (ClusterShell's ``task.port()``).

A thread that is not the Task's (a reader of the terminal, a watcher, a web request)
must not touch the Task's engine; it hands the Task a message instead:
``port.msg_send(obj)`` queues ``obj`` and wakes the Task's loop, which calls
``handler.ev_msg(port, obj)`` on the Task's thread, one message at a time, in the order
sent. ``port.msg(obj)`` does the same and waits until the Task's thread has taken the
message (just before its ``ev_msg``), as ClusterShell's does; ``msg(obj,
send_once=True)`` is ``msg_send``. ``handler.ev_port_start(port)`` comes once, before
the port's first message: at the start of the first run after ``task.port()``, or at
once in a run going on.

Lifetime: a port belongs to its Task until ``port.close()`` (``task.remove_port``).
Messages sent while no run is in progress wait for the next run. Closing is orderly:
what was sent before ``close()`` is still delivered (ClusterShell drops it), then the
port leaves the Task; a send after ``close()`` returns False, as ClusterShell's. A port
that is not ``autoclose`` keeps ``resume()`` running, waiting for messages, until it is
closed and its queue delivered, or the Task aborted (clush's way of keeping a session
open); an ``autoclose`` one does not: when only such ports (and autoclose workers and
timers) are left, the run ends, and its undelivered messages wait for the next run.
After ``task.abort()`` no ``ev_msg`` is delivered in that run (the messages stay queued,
and a sender waiting in ``msg()`` waits for the next run). While the Task is suspended
(``task.suspend()``) nothing is delivered: messages queue and ``msg()`` waits until it
resumes; a handler's ``suspend()`` holds the rest of the queue (``between``). The queue
has no limit (ClusterShell's makes a sender wait at 100 messages).

Thread safety: ``msg_send``, ``msg`` and ``close`` from any thread. A lock orders a
send against ``close`` and against the port leaving its Task (so a send either is
delivered or returns False). Each send pokes the run's ``Wakeup`` pipe (from the Task's
own thread too), and the loop delivers at the top of every turn, so nothing sent waits
for the loop's next timeout.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Deque, List, Optional, Protocol, Tuple


def idle() -> None:
    """Nothing to do between handlers (``Port.deliver``'s default)."""


class PortOwner(Protocol):
    """What a port needs of its Task."""

    def poke(self) -> None: ...
    def drop_port(self, port: Port) -> None: ...
    def on_own_thread(self) -> bool: ...


class Port:
    """A thread-safe message queue into a Task (see the module docstring)."""

    def __init__(self, task: PortOwner, handler: Any, autoclose: bool) -> None:
        self.task = task
        self.handler = handler
        self.autoclose = autoclose
        # (message, the event its sender waits on in msg(), or None)
        self.queue: Deque[Tuple[Any, Optional[threading.Event]]] = collections.deque()
        self.lock = threading.Lock()
        self.started = False  # ev_port_start delivered
        self.closing = False  # close() was called: deliver what is queued, then leave
        self.gone = False  # left its Task (closed and delivered)

    def __repr__(self) -> str:
        state = "gone" if self.gone else "closing" if self.closing else "open"
        return f"<Port {state}, {len(self.queue)} queued>"

    def msg_send(self, msg: Any) -> bool:
        """Queue ``msg`` for ``ev_msg`` on the Task's thread (from any thread): True, or
        False if the port is closed (nothing queued)."""
        return self._put(msg, None)

    def msg(self, msg: Any, send_once: bool = False) -> bool:
        """``msg_send``, then wait until the Task's thread has taken ``msg`` (unless
        ``send_once``, or when called on the Task's own thread during its run: it would
        wait for itself). False if the port is closed."""
        if send_once or self.task.on_own_thread():
            return self._put(msg, None)
        taken = threading.Event()
        if not self._put(msg, taken):
            return False
        taken.wait()
        return True

    def _put(self, msg: Any, taken: Optional[threading.Event]) -> bool:
        with self.lock:
            if self.closing:
                return False
            self.queue.append((msg, taken))
        self.task.poke()
        return True

    def close(self) -> None:
        """No more messages: those already sent are delivered, then the port leaves its
        Task."""
        with self.lock:
            if self.closing:
                return
            self.closing = True
        self.task.poke()

    @property
    def holds(self) -> bool:
        """This port keeps a run going: not autoclose, and open or with messages left."""
        return not self.autoclose and not self.gone and (not self.closing or bool(self.queue))

    def deliver(self, aborted: Callable[[], bool], between: Callable[[], None] = idle) -> None:
        """On the Task's thread: ``ev_port_start`` if not done, then every message
        queued now (one sent meanwhile waits for the next turn of the loop), until
        ``aborted()`` turns true (a handler may abort the Task); then, if the port is
        closed and nothing is left, it leaves its Task. ``between()`` is called after
        each handler (where a suspended Task waits: ``suspension.py``)."""
        if not self.started:
            self.started = True
            start = getattr(self.handler, "ev_port_start", None)
            if start is not None:
                start(self)
                between()
        for _ in range(len(self.queue)):
            if aborted():
                return
            msg, taken = self.queue.popleft()
            if taken is not None:
                taken.set()  # (the sender goes on as the message is taken, as ClusterShell's)
            handle = getattr(self.handler, "ev_msg", None)
            if handle is not None:
                handle(self, msg)
                between()
        self.leave_if_done()

    def leave_if_done(self) -> None:
        """Closed with nothing left to deliver: leave the Task (no send can come now)."""
        with self.lock:
            done = self.closing and not self.queue and not self.gone
            if done:
                self.gone = True
        if done:
            self.task.drop_port(self)


def deliver_all(
    ports: List[Port], aborted: Callable[[], bool], between: Callable[[], None] = idle
) -> None:
    """On the Task's thread: every port's start and queued messages, in the order the
    ports were made (``Port.deliver``). Nothing more once ``aborted()`` is true."""
    for port in list(ports):
        if aborted():
            return
        port.deliver(aborted, between)


class TaskPorts:
    """``Task``'s port methods (a mixin; the Task sets the attributes below)."""

    ports: List[Port]  # its ports, in the order made, until each leaves
    engine: Any  # the Engine of the run in progress, else None
    thread: Optional[threading.Thread]  # the thread running it

    def port(self, handler: Any = None, autoclose: bool = False) -> Port:
        """A ``Port``: ``port.msg_send(obj)`` from any thread calls
        ``handler.ev_msg(port, obj)`` on the Task's thread during a run (``port.py``).
        Unless ``autoclose``, it keeps ``resume()`` running until ``port.close()``."""
        port = Port(self, handler, autoclose)
        self.ports.append(port)
        self.poke()
        return port

    def remove_port(self, port: Port) -> None:
        """ClusterShell's name of ``port.close()``."""
        port.close()

    def drop_port(self, port: Port) -> None:
        if port in self.ports:
            self.ports.remove(port)

    def on_own_thread(self) -> bool:
        """Called from a handler of the run in progress (the Task's thread)."""
        return self.engine is not None and threading.current_thread() is self.thread

    def poke(self) -> None:
        """Wake the run's loop (from any thread; no run in progress: nothing)."""
        engine = self.engine
        wake = engine.wake if engine is not None else None
        if wake is not None:
            wake.poke()
