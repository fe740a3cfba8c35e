"""The RPC backend: a Task's commands run under our own server on each node, over one
session per node that stays open for the next command, copy or Python call.

``RpcBackend`` keeps the sessions (``Client`` objects, connected on first use: over ssh
with nothing installed remotely by default, or however ``connect(node)`` says). For the
engine, a slot's command looks like a local process (``backends.Command``'s contract):
``RpcCommand`` hands it the read ends of two pipes for stdout and stderr and a third
pipe that becomes readable when the command ended, and a thread moves the output from
the session into those pipes. On the node the command runs under ``/bin/sh -c`` in a
session of its own (``remote/commands.py``); a call returns as soon as there is output,
so output streams as it comes, a round trip per batch. ``%h``/``%n``/``%%`` are
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
recognises, so it is ``unreachable``, not a command's own exit. A kill (timeout, abort,
Ctrl-C) is sent inline (it works while the node is busy); if the node does not answer
within ``KILL_GRACE`` seconds, its session is closed and dropped (the next command
connects again).
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..client.client import Client
from ..client.parallel import call_multi
from ..protocol.messages import CONTROL, SINGLE
from ..transport.threads import ReusedThreads
from .backends import (
    EXIT,
    HOSTKEY,
    UNREACHABLE,
    Backend,
    close_fd,
    close_pipes,
    open_pipes,
    substitute,
)
from .copy import TAR_TOP, pull_command, push_command

REMOTE = "easycluster.remote.commands."
RC_UNREACHABLE = 255
MARK = b"easycluster rpc: "  # starts the message of a node we could not reach or lost
KILL_GRACE = 2.0  # seconds a killed command's node has to report its end
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


class RpcBackend(Backend):
    """Commands over sessions to our server (module docstring).

    ``connect(node) -> Client`` makes a session (default: ``Client(host=node,
    **connect_options)``, over ssh). Sessions are kept until ``close()``; a session that
    died is dropped and made again on next use. ``sessions()`` and ``session(node)``
    give them to Python calls (``Task.call``) so commands and calls share them.
    """

    name = "rpc"

    def __init__(
        self, connect: Optional[Callable[[str], Client]] = None, **connect_options: Any
    ) -> None:
        self.connect = connect or (lambda node: Client(host=node, **connect_options))
        self._sessions: Dict[str, Client] = {}
        self._locks: Dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        # the threads that relay commands (one per running command, kept for the next)
        self.relays = ReusedThreads("easycluster-rpc")

    def session(self, node: str) -> Client:
        """The open session to ``node``, connected now if there is none (raises what
        connecting raises). Safe from several threads: one connection per node."""
        with self._lock:
            lock = self._locks.setdefault(node, threading.Lock())
        with lock:
            client = self._sessions.get(node)
            if client is None or not client.connected:
                client = self.connect(node)
                self._sessions[node] = client
            return client

    def drop(self, node: str, client: Client) -> None:
        """Forget ``node``'s session if it is still ``client``, and close it."""
        with self._lock:
            if self._sessions.get(node) is client:
                del self._sessions[node]
        client.close()

    def sessions(self) -> Dict[str, Client]:
        """The sessions open now, by node."""
        with self._lock:
            return dict(self._sessions)

    def close(self) -> None:
        """Close every session (their servers end with them)."""
        with self._lock:
            clients, self._sessions = list(self._sessions.values()), {}
        for c in clients:
            c.close()

    def start(self, node: str, rank: int, command: str, stdin: bool, stderr: bool) -> Any:
        if not isinstance(command, RemoteCall):
            command = substitute(command, node, rank)
        return RpcCommand(self, node, command, stdin, stderr, next(self._tokens))

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

    def call_all(self, nodes: List[str], func: Any, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        """``func(*args, **kwargs)`` on every node over its session, in parallel:
        ``{node: value or exception}`` (a node that cannot be connected: its error)."""
        out: Dict[str, Any] = {}
        clients: List[Client] = []
        names: List[str] = []
        for node in nodes:
            try:
                clients.append(self.session(node))
                names.append(node)
            except Exception as e:  # that node's outcome
                out[node] = e
        got = call_multi(clients, func, *args, return_exceptions=True, **kwargs)
        out.update(zip(names, got))
        return {node: out[node] for node in nodes}


class RpcCommand:
    """One slot's command on a node's session, seen by the engine as a process (see
    ``backends.Command``: ``stdout``, ``stderr``, ``stdin`` (a pipe whose bytes a
    thread forwards to the node, in order), ``pidfd``, ``poll``, ``kill``, ``reap``,
    ``wait``, ``close``)."""

    def __init__(
        self, backend: RpcBackend, node: str, command: str, stdin: bool, stderr: bool, token: int
    ) -> None:
        self.backend = backend
        self.node = node
        self.token = token
        self.rc: Optional[int] = None
        self.held: Optional[int] = None
        self._client: Optional[Client] = None
        self._killed = False
        self._ended = False  # rc is final (set just before the end pipe is written)
        out, err, end, inp = open_pipes(True, stderr, True, stdin)
        out_r, out_w = out or (-1, -1)  # (always made)
        end_r, end_w = end or (-1, -1)  # (always made)
        err_r, err_w = err or (None, None)
        in_r, in_w = inp or (None, None)
        for rfd in (out_r, err_r, end_r, in_w):
            if rfd is not None:
                os.set_blocking(rfd, False)
        if in_w is not None:  # room for a whole chunk per call (best effort)
            try:
                import fcntl

                fcntl.fcntl(in_w, F_SETPIPE_SZ, STDIN_CHUNK)
            except (ImportError, OSError):
                pass
        self.stdin = in_w
        self._in_r = in_r
        self._feeding = False  # _feed owns _in_r (else _run closes it at the end)
        self.stdout: int = out_r
        self.stderr: Optional[int] = err_r
        self.pidfd: Optional[int] = end_r
        self._out_w: Optional[int] = out_w
        self._err_w: Optional[int] = err_w
        self._end_w = end_w
        self._done = threading.Event()  # _run has finished
        try:
            backend.relays.run(self._run, command, stderr)
        except BaseException:
            close_pipes([out, err, end, inp])
            raise

    def _run(self, command: str, stderr: bool) -> None:
        rc = RC_UNREACHABLE
        try:
            try:
                client = self._client = self.backend.session(self.node)
            except Exception as e:
                self._put(2, MARK + f"{self.node}: cannot connect: {e}\n".encode())
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
                if self._killed:
                    rc = 128 + 9  # (killed: the session went with it)
                    return
                self._put(2, MARK + f"{self.node}: lost during the command: {e}\n".encode())
        finally:
            if self._in_r is not None and not self._feeding:
                close_fd(self._in_r)
            self.rc = rc
            self._ended = True
            for wfd in (self._out_w, self._err_w):
                if wfd is not None:
                    close_fd(wfd)
            self._out_w = self._err_w = None
            try:
                os.write(self._end_w, b"x")
            except OSError:  # the engine let go of the slot already (killed)
                pass
            close_fd(self._end_w)
            self._done.set()

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

    def _put(self, sid: int, data: bytes) -> None:
        """Write ``data`` to our stdout (sid 1) or stderr pipe, all of it (blocking: the
        pipe is ours, the engine reads it). Dropped once the engine closed its end."""
        fd = self._err_w if sid == 2 and self._err_w is not None else self._out_w
        if fd is None:
            return
        view = memoryview(data)
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError:  # the engine closed its end (the slot was killed)
            pass

    def poll(self) -> Optional[int]:
        return self.rc if self._ended else None

    def kill(self) -> None:
        """End the remote command (sent inline, never blocking on a busy node)."""
        if self._killed or self._ended:
            return
        self._killed = True
        client = self._client
        if client is not None:
            try:
                client.call(REMOTE + "kill", self.token, threadid=CONTROL, nonblocking=True)
            except Exception:
                pass

    def reap(self) -> bool:
        return self._ended

    def wait(self) -> None:
        """Wait for the end; a node that does not report it within ``KILL_GRACE``
        seconds loses its session (which ends the wait)."""
        if not self._done.wait(KILL_GRACE) and self._client is not None:
            self.backend.drop(self.node, self._client)
            self._done.wait()

    def close_stdin(self) -> None:
        """End the command's input (after what was written to ``stdin``)."""
        if self.stdin is not None:
            close_fd(self.stdin)
            self.stdin = None

    def close(self) -> None:
        self.close_stdin()
        for fd in (self.stdout, self.stderr, self.pidfd):
            if fd is not None and fd >= 0:
                close_fd(fd)
        self.stdout = -1
        self.stderr = self.pidfd = None


__all__ = ["RpcBackend", "RpcCommand", "RemoteCall", "RC_UNREACHABLE"]
