"""Local servers: a fresh server process linked by a socketpair (``spawn_local``'s half).

The server never is a fork of the master script, so it inherits none of its state. By
default it is forked from a *zygote*, a clean interpreter started once per master
process (see ``zygote.py``): a few milliseconds per server, and many servers share
memory. ``fresh_interpreter=True`` starts a brand-new interpreter instead (slower; it
also sees environment changes the master made after the zygote started). Either way a
random key made for this one session travels outside argv. A fresh interpreter runs the
normal handshake over the socketpair; for a zygote's child the master runs both halves
in memory and sends the server its half with the request (``protocol/control.py``), so
that a spawn waits for nobody: the zygote's answer (the pid) is read when needed.
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
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConnectError
from ..protocol.control import KEY_SIZE, SPAWNED, spawn_request
from ..protocol.handshake import WireOptions
from ..transport.channel import Channel
from ..transport.handshake import client_handshake
from ..transport.tcp import socketpair
from .reaper import get_reaper, reap_now

# The folder holding the package, for the server's PYTHONPATH (a source checkout works too).
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PKG_PARENT, env.get("PYTHONPATH")) if p)
    return env


def _python_c(module: str, func: str) -> str:
    """``python -c`` running ``module.func(sys.argv[1:])``, the package imported from the
    master's folder (``_env``): ``-c`` puts the working directory first, and one holding
    another ``easycluster`` would give the server other code. It goes back in front once
    the package is in (remote code may import the master's folder's modules, as before)."""
    return "\n".join(
        (
            "import sys",
            "cwd = sys.path.pop(0) if sys.path[:1] == [''] else None",
            f"from {module} import {func}",
            "if cwd is not None: sys.path.insert(0, cwd)",
            f"sys.exit({func}(sys.argv[1:]))",
        )
    )


class LocalProcess:
    """A handle on a zygote-forked server: ``pid``, ``poll``, ``wait``, ``kill``, ``terminate``.

    The zygote is its parent and reaps it, so we watch it through a pidfd where Linux
    has them (a reused pid can then never be mistaken for it, nor signalled), else by
    pid. ``returncode`` is the signal we sent, negated, or 0.

    The pid comes in the zygote's answer, which ``spawn_local`` does not wait for: it is
    read when this handle is first used, or before, when the master next asks the
    zygote for a server. A server that ended before that may have been reaped by the
    zygote and its pid reused: a process that is not the (living) zygote's child is
    taken for the server, ended. When the zygote started no server, ``pid`` raises
    ConnectError and ``poll`` gives 1.
    """

    def __init__(
        self, pid: int = 0, zygote: Optional[_Zygote] = None, ticket: int = 0, timeout: float = 30
    ):
        self.returncode: Optional[int] = None
        self._lock = threading.Lock()
        self._signal = 0
        self._pid = 0
        self._pidfd: Optional[int] = None
        self._failure = ""  # why there is no server (once the answer said so)
        self._zygote = zygote  # until its answer is in
        self._ticket = ticket
        self._timeout = timeout  # for the answer
        if pid:
            self.found(pid, 0)

    def found(self, pid: int, parent: int) -> None:
        """The zygote's answer: ``pid`` (a child of ``parent``, if not 0), or -errno."""
        self._zygote = None
        if pid <= 0:
            self.failed(f"the local server zygote could not fork (errno {-pid})")
            return
        self._pid = pid
        try:
            self._pidfd = os.pidfd_open(pid)  # Linux only: else AttributeError
        except AttributeError:
            return
        except ProcessLookupError:
            self.returncode = 0  # ended and reaped already
            return
        except OSError:
            return
        if parent and _parent_of(pid) not in (parent, None):  # (once the pidfd holds it)
            self.returncode = 0  # ended, reaped, and its pid taken by another process
            os.close(self._pidfd)
            self._pidfd = None

    def failed(self, why: str) -> None:
        """No server: the zygote could not start one, or went away before answering."""
        self._zygote = None
        self._failure = why
        if self.returncode is None:
            self.returncode = 1

    def _settle(self) -> None:
        zygote = self._zygote
        if zygote is not None:
            zygote.settle(self._ticket, self._timeout)  # (calls found or failed)

    @property
    def pid(self) -> int:
        self._settle()
        if self._failure:
            raise ConnectError(self._failure)
        return self._pid

    def poll(self) -> Optional[int]:
        self._settle()
        if self.returncode is None and not self._alive():
            # (several threads may see the exit: a closer reaping on its own thread, the
            # owner killing; the pidfd is closed once, under the lock send_signal takes)
            with self._lock:
                if self.returncode is None:
                    self.returncode = -self._signal if self._signal else 0
                    fd, self._pidfd = self._pidfd, None
                    if fd is not None:
                        os.close(fd)
        return self.returncode

    def _alive(self) -> bool:
        fd = self._pidfd
        if fd is not None:
            p = select.poll()
            p.register(fd, select.POLLIN)
            # readable once the process has exited (POLLNVAL: closed by another thread,
            # which saw the exit)
            return not p.poll(0)
        return _alive(self._pid)

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        code = self.poll()
        while code is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left < 0:
                raise subprocess.TimeoutExpired(f"local server {self._pid}", timeout or 0)
            fd = self._pidfd
            if fd is not None:  # wakes the moment it exits (no 5 ms naps)
                p = select.poll()
                p.register(fd, select.POLLIN)
                p.poll(None if left is None else max(int(left * 1000), 1))
            else:
                time.sleep(0.005)
            code = self.poll()
        return code

    def dup_pidfd(self) -> Optional[int]:
        """A new pidfd on the server, for a watcher of its own (``reaper.py``; the caller
        closes it), or None: no pidfd, or its exit was seen already."""
        with self._lock:  # (the pidfd stays open meanwhile: see poll)
            fd = self._pidfd
            if self.returncode is not None or fd is None:
                return None
            return os.dup(fd)

    def send_signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        with self._lock:  # (the pidfd stays open meanwhile: see poll)
            if self.returncode is not None:
                return
            try:
                if self._pidfd is not None:
                    signal.pidfd_send_signal(self._pidfd, sig)
                else:
                    os.kill(self._pid, sig)
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


def _stat(pid: int) -> List[bytes]:
    """The fields of ``/proc/PID/stat`` after the command name (state, parent, ...);
    OSError as opening it raises it (FileNotFoundError: no such process). Raw os calls:
    a buffered text file costs ~4x as much, once per server a master starts."""
    fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096).rsplit(b")", 1)[1].split()
    finally:
        os.close(fd)


def _parent_of(pid: int) -> Optional[int]:
    """The parent of process ``pid``: 0 if it has ended, None if /proc cannot tell."""
    try:
        return int(_stat(pid)[1])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return _stat(pid)[0] != b"Z"
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
            _python_c("easycluster.remote.zygote", "main"),
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
        self.owner = os.getpid()
        self.lock = threading.Lock()  # sending requests, numbered in order
        self.reply_lock = threading.Lock()  # reading the answers (in the same order)
        self.sent = 0
        self.answered = 0
        self.waiting: Dict[int, LocalProcess] = {}  # by ticket, until the answer is read
        self.broken = False

    def request(self, sock: socket.socket, msg: bytes, timeout: float) -> LocalProcess:
        """Ask for a server on ``sock`` (``msg``: a SPAWN message); return its handle. The
        server takes ``sock`` at once, so nobody waits for the answer (the pid) before
        the first frame: the handle reads it when it is used, or the next request does.
        Raises OSError or ConnectError (the zygote is gone, or takes no request within
        ``timeout`` seconds)."""
        with self.lock:
            if self.broken or self.owner != os.getpid():
                raise ConnectError("the local server zygote went away")
            ticket = self.sent + 1
            proc = self.waiting[ticket] = LocalProcess(0, self, ticket, timeout)
            deadline = time.monotonic() + timeout
            try:
                while True:
                    # Answers first: a zygote waiting for room to send them would not
                    # read this request.
                    self._drain()
                    try:
                        socket.send_fds(self.ctrl, [msg], [sock.fileno()], socket.MSG_DONTWAIT)
                        break
                    except BlockingIOError:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise ConnectError("the local server zygote takes no requests")
                        select.select([self.ctrl], [self.ctrl], [], left)
            except BaseException:
                # It may have reached it: its answer could come and be taken for the next
                # one's. Never use this zygote again.
                with self.reply_lock:
                    self.waiting.pop(ticket, None)
                    self._break("the local server zygote went away")
                raise
            self.sent = ticket
            return proc

    def settle(self, ticket: int, timeout: float) -> None:
        """Read answers until request ``ticket``'s is in (its handle is told), waiting up
        to ``timeout`` seconds; a zygote that does not answer in time is not used again."""
        deadline = time.monotonic() + timeout
        with self.reply_lock:
            while ticket in self.waiting:
                if self.owner != os.getpid():  # (a forked master: the answers are not ours)
                    self.waiting.pop(ticket).failed("the local server zygote is the parent's")
                    return
                left = deadline - time.monotonic()
                try:
                    ready = left > 0 and select.select([self.ctrl], [], [], left)[0]
                    reply = self.ctrl.recv(16) if ready else None
                except (OSError, ValueError):  # (ValueError: closed)
                    reply = b""
                if reply is None:
                    self._break(f"the local server zygote did not answer within {timeout:g} s")
                    return
                self._answer(reply)

    def _drain(self) -> None:
        """Read the answers already here, without waiting (unless another thread reads)."""
        if not self.reply_lock.acquire(blocking=False):
            return
        try:
            while self.waiting:
                try:
                    reply = self.ctrl.recv(16, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return
                except (OSError, ValueError):
                    reply = b""
                self._answer(reply)
        finally:
            self.reply_lock.release()

    def _answer(self, reply: bytes) -> None:
        """One answer read (under ``reply_lock``): tell the handle of its request."""
        if len(reply) != SPAWNED.size:
            self._break("the local server zygote went away")
            return
        self.answered += 1
        proc = self.waiting.pop(self.answered, None)
        if proc is not None:
            # (its children outlive a dead zygote, under another parent: then no check)
            alive = self.owner == os.getpid() and self.proc.poll() is None
            proc.found(SPAWNED.unpack(reply)[0], self.proc.pid if alive else 0)

    def _break(self, why: str) -> None:
        """Use this zygote no more; the requests it has not answered have no server."""
        self.broken = True
        waiting, self.waiting = self.waiting, {}
        for proc in waiting.values():
            proc.failed(why)

    def close(self) -> None:
        """Close the control socket, which ends the zygote (the servers it forked go on),
        and reap it; kill it if it lingers. In a fork of the master only this process's
        copy of the socket is closed: the zygote is not its child, so nothing is reaped
        (``poll`` finds no such child and marks it ended). Answers already here are read
        first; requests still unanswered have no server."""
        if self.owner == os.getpid():
            self._drain()
        with self.reply_lock:
            self._break("the local server zygote was closed")
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
        _python_c("easycluster.remote.process", "main_spawned"),
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
    it is done (a zygote's child: at once, the handshake run in memory; see
    ``_start_forked``). ``timeout``: seconds for the handshake, or for the zygote to
    take the request and answer it.

    ``process`` is a ``LocalProcess`` (zygote-forked) or a ``subprocess.Popen`` (a fresh
    interpreter): ``pid``, ``poll``, ``wait``, ``kill``, ``terminate``. The server exits
    when its end of the socketpair closes; ``reap(process)`` then collects it. Raises
    ConnectionLost subclasses (nothing is left running when it does).
    """
    if not fresh_interpreter:
        got = _start_forked(options, verbosity, timeout)
        if got is not None:
            return got
    key = os.urandom(KEY_SIZE)
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
        reap_now(proc)  # (nothing is left running when this raises)
        raise
    return channel, proc


def _start_forked(
    options: WireOptions, verbosity: int, timeout: float
) -> Optional[Tuple[Channel, LocalProcess]]:
    """``start_local`` through the zygote; None when the zygote cannot serve (the caller
    starts a fresh interpreter instead). The handshake is run in memory here
    (``protocol.control``) and the server gets its half with the request: the first
    frame may follow the request at once, and nothing waits for the server or for the
    zygote's answer (a server that could not start fails the first call)."""
    key = os.urandom(KEY_SIZE)
    msg, session = spawn_request(key, options, verbosity, os.getcwd())
    mine, theirs = socketpair()
    try:
        proc = _get_zygote().request(theirs, msg, timeout)
    except (OSError, ConnectError):
        mine.close()
        return None
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()  # (the zygote has its own copy now, or never will)
    return Channel(mine, session), proc


def reap(proc: Any) -> None:
    """Collect a local server whose socket closed, without waiting for it to exit: the
    process reaper (``reaper.py``) records its exit (reaping a fresh interpreter, so no
    zombie stays) and kills it if it is still running 5 seconds later; the master's exit
    waits for what it still watches. ``proc.poll()``/``wait()`` tell when it ended."""
    get_reaper().add(proc)
