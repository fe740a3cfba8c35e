"""``NodeState``: the pure state of one slot's command (one node's run in a Task).

The engine (``engine.py``) keeps the processes, pipes and clocks; it tells a slot's
``NodeState`` what happened and does what the answer says (call a handler event, kill the
process). ``NodeState`` never reads a clock or touches a process. Every transition is
drawn in the class docstring and tested in ``tests/cluster/test_nodestate.py`` without
processes.
"""

from __future__ import annotations

from typing import Optional

# The states (plain strings: they are what ``Task.node_status`` reports).
PENDING = "pending"  # waiting for a place in the fan-out window
STARTED = "started"  # the command runs (for ssh: perhaps still connecting); nothing read yet
READING = "reading"  # some output came
HUP = "hup"  # the command ended with a return code (``rc``)
TIMEOUT = "timeout"  # the command timeout passed; the command was killed
UNREACHABLE = "unreachable"  # the backend could not connect or authenticate (ssh rc 255)
HOSTKEY = "hostkey"  # the host key is unknown or changed (ssh rc 255); nothing ran
FAILED = "failed"  # the command could not be started here (no such program, no fds, ...)
ABORTED = "aborted"  # ``Task.abort()`` or ``Worker.abort()`` ended it, or it never began

STATES = (PENDING, STARTED, READING, HUP, TIMEOUT, UNREACHABLE, HOSTKEY, FAILED, ABORTED)
RUNNING_STATES = frozenset((STARTED, READING))
FINAL_STATES = frozenset((HUP, TIMEOUT, UNREACHABLE, HOSTKEY, FAILED, ABORTED))

# What the engine does next (the answers drawn in the table).
PICKUP = "pickup"  # call ev_pickup
READ = "read"  # keep the bytes and call ev_read for each complete line
CLOSE = "close"  # the slot is done: call ev_hup(rc)
PICKUP_CLOSE = "pickup+close"  # the slot never ran: call ev_pickup, then ev_hup(rc)
KILL = "kill"  # kill the command's process group; no ev_hup
NOTHING = "-"  # nothing to do

# The return code a slot gets when its command could not be started (the shell's own
# "command not found" code, so scripts that test ``rc != 0`` see a failure).
RC_NOT_STARTED = 127


class NodeState:
    """One slot's command, from waiting in the fan-out window to its final state.

    The states: PENDING (waiting for the fan-out window), STARTED (running, nothing read
    yet), READING (some output came; the connection, if any, was made) and the final
    states HUP (ended with a return code), TIMEOUT (killed at the command timeout),
    UNREACHABLE (ssh could not connect or authenticate), HOSTKEY (ssh refused the host
    key), FAILED (could not be started here) and ABORTED (ended by ``Task.abort()`` or
    ``Worker.abort()``, or never started; the Task's own timeout ends a running command
    with ``timeout``, as ClusterShell counts it). The events: ``start`` (the process
    exists), ``spawn_error`` (it could not be created), ``read`` (bytes came on stdout or
    stderr), ``exit`` (the process ended and its output was read to the end; the backend
    classified its return code as the command's own), ``unreachable`` and ``hostkey``
    (the backend classified it as its own failure), ``timeout`` (the command timeout
    passed) and ``abort``. A cell gives the next state (when it changes) and the answer::

                        PENDING         STARTED         READING         FINAL
        start           STARTED pickup  illegal         illegal         illegal
        spawn_error     FAILED pickup+close  illegal    illegal         illegal
        read            illegal         READING read    read            illegal
        exit            illegal         HUP close       HUP close       illegal
        unreachable     illegal         UNREACHABLE close  UNREACHABLE close  illegal
        hostkey         illegal         HOSTKEY close   HOSTKEY close   illegal
        timeout         illegal         TIMEOUT kill    TIMEOUT kill    illegal
        abort           ABORTED -       ABORTED kill    ABORTED kill    illegal

    (FINAL stands for each of the final states, which behave alike.) Answers: ``pickup``
    calls ``ev_pickup``; ``read`` keeps the bytes and calls ``ev_read`` per line;
    ``close`` calls ``ev_hup(worker, node, rc)`` (for UNREACHABLE and HOSTKEY the rc is
    ssh's 255, as ClusterShell reports it; the state tells the class apart);
    ``pickup+close`` calls ``ev_pickup`` then ``ev_hup`` with ``RC_NOT_STARTED``;
    ``kill`` kills the process group and calls no ``ev_hup``; ``-`` does nothing.
    ``illegal`` raises RuntimeError: the engine reported something impossible (output
    after the end, a second start). So every started slot gets exactly one final state,
    and ``ev_hup`` exactly once unless it timed out or was aborted.
    """

    __slots__ = ("state", "rc")

    def __init__(self) -> None:
        self.state = PENDING
        self.rc: Optional[int] = None  # the return code, in HUP, UNREACHABLE, HOSTKEY, FAILED

    def _illegal(self, event: str) -> RuntimeError:
        return RuntimeError(f"node state: {event!r} cannot happen in state {self.state!r}")

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def start(self) -> str:
        if self.state != PENDING:
            raise self._illegal("start")
        self.state = STARTED
        return PICKUP

    def spawn_error(self) -> str:
        if self.state != PENDING:
            raise self._illegal("spawn_error")
        self.state = FAILED
        self.rc = RC_NOT_STARTED
        return PICKUP_CLOSE

    def read(self) -> str:
        if self.state not in RUNNING_STATES:
            raise self._illegal("read")
        self.state = READING
        return READ

    def _end(self, event: str, state: str, rc: int) -> str:
        if self.state not in RUNNING_STATES:
            raise self._illegal(event)
        self.state = state
        self.rc = rc
        return CLOSE

    def exit(self, rc: int) -> str:
        return self._end("exit", HUP, rc)

    def unreachable(self, rc: int) -> str:
        return self._end("unreachable", UNREACHABLE, rc)

    def hostkey(self, rc: int) -> str:
        return self._end("hostkey", HOSTKEY, rc)

    def timeout(self) -> str:
        if self.state not in RUNNING_STATES:
            raise self._illegal("timeout")
        self.state = TIMEOUT
        return KILL

    def abort(self) -> str:
        if self.state == PENDING:
            self.state = ABORTED
            return NOTHING
        if self.state not in RUNNING_STATES:
            raise self._illegal("abort")
        self.state = ABORTED
        return KILL
