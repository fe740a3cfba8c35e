"""Servers started over the system's OpenSSH ``ssh``: nothing installed on the remote host.

``open_channel`` runs ``ssh [EXTRA] -T -o BatchMode=yes [-p PORT] -- [user@]host STAGE0``
with the system's ``ssh`` (or the program given as ``ssh``: a path, or its words as a
list, ``["sshpass", "-f", FILE, "ssh"]``), so the user's
``~/.ssh/config``, agents, ``ProxyJump`` and ``ControlMaster`` all apply and host keys are
checked as that configuration says (never switched off here). It writes the stage-1
script, the modules compiled for this Python and a fresh random session key to ssh's
stdin at once (``launch/payload.py``), waits for the stage-0 greeting and stage 1's status
line on ssh's stdout (sending the modules' source when stage 1 asks: a remote Python of
another bytecode version), and runs the ordinary client handshake over the two pipes
(``remote/stage1.py`` is the remote side).

Failures raise typed errors that name the host and carry ssh's own message:

* ``ConnectError``: host unreachable or refused, connect timeout (``ssh`` is killed and
  reaped), remote Python missing (``python3 not found on HOST``), remote Python too old,
  remote side crashed during the bootstrap (its stderr is in the message);
* ``AuthenticationError``: authentication refused, or host key verification failed;
* ``ConfigError``: the ``ssh`` program does not exist.

A ``KillSwitch`` given to ``open_channel`` lets another thread end that connection's
``ssh`` at once: give up a connection still being made (``abandon``: ``open_channel``
then raises ``ConnectError``, and no ssh outlives it), or kill the ssh of an open one
whose server no longer answers (``kill``).

While connecting, ssh's stderr is collected for these messages; once connected it is
forwarded to this process's ``sys.stderr`` (remote ``print`` output arrives there).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time

from ..errors import (
    AuthenticationError,
    ConfigError,
    ConnectError,
    ConnectionLost,
    ProtocolError,
)
from ..protocol import boot
from ..protocol.handshake import WireOptions
from ..remote.stage1 import READY, WANT_CODE, WANT_SOURCE
from ..transport.channel import Channel
from ..transport.handshake import client_handshake
from ..transport.pipes import PipeSocket
from . import payload
from .killswitch import KillSwitch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Sequence, Tuple

_TRUE = ("", "1", "yes", "on", "true")
_STDERR_KEEP = 1 << 16  # bytes of ssh's stderr kept for error messages
_HOSTKEY_SIGNS = (
    "Host key verification failed",
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "host key for",
    "No matching host key",
)
_AUTH_SIGNS = (
    "Permission denied",
    "Too many authentication failures",
    "No more authentication methods",
)


def ssh_program(ssh: Any) -> str:
    """The ssh program to run: ``"ssh"`` for None/True/``yes``/``1``/``on``, else the path."""
    if ssh is None or ssh is True or ssh is False:
        return "ssh"
    text = str(ssh)
    return "ssh" if text.lower() in _TRUE else text


def ssh_words(ssh: Any) -> List[str]:
    """The words that run ssh: ``ssh`` itself if it is a list or tuple of words (a
    wrapper and its arguments, ``["sshpass", "-f", FILE, "ssh"]``; never split here),
    else ``[ssh_program(ssh)]``."""
    if isinstance(ssh, (list, tuple)):
        if not ssh:
            raise ConfigError("ssh: an empty list of words")
        return [str(word) for word in ssh]
    return [ssh_program(ssh)]


def ssh_argv(
    host: str,
    command: str,
    port: Optional[int] = None,
    user: Optional[str] = None,
    ssh: Any = None,
    extra_args: Sequence[str] = (),
) -> List[str]:
    """The argv that runs ``command`` on ``host`` through OpenSSH (``ssh``: as
    ``ssh_words`` takes it).

    ``extra_args`` come first, so they win over the options added here (OpenSSH keeps the
    first value it sees); ``--`` keeps a host name from being read as an option.
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # ssh takes IPv6 addresses without brackets
    if not host or host.startswith("-"):
        raise ConfigError(f"bad ssh host name {host!r}")
    argv = [*ssh_words(ssh), *extra_args, "-T", "-o", "BatchMode=yes"]
    if port is not None:
        argv += ["-p", str(int(port))]
    argv += ["--", f"{user}@{host}" if user else host, command]
    return argv


def open_channel(
    host: str,
    port: Optional[int] = None,
    user: Optional[str] = None,
    ssh: Any = None,
    rpython: Optional[str] = None,
    extra_args: Sequence[str] = (),
    options: WireOptions = WireOptions(),
    timeout: Optional[float] = 10.0,
    payload_data: Optional[bytes] = None,
    switch: Optional[KillSwitch] = None,
    remote_cache: Optional[str] = None,
) -> Tuple[Channel, Callable[[], None], str]:
    """Start a server on ``host`` over ssh; return ``(channel, closer, peername)``.

    ``payload_data``: the bootstrap bundle to send (default: the server's,
    ``payload.payload()``); tree mode sends a gateway's, built once at the admin node
    and handed down the levels. ConfigError if it is not a bundle.

    ``timeout`` bounds everything up to the completed handshake. ``closer()`` ends the
    ssh process (politely first: the server exits when its stdin closes) and reaps it.
    ``switch`` (a fresh ``KillSwitch``) lets another thread end this ssh: once thrown
    while connecting, this raises ``ConnectError`` (ssh killed and reaped).
    ``remote_cache`` (off: None) keeps the server's code on the remote host for the next
    connections, which then send its digest instead (``remote/stage1.py``): the folder
    there, or "" for ``~/.cache/easycluster`` (``$XDG_CACHE_HOME``); not with
    ``payload_data``. Raises ConnectError, AuthenticationError or ConfigError as the
    module docstring says.
    """
    rpython = rpython or "python3"
    where = f"{user}@{host}" if user else host
    sections: Optional[Tuple[bytes, bytes, bytes]] = None
    if payload_data is not None:
        try:
            sections = payload.unbundle(payload_data)
        except ValueError as e:
            raise ConfigError(f"bad payload_data: {e}")
    if remote_cache is not None:
        if sections is not None:
            raise ConfigError("remote_cache works with the client's own payload, not payload_data")
        if not remote_cache.isprintable():  # (a NUL, a line break, a lone surrogate...)
            raise ConfigError(f"remote_cache: not a folder name: {remote_cache!r}")
    script = payload.stage1_script(remote_cache is not None) if sections is None else sections[0]
    try:
        command = boot.stage0_command(rpython, len(script))
    except ValueError as e:
        raise ConfigError(f"bad rpython {rpython!r}: {e}")
    argv = ssh_argv(host, command, port, user, ssh, extra_args)
    key = os.urandom(boot.KEY_SIZE)
    deadline = None if timeout is None else time.monotonic() + timeout
    proc, rfd, wfd, errors = _start(argv)
    conn = _Bootstrap(proc, rfd, wfd, errors, where, rpython, timeout, deadline)
    try:
        if switch is not None:
            switch.hold(conn)  # (thrown already: ssh is killed here)
        if sections is None:  # built (or read from the cache) while ssh connects
            sections = payload.unbundle(payload.payload())
        _, code, source = sections
        if remote_cache is not None and code:
            first, later = payload.cache_request(code, remote_cache), code
        else:
            first, later = code or source, b""
        sock = conn.run(script + first + key, source if code else b"", later)
        try:
            channel = client_handshake(sock, key, options, conn.left())
        except ConnectError:
            raise conn.timed_out()
        except (AuthenticationError, ProtocolError) as e:  # the stream was not ours alone
            raise type(e)(f"{where}: bootstrap handshake failed: {e}")
        except ConnectionLost:
            raise conn.failure()
        conn.opened()
    except BaseException as e:
        conn.abort()
        if conn.killed and isinstance(e, Exception):  # (what ssh said is beside the point)
            raise ConnectError(f"connecting to {where} over ssh was given up") from e
        raise
    errors.forward()
    return channel, conn.close, where


def _start(argv: List[str]) -> Tuple[subprocess.Popen, int, int, _StderrPump]:
    """Start ssh on three fresh pipes; return (process, stdout read fd, stdin write fd,
    stderr pump). The fds are ours alone (Popen holds no file objects on them)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = subprocess.Popen(
            argv, stdin=in_r, stdout=out_w, stderr=err_w, start_new_session=True
        )
    except OSError as e:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise ConfigError(f"cannot run ssh program {argv[0]!r}: {e.strerror or e}")
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    pump = _StderrPump(err_r)
    pump.start()
    return proc, out_r, in_w, pump


class _StderrPump(threading.Thread):
    """Reads ssh's stderr: kept (its tail) while connecting, then forwarded to sys.stderr."""

    def __init__(self, fd: int):
        super().__init__(daemon=True, name="easycluster-ssh-stderr")
        self.fd = fd
        self.buffer = bytearray()
        self.lock = threading.Lock()
        self.forwarding = False
        self.ended = threading.Event()

    def run(self) -> None:
        try:
            while True:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                with self.lock:
                    if self.forwarding:
                        _write_stderr(chunk)
                    else:
                        self.buffer += chunk
                        del self.buffer[:-_STDERR_KEEP]
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.ended.set()

    def forward(self) -> None:
        """From now on, copy ssh's stderr to sys.stderr (what was kept goes first)."""
        with self.lock:
            self.forwarding = True
            if self.buffer:
                _write_stderr(bytes(self.buffer))
                self.buffer.clear()

    def text(self, wait: float) -> str:
        """What ssh wrote so far, after waiting up to ``wait`` s for it to finish."""
        self.ended.wait(wait)
        with self.lock:
            return self.buffer.decode("utf-8", "replace").strip()


def _write_stderr(data: bytes) -> None:
    try:
        sys.stderr.write(data.decode("utf-8", "replace"))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class _Bootstrap:
    """One connection attempt: feeds ssh's stdin, finds the greeting, explains failures."""

    def __init__(
        self,
        proc: subprocess.Popen,
        rfd: int,
        wfd: int,
        errors: _StderrPump,
        where: str,
        rpython: str,
        timeout: Optional[float],
        deadline: Optional[float],
    ):
        self.proc = proc
        self.rfd, self.wfd = rfd, wfd
        self.errors = errors
        self.where = where
        self.rpython = rpython
        self.timeout = timeout
        self.deadline = deadline
        self.version: Optional[Tuple[int, int, int]] = None
        self.sock: Optional[PipeSocket] = None
        # Taken to reap ssh and to signal it from another thread (``kill``): a pid is
        # never signalled once reaped (the pid, and its process group's id, may be
        # another's by then).
        self.lock = threading.Lock()
        self.open = False  # the connection was made (``opened``)
        self.killed = False  # by ``kill`` (a ``KillSwitch``)

    def left(self) -> Optional[float]:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def run(self, data: bytes, source: bytes, code: bytes = b"") -> PipeSocket:
        """Send ``data``, read up to the greeting and stage 1's status line, sending
        ``source`` or ``code`` too if stage 1 asks for it (after a cache request);
        return the pipes as a socket."""
        todo = memoryview(data)
        out = bytearray()
        os.set_blocking(self.wfd, False)
        poller = select.poll()
        poller.register(self.rfd, select.POLLIN)
        poller.register(self.wfd, select.POLLOUT)
        ready = False  # stage 1 said it has what it needs
        while not ready or todo:
            left = self.left()
            if left is not None and left <= 0:
                raise self.timed_out()
            events = poller.poll(None if left is None else max(1, int(left * 1000)))
            for fd, _ in events:
                if fd == self.wfd:
                    try:
                        todo = todo[os.write(self.wfd, todo[: 1 << 16]) :]
                    except BlockingIOError:
                        continue
                    except OSError:  # ssh is gone: its stdout tells the rest
                        todo = todo[:0]
                    if not todo:
                        poller.unregister(self.wfd)
                    continue
                chunk = os.read(self.rfd, 65536)
                if not chunk:
                    raise self.failure()
                out += chunk
                if self.version is None:
                    self.version = boot.parse_greeting(out)
                    if self.version is None:
                        continue
                    if self.version < boot.MIN_PYTHON:
                        raise self.failure()
                    del out[: boot.greeting_end(out)]
                if not ready:
                    status = self._status(out, source, code)
                    if status in (WANT_SOURCE, WANT_CODE):
                        if not todo:
                            poller.register(self.wfd, select.POLLOUT)
                        todo = memoryview(bytes(todo) + (source if status == WANT_SOURCE else code))
                        source = code = b""  # (asked for once at most)
                    ready = status is not None  # (after a WANT_*: its section, then done)
        os.set_blocking(self.wfd, True)
        self.sock = PipeSocket(self.rfd, self.wfd, pending=bytes(out))
        return self.sock

    def _status(self, out: bytearray, source: bytes, code: bytes) -> Optional[bytes]:
        """Stage 1's status line, taken off the front of ``out``; None while it has not
        fully come. ProtocolError for anything else (or a request for a section this
        client does not have to send, or sent already)."""
        for line, have in ((READY, True), (WANT_SOURCE, source), (WANT_CODE, code)):
            if out.startswith(line):
                if not have:
                    break
                del out[: len(line)]
                return line
        else:
            if any(line.startswith(out) for line in (READY, WANT_SOURCE, WANT_CODE)):
                return None
        raise ProtocolError(
            f"{self.where}: unexpected bootstrap output {bytes(out[:80])!r} (is {self.rpython}"
            " a Python this client supports?)"
        )

    def opened(self) -> None:
        """The connection is made: from now on only ``kill(only_connecting=False)``
        ends its ssh."""
        with self.lock:
            self.open = True

    def kill(self, only_connecting: bool) -> None:
        """(``KillSwitch``'s, from any thread) SIGKILL ssh's process group now, unless
        ssh was reaped (or, ``only_connecting``, the connection was made)."""
        with self.lock:
            if only_connecting and self.open:
                return
            self.killed = self.killed or self.proc.returncode is None
            self._signal_held(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        with self.lock:
            self._signal_held(sig)

    def _signal_held(self, sig: int) -> None:
        """Send ``sig`` to ssh's process group (ssh and any ProxyCommand it started)
        unless ssh was reaped (``lock`` held)."""
        if self.proc.returncode is None:  # (not reaped: its pid, the group's id, is ours)
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _reaped(self, timeout: Optional[float]) -> bool:
        """Wait up to ``timeout`` s (None: as long as it takes) for ssh to exit; True once
        it is reaped. Polled (as ``Popen.wait`` with a timeout does), so that each reap
        is made holding ``lock``."""
        end = None if timeout is None else time.monotonic() + timeout
        pause = 0.0005
        while True:
            with self.lock:
                if self.proc.poll() is not None:
                    return True
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            time.sleep(pause if left is None else min(pause, left))
            pause = min(2 * pause, 0.05)

    def _stop(self, sig: int, grace: float) -> None:
        """Wait up to ``grace`` s for ssh to exit, then send ``sig`` to its process group
        (ssh and any ProxyCommand it started), and reap it."""
        if self._reaped(grace):
            return
        self._signal(sig)
        if not self._reaped(5):
            self._signal(signal.SIGKILL)
            self._reaped(None)

    def _close_fds(self) -> None:
        if self.sock is not None:
            self.sock.close()
        else:
            for fd in (self.rfd, self.wfd):
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.sock = None
        self.rfd = self.wfd = -1

    def abort(self) -> None:
        """Connecting failed: kill ssh at once (if still running) and reap it."""
        if self.rfd != -1:
            self._close_fds()
        self._stop(signal.SIGKILL, 0)

    def close(self) -> None:
        """The closer: the channel has closed ssh's stdin; give ssh a moment, then end it."""
        self._stop(signal.SIGTERM, 1.0)

    def timed_out(self) -> ConnectError:
        self._close_fds()
        self._stop(signal.SIGKILL, 0)
        msg = self.errors.text(0.5)
        return ConnectError(
            f"connecting to {self.where} over ssh timed out after "
            f"{self.timeout} s" + (f"; ssh said: {msg}" if msg else "")
        )

    def failure(self) -> ConnectionLost:
        """Explain why the remote end closed before the server was up."""
        self._close_fds()
        left = self.left()
        self._stop(signal.SIGKILL, 5.0 if left is None else min(5.0, left))
        rc = self.proc.returncode
        msg = self.errors.text(1.0)
        return classify(self.where, self.rpython, rc, msg, self.version)


def classify(
    where: str,
    rpython: str,
    rc: Optional[int],
    stderr: str,
    version: Optional[Tuple[int, int, int]],
) -> ConnectionLost:
    """The error for a bootstrap that ended early, from ssh's exit status and stderr.

    ``version`` is the remote Python version from the greeting (None if none came).
    """
    said = f": {stderr}" if stderr else ""
    if version is not None and version < boot.MIN_PYTHON:
        found = ".".join(map(str, version))
        need = ".".join(map(str, boot.MIN_PYTHON))
        return ConnectError(
            f"remote Python {found} ({rpython}) on {where} is too old: "
            f"EasyCluster needs Python {need} or later"
        )
    if version is None and rc == 255:
        if any(s in stderr for s in _HOSTKEY_SIGNS):
            return AuthenticationError(f"ssh to {where}: host key verification failed{said}")
        if any(s in stderr for s in _AUTH_SIGNS):
            return AuthenticationError(f"ssh to {where}: authentication refused{said}")
        return ConnectError(f"ssh cannot connect to {where}{said}")
    if version is None and rc in (126, 127):
        return ConnectError(
            f"{rpython} not found on {where} (rpython={rpython!r}; exit status {rc}){said}"
        )
    status = "killed by a signal" if rc is not None and rc < 0 else f"exit status {rc}"
    if version is None:
        return ConnectError(
            f"the remote side failed before the bootstrap started on {where} ({status}){said}"
        )
    return ConnectError(f"the remote side crashed during the bootstrap on {where} ({status}){said}")
