"""Local servers: a fresh server process linked by a socketpair (``spawn_local``'s half).

The server never is a fork of the master script, so it inherits none of its state. By
default it is forked from a *zygote*, a clean interpreter started once per master
process (see ``zygote.py``): a few milliseconds per server, and many servers share
memory. ``fresh_interpreter=True`` starts a brand-new interpreter instead (slower; it
also sees environment changes the master made after the zygote started). Either way a
random key made for this one session travels outside argv and the normal handshake
runs over the socketpair.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Optional, Tuple

from ..errors import ConnectError
from ..protocol.control import KEY_SIZE, SPAWN, SPAWNED
from ..protocol.handshake import WireOptions
from ..transport.channel import Channel
from ..transport.handshake import client_handshake
from ..transport.tcp import socketpair

# The folder holding the package, for the server's PYTHONPATH (a source checkout works too).
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PKG_PARENT, env.get("PYTHONPATH")) if p)
    return env


class LocalProcess:
    """A handle on a zygote-forked server: ``pid``, ``poll``, ``wait``, ``kill``, ``terminate``.

    The zygote is its parent and reaps it, so we watch it through a pidfd where Linux
    has them (a reused pid can then never be mistaken for it, nor signalled), else by
    pid. ``returncode`` is the signal we sent, negated, or 0.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: Optional[int] = None
        self._signal = 0
        try:
            self._pidfd: Optional[int] = os.pidfd_open(pid)  # Linux only: else AttributeError
        except (AttributeError, OSError):
            self._pidfd = None

    def poll(self) -> Optional[int]:
        if self.returncode is None and not self._alive():
            self.returncode = -self._signal if self._signal else 0
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        return self.returncode

    def _alive(self) -> bool:
        if self._pidfd is not None:
            p = select.poll()
            p.register(self._pidfd, select.POLLIN)
            return not p.poll(0)  # readable once the process has exited
        return _alive(self.pid)

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        code = self.poll()
        while code is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left < 0:
                raise subprocess.TimeoutExpired(f"local server {self.pid}", timeout or 0)
            if self._pidfd is not None:  # wakes the moment it exits (no 5 ms naps)
                p = select.poll()
                p.register(self._pidfd, select.POLLIN)
                p.poll(None if left is None else max(int(left * 1000), 1))
            else:
                time.sleep(0.005)
            code = self.poll()
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)
            self._signal = sig
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def __del__(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False
    except OSError:
        return True


class _Zygote:
    """The master's side of the zygote: start it, ask it for servers, ``close`` it."""

    def __init__(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [
            sys.executable,
            "-u",
            "-c",
            "import sys; from easycluster.remote.zygote import main; sys.exit(main(sys.argv[1:]))",
            "--control",
            str(theirs.fileno()),
        ]
        try:
            # a session of its own (and so for the servers it forks): a terminal's Ctrl-C
            # interrupts the master script, not its servers
            self.proc = subprocess.Popen(
                argv,
                pass_fds=(theirs.fileno(),),
                env=_env(),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self.ctrl = mine
        self.ctrl.settimeout(30)
        self.owner = os.getpid()
        self.lock = threading.Lock()  # sending requests, numbered in order
        self.reply_lock = threading.Lock()  # reading the answers (in the same order)
        self.sent = 0
        self.answered = 0
        self.answers: Dict[int, bytes] = {}  # read for a ticket whose owner has not come
        self.broken = False

    def request(self, sock: socket.socket, key: bytes, verbosity: int) -> int:
        """Ask for a server on ``sock``; return the ticket for ``result``. The answer is
        read later, so the caller can run its handshake meanwhile (the server takes
        ``sock`` at once). Raises OSError or ConnectError (the zygote is gone)."""
        msg = SPAWN.pack(key, min(verbosity, 255)) + os.getcwd().encode("utf-8", "surrogateescape")
        with self.lock:
            if self.broken:
                raise ConnectError("the local server zygote went away")
            try:
                socket.send_fds(self.ctrl, [msg], [sock.fileno()])
            except OSError:
                # It may have reached it: its answer could come and be taken for the next
                # one's. Never use this zygote again.
                self.broken = True
                raise
            self.sent += 1
            return self.sent

    def result(self, ticket: int) -> LocalProcess:
        """The server of request ``ticket``. Answers come in the order of the requests;
        a thread reading them keeps the others' for them. Call it once per ticket, even
        when the handshake failed. Raises OSError or ConnectError."""
        with self.reply_lock:
            while ticket not in self.answers:
                try:
                    reply = self.ctrl.recv(16)
                except OSError:
                    self.broken = True
                    raise
                if len(reply) != SPAWNED.size:
                    self.broken = True
                    raise ConnectError("the local server zygote went away")
                self.answered += 1
                self.answers[self.answered] = reply
            (pid,) = SPAWNED.unpack(self.answers.pop(ticket))
        if pid <= 0:
            raise ConnectError(f"the local server zygote could not fork (errno {-pid})")
        return LocalProcess(pid)

    def close(self) -> None:
        """Close the control socket, which ends the zygote (the servers it forked go on),
        and reap it; kill it if it lingers. In a fork of the master only this process's
        copy of the socket is closed: the zygote is not its child, so nothing is reaped
        (``poll`` finds no such child and marks it ended)."""
        self.ctrl.close()
        if self.owner != os.getpid():
            self.proc.poll()
            return
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# The zygote of this process, started on first use (runtime state, not configuration);
# a forked master notices it is not the owner and starts its own. The one replaced, and
# the last one at exit, are closed (``_Zygote.close``).
_zygote: Optional[_Zygote] = None
_zygote_lock = threading.Lock()


def _get_zygote() -> _Zygote:
    global _zygote
    with _zygote_lock:
        z = _zygote
        if z is None or z.broken or z.owner != os.getpid() or z.proc.poll() is not None:
            if z is None:
                atexit.register(_close_zygote)  # once (a forked master inherits it)
            else:
                z.close()
            z = _zygote = _Zygote()
        return z


def _close_zygote() -> None:
    """At exit: end this process's zygote (its control socket closes, it exits)."""
    global _zygote
    with _zygote_lock:
        z, _zygote = _zygote, None
    if z is not None:
        z.close()


def _spawn_fresh(sock: socket.socket, key: bytes, verbosity: int) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-u",
        "-c",
        "import sys; from easycluster.remote.process import main_spawned; "
        "sys.exit(main_spawned(sys.argv[1:]))",
        "--fd",
        str(sock.fileno()),
    ]
    if verbosity:
        argv += ["--verbosity", str(verbosity)]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        pass_fds=(sock.fileno(),),
        env=_env(),
        start_new_session=True,  # (Ctrl-C is for the master: see _Zygote)
    )
    try:
        if proc.stdin is None:  # stdin=PIPE always gives one; explicit for the type checker
            raise ConnectError("could not open a pipe to the new server process")
        with proc.stdin:  # closed even if the write fails (the process died at once)
            proc.stdin.write(key.hex().encode() + b"\n")
    except BaseException as e:
        proc.kill()
        proc.wait()
        if isinstance(e, OSError):
            raise ConnectError(f"the new local server process went away at once: {e}")
        raise
    return proc


def start_local(
    options: WireOptions, verbosity: int = 0, timeout: float = 30.0, fresh_interpreter: bool = False
) -> Tuple[Channel, Any]:
    """Start a local server process; return ``(channel, process)`` once the handshake with
    it is done.

    ``process`` is a ``LocalProcess`` (zygote-forked) or a ``subprocess.Popen`` (a fresh
    interpreter): ``pid``, ``poll``, ``wait``, ``kill``, ``terminate``. The server exits
    when its end of the socketpair closes; ``reap(process)`` then collects it. Raises
    ConnectionLost subclasses (nothing is left running when it does).
    """
    key = os.urandom(KEY_SIZE)
    if not fresh_interpreter:
        got = _start_forked(key, options, verbosity, timeout)
        if got is not None:
            return got
        key = os.urandom(KEY_SIZE)  # (a fresh one for the fresh server)
    mine, theirs = socketpair()
    try:
        proc: Any = _spawn_fresh(theirs, key, verbosity)
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()
    try:
        channel = client_handshake(mine, key, options, timeout)
    except BaseException:
        mine.close()
        reap(proc)
        raise
    return channel, proc


def _start_forked(
    key: bytes, options: WireOptions, verbosity: int, timeout: float
) -> Optional[Tuple[Channel, LocalProcess]]:
    """``start_local`` through the zygote; None when the zygote cannot serve (the caller
    starts a fresh interpreter instead). The handshake runs while the zygote's answer
    (the server's pid) is on its way: one round trip to the zygote less to wait for."""
    mine, theirs = socketpair()
    try:
        zygote = _get_zygote()
        ticket = zygote.request(theirs, key, verbosity)
    except (OSError, ConnectError):
        mine.close()
        return None
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()  # (the zygote has its own copy now, or never will)
    channel: Optional[Channel] = None
    try:
        channel = client_handshake(mine, key, options, timeout)
    except BaseException as e:
        failure: Optional[BaseException] = e
    else:
        failure = None
    try:
        proc = zygote.result(ticket)
    except BaseException as e:
        # No pid, no handle on the server: end it (it exits when its socket closes).
        if channel is not None:
            channel.close("the local server zygote went away")
        mine.close()
        if isinstance(e, (OSError, ConnectError)) and not isinstance(
            failure, (KeyboardInterrupt, SystemExit)
        ):
            return None
        raise
    if failure is not None:
        mine.close()
        reap(proc)
        raise failure
    if channel is None:  # (cannot happen: no failure means a channel)
        raise ConnectError("the local server handshake failed")
    return channel, proc


def reap(proc: Any) -> None:
    """Wait briefly for the server to exit after its socket closed; kill it if it lingers."""
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
