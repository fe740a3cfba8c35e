"""Shell commands run by a server for the cluster layer's RPC backend.

The client (``cluster/rpc.py``) starts a command with ``start`` and collects its output
with ``read`` until ``read`` reports the return code; ``kill`` ends it early. Each
command is named by a token the client chooses (unique per connection), and is kept in
``RUNNING`` until its return code has been read or it was killed.

``start`` and ``read`` block until there is something to report (output, or the end),
so the client sends them on one-off server threads (``SINGLE``); ``kill`` returns at
once and is sent inline (``CONTROL``), so it works while a ``read`` waits.

The command runs under ``/bin/sh -c`` in a session of its own (``kill`` reaches what it
started too), with stdin from /dev/null, or from a pipe the client fills with ``write``
and ends with ``close_stdin``. A ``read`` returns at most ``READ_MAX`` bytes, so one
chatty command cannot build an unbounded reply.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

if TYPE_CHECKING:  # (imported when first used: every server ships this module)
    import subprocess

READ_MAX = 1 << 20  # bytes one read() returns at most
LINGER = 0.002  # s to wait for more output (or the end) once some came
BATCH_MAX = 0.02  # s a read() collects output for at most, once the first came
_CHUNK = 1 << 16

STDOUT, STDERR = 1, 2
Chunks = List[Tuple[int, bytes]]  # (STDOUT or STDERR, bytes), in the order read


class Running:
    """A started command: its process and the output streams not at their end yet."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.open: Dict[int, int] = {}  # fd -> STDOUT/STDERR
        for sid, f in ((STDOUT, proc.stdout), (STDERR, proc.stderr)):
            if f is not None:
                fd = f.fileno()
                os.set_blocking(fd, False)
                self.open[fd] = sid
        self.lock = threading.Lock()  # one read() at a time


RUNNING: Dict[int, Running] = {}
_RUNNING_LOCK = threading.Lock()


def start(token: int, command: str, stderr: bool, stdin: bool) -> Tuple[Chunks, Optional[int]]:
    """Start ``command`` as ``token``; then as ``read``, except with ``stdin``: then it
    returns ``([], None)`` at once (the command may wait for its input, which the client
    sends with ``write`` only once this returned). ``stderr``: a stream of its own
    (else merged into stdout). ``stdin``: a pipe for ``write`` (else /dev/null).
    Raises ValueError for a token in use, OSError when the shell cannot start."""
    import subprocess

    with _RUNNING_LOCK:
        if token in RUNNING:
            raise ValueError(f"command token {token} is in use")
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if stderr else subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
        RUNNING[token] = Running(proc)
    if stdin:
        return [], None
    return read(token)


def read(token: int) -> Tuple[Chunks, Optional[int]]:
    """Wait until command ``token`` has output or has ended; return ``(chunks, rc)``:
    the output read (at most ``READ_MAX`` bytes) and, once both streams ended and the
    process exited, its return code (128+N if killed by signal N), else None. After the
    return code the token is forgotten. KeyError for an unknown token."""
    import selectors

    run = RUNNING[token]
    chunks: Chunks = []
    size = 0
    with run.lock:
        if run.open:
            with selectors.DefaultSelector() as sel:
                for fd in run.open:
                    sel.register(fd, selectors.EVENT_READ)
                timeout: Optional[float] = None  # block for the first bytes or the end
                until = 0.0
                while run.open and size < READ_MAX:
                    ready = sel.select(timeout)
                    if not ready:
                        break
                    for key, _ in ready:
                        data = _read(key.fd)
                        if data is None:
                            continue
                        if data:
                            chunks.append((run.open[key.fd], data))
                            size += len(data)
                        else:
                            sel.unregister(key.fd)
                            del run.open[key.fd]
                    # Then linger a moment for more: a short command's end usually
                    # follows its output within LINGER (one reply instead of two), and
                    # a chatty one sends fuller replies; never past BATCH_MAX in all.
                    now = time.monotonic()
                    if timeout is None:
                        until = now + BATCH_MAX
                    timeout = max(0.0, min(LINGER, until - now))
        if run.open:
            return chunks, None
        rc = run.proc.wait()
        _forget(token, run)
    return chunks, 128 - rc if rc < 0 else rc


def write(token: int, data: bytes) -> None:
    """Write ``data`` to command ``token``'s stdin (blocking until the pipe takes it).
    BrokenPipeError is ignored: the command stopped reading, as with a local pipe."""
    run = RUNNING.get(token)
    if run is None:  # (ended, and its end was read: nothing wants the input any more)
        return
    proc = run.proc
    if proc.stdin is None:
        raise ValueError(f"command {token} was started without stdin")
    try:
        proc.stdin.write(data)
        proc.stdin.flush()
    except (BrokenPipeError, ValueError):  # (ValueError: closed meanwhile by its end)
        pass


def close_stdin(token: int) -> None:
    """End command ``token``'s stdin (it reads end of file)."""
    run = RUNNING.get(token)
    if run is not None and run.proc.stdin is not None:
        try:
            run.proc.stdin.close()
        except BrokenPipeError:
            pass


def kill(token: int) -> bool:
    """SIGKILL command ``token`` and what it started (its session); its ``read`` then
    reports the end. False if the token is unknown (ended and read already)."""
    run = RUNNING.get(token)
    if run is None:
        return False
    try:
        os.killpg(run.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return True


def kill_all() -> None:
    """Kill every command still running: the connection that started them ends (its
    server process is about to exit, and nobody would read their output)."""
    for token in list(RUNNING):
        kill(token)


def _read(fd: int) -> Optional[bytes]:
    """Bytes from ``fd``; b"" at its end (or a read error); None if nothing is there."""
    try:
        return os.read(fd, _CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _forget(token: int, run: Running) -> None:
    for f in (run.proc.stdout, run.proc.stderr, run.proc.stdin):
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
    with _RUNNING_LOCK:
        RUNNING.pop(token, None)
