"""The RPC backend: a Task's commands run under our own server on each node, over one
session per node that stays open for the next command, copy or Python call.

``RpcBackend`` keeps the sessions (``Client`` objects, connected on first use: over ssh
with nothing installed remotely by default, or however ``connect(node)`` says). For the
engine, a slot's command keeps ``backends.Command``'s contract with a mailbox instead of
pipes: a thread relays the command's output and end from the session into the
``backends.Mailbox`` of the engine's thread (one per thread, shared by every command
that thread starts), so the engine wakes once for many nodes' replies, with no
descriptor per command (three pipes per command and node cost the admin more than the
calls did). On the node the command runs under ``/bin/sh -c`` in a
session of its own (``remote/commands.py``); a call returns as soon as there is output,
so output streams as it comes, a round trip per batch. On a warm session the start
(``start_quick``: it waits for the command's exit, ``commands.QUICK`` seconds at most,
rather than for its output) is sent from the engine's thread and the replies of every
node are read by one collecting thread, in the order sent (``collect_batch``): a short
command, whose start reply carries its end, costs no thread of its own; a command still
running (or a node slower than ``HANDOFF``) goes on on a relay thread of its own, as a
command on a new session or given stdin does from the start. ``%h``/``%n``/``%%`` are
substituted in the command as the exec backend does (the rule: ``backends.py``), so
``literal`` escapes ``%``. A command left running when its server dies without cleaning
up is killed on the node by the server's watchdog (``remote/commands.py``).

Copies: ``push_command`` and ``pull_command`` return a ``RemoteCall`` instead of a
shell command: the node's server receives or sends the file itself
(``remote/filecopy.py``, no shell or tools needed there). A push's bytes are the
worker's stdin feed, forwarded as raw chunks of up to ``STDIN_CHUNK`` bytes (each one
call, carried out of band, never the whole file); a pull's chunks come back like a
command's stdout, into the worker's sink. The node writes a temporary file and renames
it into place, so the rules and outcomes are ``Task.copy``'s.

Failures: a node that cannot be connected, or whose session dies mid-command, ends with
``RC_UNREACHABLE`` (255, as ssh) and a message on its error stream that ``classify``
recognises, so it is ``unreachable``, not a command's own exit (the message does not
name the node: the line it goes in does).

Kills (timeout, abort, Ctrl-C) never wait for one node after another. A command whose
node is still connecting is given up at once: the ssh connecting to it is killed
(``rpcsessions.py``), nothing is started there and nothing waits for it. Otherwise the
kill is sent inline (it works while the node is busy, and again once the start's reply
came, in case the kill overtook the start); the node has ``KILL_GRACE`` seconds from the
kill to report the end, so commands killed together (the engine kills all before it
waits for any) share one grace period. A node that did not report it by then (its
server stopped or hung) loses its session: its ssh is killed at once, so nothing is
left running here, and the next command connects again. On such a node the command
runs on until its server runs again: a stopped server, once continued, finds its
session gone and kills its commands; one killed has them killed by its watchdog (as far
as ``remote/commands.py`` says it covers them).
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..client.client import Client
from ..errors import CallTimeout
from ..launch.killswitch import KillSwitch
from ..launch.ssh import ssh_words
from ..protocol.messages import CONTROL, SINGLE
from ..transport.threads import ReusedThreads
from .backends import (
    EXIT,
    HOSTKEY,
    UNREACHABLE,
    Backend,
    Mailbox,
    close_fd,
    substitute,
)
from .copy import TAR_TOP, pull_command, push_command
from .rpcsessions import SessionKeeper, without_node

REMOTE = "easycluster.remote.commands."
RC_UNREACHABLE = 255
MARK = b"easycluster rpc: "  # starts the message of a node we could not reach or lost
KILL_GRACE = 2.0  # seconds a killed command's node has, from the kill, to report its end
KILLED = 128 + 9  # the return code of a killed command (as SIGKILL's)
HANDOFF = 0.05  # s the collecting thread waits for a start's reply before a relay takes it
Chunks = List[Tuple[int, bytes]]  # a start's or read's output: (1 or 2, bytes), in order
STDIN_CHUNK = 1 << 20  # bytes of stdin forwarded per call at most (the pipe is grown to it)
F_SETPIPE_SZ = 1031  # (fcntl's name for it came in Python 3.10)


class RemoteCall(str):
    """A "command" that is a call of ``remote/commands.py`` (``func(token, *args)``,
    which answers as ``start`` does) rather than a shell command; its text is the
    equivalent ``sh`` command, for display."""

    func: str
    args: Tuple[Any, ...]

    def __new__(cls, text: str, func: str, *args: Any) -> RemoteCall:
        self = super().__new__(cls, text)
        self.func, self.args = func, args
        return self


class RpcBackend(SessionKeeper, Backend):
    """Commands over sessions to our server (module docstring).

    ``connect(node) -> Client`` makes a session (default: a ``Client`` connected to
    ``node`` with ``connect_options``, its keywords: over ssh, ``ssh`` being the program
    or its words; ``rpcsessions.py``). Sessions are kept until ``close()``; a session
    that died is dropped and made again on next use. ``sessions()`` and
    ``session(node)`` give them to Python calls (``Task.call``) so commands and calls
    share them.
    """

    name = "rpc"

    def __init__(
        self, connect: Optional[Callable[[str], Client]] = None, **connect_options: Any
    ) -> None:
        SessionKeeper.__init__(self, connect, connect_options)
        self._tokens = itertools.count(1)
        # the threads that relay commands (one per running command, kept for the next)
        self.relays = ReusedThreads("easycluster-rpc")
        self._sent: List[RpcCommand] = []  # started on a warm session, reply not taken
        self._collecting = False  # a relay thread runs _collect
        self._local = threading.local()  # .mailbox: the calling (engine's) thread's

    def mailbox(self) -> Mailbox:
        """The mailbox of the calling thread (made on first use; its descriptors are
        closed once the thread or this backend has gone and nothing uses it: not by
        ``close()``, which a handler may call while its engine takes from it)."""
        box: Optional[Mailbox] = getattr(self._local, "mailbox", None)
        if box is None:
            box = self._local.mailbox = Mailbox()
        return box

    def collect_later(self, cmd: RpcCommand) -> None:
        """Have ``cmd``'s ``start`` reply taken by the one collecting thread (started
        when there is none): replies of many nodes read by one thread, in the order sent,
        cost the admin a third of what a thread per node waiting for its own costs."""
        with self._lock:
            self._sent.append(cmd)
            if self._collecting:
                return
            self._collecting = True
        try:
            self.relays.run(self._collect)
        except BaseException:
            with self._lock:
                self._collecting = False
            raise

    def _collect(self) -> None:
        while True:
            with self._lock:
                batch, self._sent = self._sent, []
                if not batch:
                    self._collecting = False
                    return
            collect_batch(batch)

    def start(self, node: str, rank: int, command: str, stdin: bool, stderr: bool) -> Any:
        if not isinstance(command, RemoteCall):
            command = substitute(command, node, rank)
        if "ssh" in self.connect_options and self.connect is None and not self.warm(node):
            self.check_ssh()
        return RpcCommand(self, node, command, stdin, stderr, next(self._tokens), self.mailbox())

    def check_ssh(self) -> None:
        """Raise ``FileNotFoundError`` if the ``ssh`` program given cannot be found: the
        slot then "could not start here", as with the ssh backend (rather than being
        unreachable, which a wrong ``ssh_path`` would otherwise look like)."""
        program = ssh_words(self.connect_options["ssh"])[0]
        if shutil.which(program) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)

    def literal(self, command: str) -> str:
        """``command`` escaped so that it runs as written (no ``%h`` substitution)."""
        return command.replace("%", "%%")

    def push_command(
        self, dest: str, name: str, size: int, mode: int, kind: str, preserve: bool, mtime: float
    ) -> str:
        """The node's server receives the stream itself (module docstring)."""
        text = push_command(dest, name, size, mode, kind, preserve, mtime)  # (checks too)
        args = (dest, name, size, mode & 0o7777, kind, preserve, mtime, TAR_TOP)
        return RemoteCall(text, "push_start", *args)

    def pull_command(self, source: str) -> str:
        """The node's server sends ``source`` itself (module docstring)."""
        return RemoteCall(pull_command(source), "pull_start", source)

    def classify(self, rc: int, tail: bytes) -> str:
        if rc == RC_UNREACHABLE and MARK in tail:
            # (our ssh launcher says "host key verification failed", as ssh does)
            return HOSTKEY if b"host key" in tail else UNREACHABLE
        return EXIT


def collect_batch(batch: List[RpcCommand]) -> None:
    """Take the start replies of ``batch`` in order. Their output and ends are posted
    without waking the engine, which then wakes once for all that came meanwhile: before
    this thread waits for a reply, and at the end of the batch."""
    held: Dict[int, Mailbox] = {}

    def wake() -> None:
        for box in held.values():
            box.wake()
        held.clear()

    for cmd in batch:
        cmd.collect(wake)
        held[id(cmd.mailbox)] = cmd.mailbox
    wake()


class RpcCommand:
    """One slot's command on a node's session, seen by the engine as a process with a
    mailbox (see ``backends.Command``: ``mailbox``, ``stdin`` (a pipe whose bytes a
    thread forwards to the node, in order), ``poll``, ``kill``, ``reap``, ``wait``,
    ``close``; ``stdout`` is -1, ``stderr`` and ``pidfd`` None)."""

    stdout = -1
    stderr: Optional[int] = None
    pidfd: Optional[int] = None
    held: Optional[int] = None
    # (the initial values of the instance's state, kept here: set per command and node,
    # they cost the engine's thread a line each)
    stdin: Optional[int] = None
    rc: Optional[int] = None
    closed = False  # the engine let go of us: post nothing more
    _client: Optional[Client] = None
    _switch: Optional[KillSwitch] = None  # gives up our connect (the relay path's)
    _killed = False
    _kill_by = 0.0  # (monotonic) the end of the grace the node has once killed
    _ended = False  # rc is final (set just before the end is posted)
    _in_r: Optional[int] = None
    _feeding = False  # _feed owns _in_r (else _end closes it)
    _reply: Any = None  # the start's Response, on the fast path
    _sent_at = 0.0

    def __init__(
        self,
        backend: RpcBackend,
        node: str,
        command: str,
        stdin: bool,
        stderr: bool,
        token: int,
        mailbox: Mailbox,
    ) -> None:
        self.backend = backend
        self.node = node
        self.token = token
        self.mailbox = mailbox
        self._err = "stderr" if stderr else "stdout"  # where the node's stream 2 goes
        if stdin:
            self._in_r, in_w = os.pipe()
            self.stdin = in_w
            os.set_blocking(in_w, False)
            try:  # room for a whole chunk per call (best effort)
                import fcntl

                fcntl.fcntl(in_w, F_SETPIPE_SZ, STDIN_CHUNK)
            except (ImportError, OSError):
                pass
        self._done = threading.Lock()  # held until the end was posted (an Event costs
        self._done.acquire()  # 10 us more per command and node)
        try:
            # The fast path: on a warm session the start is sent from here (the engine's
            # thread, never blocking: the channel queues) and its reply taken by the
            # backend's collecting thread; a command that ended by then needs no thread.
            client = None if stdin or isinstance(command, RemoteCall) else backend.warm(node)
            if client is not None:
                try:
                    self._reply = client.call(
                        REMOTE + "start_quick",
                        token,
                        command,
                        stderr,
                        threadid=SINGLE,
                        nonblocking=True,
                    )
                except Exception:  # (the session is going: the relay path reports it)
                    client = None
            if client is not None:
                self._client = client
                self._sent_at = time.monotonic()
                backend.collect_later(self)
            else:
                self._switch = KillSwitch()
                backend.relays.run(self._run, command, stderr)
        except BaseException:
            for fd in (self._in_r, self.stdin):
                if fd is not None:
                    close_fd(fd)
            raise

    def collect(self, before_wait: Callable[[], None]) -> None:
        """Take the fast path's ``start`` reply (on the collecting thread): a command that
        ended is done here; one still running goes on on a relay thread, and so does one
        whose reply has not come within ``HANDOFF`` seconds of the start (so a slow node
        holds up the others' replies that long at most). Posts without waking the engine:
        ``before_wait()`` is called before this waits for the reply, to wake it."""
        try:
            try:
                try:
                    chunks, code = self._reply.wait(0.0)  # (reads a reply that is here)
                except CallTimeout:
                    before_wait()  # (about to wait: the engine takes what came)
                    left = max(0.0, self._sent_at + HANDOFF - time.monotonic())
                    chunks, code = self._reply.wait(left)
            except CallTimeout:
                self.backend.relays.run(self._late)
                return
            except Exception as e:
                self._end(self._failed(e))
                return
            if code is None:
                self.backend.relays.run(self._follow, chunks, code)
                return
        except BaseException as e:  # (no thread to go on with: the node is lost to us)
            self._end(self._failed(e))
            return
        for sid, data in chunks:
            self._put(sid, data, wake=False)
        self._end(code, wake=False)

    def _late(self) -> None:
        try:
            chunks, code = self._reply.wait()
        except Exception as e:
            self._end(self._failed(e))
            return
        self._follow(chunks, code)

    def _run(self, command: str, stderr: bool) -> None:
        """The relay path: connect if need be, start (unless killed by then), then
        ``_follow``."""
        try:
            client = self._client = self.backend.session(self.node, self._switch)
        except Exception as e:
            if self._killed:  # (given up while connecting: no message, as for a kill)
                self._end(KILLED)
                return
            self._put(2, MARK + f"cannot connect: {without_node(e, self.node)}\n".encode())
            self._end(RC_UNREACHABLE)
            return
        if self._killed:  # (after _client is set: a kill from now on reaches the node)
            self._end(KILLED)
            return
        try:
            if isinstance(command, RemoteCall):
                how = REMOTE + command.func
                chunks, code = client.call(how, self.token, *command.args, threadid=SINGLE)
            else:
                chunks, code = client.call(
                    REMOTE + "start",
                    self.token,
                    command,
                    stderr,
                    self._in_r is not None,
                    threadid=SINGLE,
                )
        except Exception as e:
            self._end(self._failed(e))
            return
        self._follow(chunks, code)

    def _follow(self, chunks: Chunks, code: Optional[int]) -> None:
        """Relay output until the end, from the reply ``(chunks, code)`` on (a thread of
        its own: ``read`` blocks until there is output)."""
        rc = RC_UNREACHABLE
        try:
            client = self._client
            if client is None:  # (set by whoever sent the start)
                return
            if self._killed and code is None:  # (its kill may have reached the node
                # before the start did, and found nothing to kill: once more)
                client.call(REMOTE + "kill", self.token, threadid=CONTROL, nonblocking=True)
            if self._in_r is not None and code is None:
                self._feeding = True
                threading.Thread(
                    target=self._feed, args=(client,), daemon=True, name="easycluster-rpc-in"
                ).start()
            while True:
                for sid, data in chunks:
                    self._put(sid, data)
                if code is not None:
                    rc = code
                    return
                chunks, code = client.call(REMOTE + "read", self.token, threadid=SINGLE)
        except Exception as e:
            rc = self._failed(e)
        finally:
            self._end(rc)

    def _failed(self, error: BaseException) -> int:
        """The return code of a command whose session failed (a killed one's: 137)."""
        if self._killed:
            return KILLED  # (killed: the session went with it)
        text = f"lost during the command: {without_node(error, self.node)}\n"
        self._put(2, MARK + text.encode())
        return RC_UNREACHABLE

    def _end(self, rc: int, wake: bool = True) -> None:
        """Report the end (once): rc first, then the mailbox's end item (``wake``: as
        ``Mailbox.post``'s)."""
        if self._in_r is not None and not self._feeding:
            close_fd(self._in_r)
        self.rc = rc
        self._ended = True
        self.mailbox.post(self, None, b"", wake)
        self._done.release()

    def _feed(self, client: Client) -> None:
        """Forward what the engine writes to our stdin pipe to the node, in order (one
        blocking call at a time), then end the command's input."""
        fd = self._in_r
        if fd is None:  # (started only for a command given stdin)
            return
        try:
            while True:
                data = os.read(fd, STDIN_CHUNK)
                if not data:
                    break
                client.call(REMOTE + "write", self.token, data, threadid=SINGLE)
            client.call(REMOTE + "close_stdin", self.token, threadid=SINGLE)
        except Exception:
            pass  # the command or its session ended: its end is reported by _run
        finally:
            close_fd(fd)

    def _put(self, sid: int, data: bytes, wake: bool = True) -> None:
        """Post ``data`` of the node's stream ``sid`` (1 stdout, 2 stderr) to the engine
        (waits while the mailbox is full; dropped once the engine let go of us)."""
        self.mailbox.post(self, self._err if sid == 2 else "stdout", data, wake)

    def poll(self) -> Optional[int]:
        return self.rc if self._ended else None

    def kill(self) -> None:
        """End the remote command (sent inline, never blocking on a busy node), or give
        up the connect of a node still connecting (its ssh killed now). The node's
        grace (``wait``) starts now."""
        if self._killed or self._ended:
            return
        self._kill_by = time.monotonic() + KILL_GRACE
        self._killed = True  # (before _client is read: _run reads them the other way)
        client = self._client
        if client is not None:
            try:
                client.call(REMOTE + "kill", self.token, threadid=CONTROL, nonblocking=True)
            except Exception:
                pass
        elif self._switch is not None:
            self._switch.abandon()

    def reap(self) -> bool:
        return self._ended

    def wait(self) -> None:
        """Wait for the end, after ``kill``: at most until ``KILL_GRACE`` seconds after
        the kill (so commands killed together wait together). A command that has no
        session (its connect was given up, or a caller's ``connect`` still runs: it
        starts nothing then) is not waited for; a node that did not report the end in
        time loses its session (``kill_session``), which ends the command here."""
        if self._client is None:
            return
        if not self._killed:  # (not the engine's order; the grace starts here then)
            self._kill_by = time.monotonic() + KILL_GRACE
        left = max(0.0, self._kill_by - time.monotonic())
        if not self._done.acquire(timeout=left):
            self.backend.kill_session(self.node, self._client)
            self._done.acquire()
        self._done.release()  # (for the next wait)

    def close_stdin(self) -> None:
        """End the command's input (after what was written to ``stdin``)."""
        if self.stdin is not None:
            close_fd(self.stdin)
            self.stdin = None

    def close(self) -> None:
        self.close_stdin()
        self.closed = True


__all__ = ["RpcBackend", "RpcCommand", "RemoteCall", "RC_UNREACHABLE"]
