"""Shell commands (and copies) run by a server for the cluster layer's RPC backend.

The client (``cluster/rpc.py``) starts a command with ``start`` and collects its output
with ``read`` until ``read`` reports the return code; ``kill`` ends it early. Each
command is named by a token the client chooses (unique per connection), and is kept in
``RUNNING`` until its return code has been read or it was killed. ``push_start`` and
``pull_start`` start a copy's receiver or sender instead (``filecopy.py``); ``write``,
``close_stdin``, ``read`` and ``kill`` then work on it as on a command.

``start`` and ``read`` block until there is something to report (output, or the end),
so the client sends them on one-off server threads (``SINGLE``); ``kill`` returns at
once and is sent inline (``CONTROL``), so it works while a ``read`` waits.
``start_quick`` (the client's for a command without stdin) waits for the command's exit
instead, ``QUICK`` seconds at most (a command still running then goes on with ``read``).

The command runs under ``/bin/sh -c`` in a session of its own (``kill`` reaches what it
started too), with stdin from /dev/null (started by ``spawn.py``, with ``posix_spawn``),
or from a pipe the client fills with ``write`` and ends with ``close_stdin`` (started by
``subprocess.Popen``). A ``read`` returns at most ``READ_MAX`` bytes, so one
chatty command cannot build an unbounded reply.

Orphans: a connection that ends cleanly kills its commands (``kill_all``). So that they
also die when this server process dies without cleaning up (SIGKILL, a crash), the
first command announced starts a watchdog (``watchdog.py``, a small ``sh`` loop in a
session of its own) on a pipe whose write end only this process holds. Each command's
process group is announced on it (``+ PGID``) right after the fork, and withdrawn
(``- PGID``) once the command exited, before it is reaped (so the id cannot have been
reused). When the pipe ends, the watchdog SIGKILLs the groups still announced and exits.
One watchdog per server costs two pipe writes per command, each waking the watchdog (a
wrapper process per command, or ``PR_SET_PDEATHSIG`` in a ``preexec_fn``, cost about
1 ms per command more; and the death signal follows the forking thread, a one-off
thread here, not the process). A command started by ``start``, or given stdin, is
unprotected only for the instant between its fork and its announcement. One started by
``start_quick`` is announced only if it still runs after ``QUICK`` seconds (before
anything of it is replied): a short command costs no write and no wake-up of the
watchdog (a twentieth of a warm command's cost on 64 nodes), and one that outlives
``QUICK`` is unprotected during its first ``QUICK`` seconds (if this process is killed
then, it runs to its end).
"""

from __future__ import annotations

import _signal  # (the C module: signal.py's enums cost every server's start-up)
import os
import threading
import time

from .filecopy import CopyError, Receiver, Sender
from .spawn import Spawned, spawn_sh
from .watchdog import Watchdog

TYPE_CHECKING = False
if TYPE_CHECKING:  # (imported when first used: every server ships this module)
    import subprocess
    from typing import Dict, List, Optional, Protocol, Tuple, Union

    Chunks = List[Tuple[int, bytes]]  # (STDOUT or STDERR, bytes), in the order read

    class Job(Protocol):
        """What ``RUNNING`` holds: a ``Running`` command, or a copy's ``filecopy.Receiver``
        or ``filecopy.Sender``."""

        def read(self) -> Tuple[Chunks, Optional[int]]: ...
        def write(self, data: bytes) -> None: ...
        def close_stdin(self) -> None: ...
        def kill(self) -> None: ...


READ_MAX = 1 << 20  # bytes one read() returns at most
LINGER = 0.002  # s to wait for more output (or the end) once some came
BATCH_MAX = 0.02  # s a read() collects output for at most, once the first came
# s start_quick() waits for the exit at most: long enough for a short command's end on a
# busy machine (64 servers' shells sharing 2 cores take ~15 ms), short enough that a
# long command's first output is not held back for long
QUICK = 0.02
_CHUNK = 1 << 16

STDOUT, STDERR = 1, 2


class Running:
    """A started command: its process and the output streams not at their end yet."""

    def __init__(self, proc: Union[subprocess.Popen[bytes], Spawned], outs: Dict[int, int]) -> None:
        self.proc = proc
        self.open = outs  # fd -> STDOUT/STDERR, for the streams not at their end yet
        self.fds = list(outs)  # our ends of its output pipes, closed once it was reaped
        self.lock = threading.Lock()  # one read() at a time
        self.watched = True  # announced to the watchdog and not withdrawn

    def read(self) -> Tuple[Chunks, Optional[int]]:
        """As the module's ``read``, for this command."""
        return _read_process(self)

    def write(self, data: bytes) -> None:
        stdin = self.proc.stdin
        if stdin is None:
            raise ValueError("the command was started without stdin")
        try:
            stdin.write(data)
            stdin.flush()
        except (BrokenPipeError, ValueError):  # (ValueError: closed meanwhile by its end)
            pass

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass

    def kill(self) -> None:
        if self.proc.returncode is not None:  # reaped: the id may be someone else's now
            return
        try:
            os.killpg(self.proc.pid, _signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


RUNNING: Dict[int, Job] = {}
_RUNNING_LOCK = threading.Lock()
_ENDING = [False]  # kill_all ran: the connection ends, nothing more may start (under the lock)


def _watched_groups() -> List[int]:
    """The process groups of the commands announced to the watchdog."""
    return [j.proc.pid for j in list(RUNNING.values()) if isinstance(j, Running) and j.watched]


WATCH = Watchdog(_watched_groups)


def start(token: int, command: str, stderr: bool, stdin: bool) -> Tuple[Chunks, Optional[int]]:
    """Start ``command`` as ``token``; then as ``read``, except with ``stdin``: then it
    returns ``([], None)`` at once (the command may wait for its input, which the client
    sends with ``write`` only once this returned). ``stderr``: a stream of its own
    (else merged into stdout). ``stdin``: a pipe for ``write`` (else /dev/null).
    Raises ValueError for a token in use, OSError when the shell cannot start."""
    _spawn(token, command, stderr, stdin)
    if stdin:
        return [], None
    return read(token)


def start_quick(token: int, command: str, stderr: bool) -> Tuple[Chunks, Optional[int]]:
    """As ``start`` without stdin, but waits for the command's exit rather than its
    output, for ``QUICK`` seconds at most: returns its output and return code if it
    exited by then (and its output ended), else the output so far (maybe none) and None
    (the rest comes with ``read``). Where there are no pidfds (Linux < 5.3, other
    systems), as ``start``."""
    run = _spawn(token, command, stderr, False, announce=False)
    chunks, rc = _quick_read(run)
    if rc is not None:
        with _RUNNING_LOCK:
            RUNNING.pop(token, None)
    return chunks, rc


def _spawn(token: int, command: str, stderr: bool, stdin: bool, announce: bool = True) -> Running:
    """Start the command as ``token``; ``announce``: to the watchdog now (else
    ``run.watched`` is False until ``_announce``)."""
    with _RUNNING_LOCK:
        if token in RUNNING:
            raise ValueError(f"command token {token} is in use")
        if _ENDING[0]:  # (a start racing the connection's end would outlive it)
            raise OSError("the connection is ending: the command was not started")
        run = None if stdin else _posix_spawn(command, stderr)
        if run is None:
            run = _popen(command, stderr, stdin)
        if announce:
            WATCH.announce(run.proc.pid)  # (it leads its own group: pgid == pid)
        else:
            run.watched = False
        RUNNING[token] = run
    return run


def _posix_spawn(command: str, stderr: bool) -> Optional[Running]:
    """``spawn.spawn_sh``'s command as a ``Running`` (None where it cannot start one:
    then ``_popen``)."""
    got = spawn_sh(command, stderr)
    if got is None:
        return None
    proc, out_r, err_r = got
    outs = {out_r: STDOUT}
    if err_r is not None:
        outs[err_r] = STDERR
    return Running(proc, outs)


def _popen(command: str, stderr: bool, stdin: bool) -> Running:
    import subprocess

    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr else subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    outs: Dict[int, int] = {}
    for sid, f in ((STDOUT, proc.stdout), (STDERR, proc.stderr)):
        if f is not None:
            os.set_blocking(f.fileno(), False)
            outs[f.fileno()] = sid
    run = Running(proc, outs)
    run.fds = []  # (closed with their file objects)
    return run


def push_start(
    token: int,
    dest: str,
    name: str,
    size: int,
    mode: int,
    kind: str,
    preserve: bool,
    mtime: float,
    top: str,
) -> Tuple[Chunks, Optional[int]]:
    """Start receiving a pushed file or directory as ``token`` (``filecopy.Receiver``):
    ``([], None)``, then its bytes come with ``write`` and end with ``close_stdin``,
    and ``read`` reports the outcome. A target refused at once: ``([(STDERR, why)],
    1)``. ValueError for a token in use."""
    try:
        job: Job = Receiver(dest, name, size, mode, kind, preserve, mtime, top)
    except CopyError as e:
        return [(STDERR, f"{e}\n".encode("utf-8", "replace"))], 1
    _add(token, job)
    return [], None


def pull_start(token: int, source: str) -> Tuple[Chunks, Optional[int]]:
    """Start sending ``source`` as ``token`` (``filecopy.Sender``), then as ``read``.
    A source that cannot be read: ``([(STDERR, why)], 1)``."""
    try:
        job: Job = Sender(source)
    except CopyError as e:
        return [(STDERR, f"{e}\n".encode("utf-8", "replace"))], 1
    _add(token, job)
    return read(token)


def _add(token: int, job: Job) -> None:
    with _RUNNING_LOCK:
        if token in RUNNING or _ENDING[0]:
            job.kill()
            if _ENDING[0]:
                raise OSError("the connection is ending: the copy was not started")
            raise ValueError(f"command token {token} is in use")
        RUNNING[token] = job


def read(token: int) -> Tuple[Chunks, Optional[int]]:
    """Wait until command ``token`` has output or has ended; return ``(chunks, rc)``:
    the output read (at most ``READ_MAX`` bytes) and, once both streams ended and the
    process exited, its return code (128+N if killed by signal N), else None. After the
    return code the token is forgotten. KeyError for an unknown token."""
    job = RUNNING[token]
    chunks, rc = job.read()
    if rc is not None:
        with _RUNNING_LOCK:
            RUNNING.pop(token, None)
    return chunks, rc


def _quick_read(run: Running) -> Tuple[Chunks, Optional[int]]:
    """``start_quick``'s wait: for the exit (a pidfd), then for nothing. A short command
    then costs its server one wake-up, where waiting for its output costs two or three
    (its output, its streams' end, its exit), each a thread switch on a busy machine."""
    import select

    try:
        pidfd = os.pidfd_open(run.proc.pid)
    except (AttributeError, OSError):
        with _RUNNING_LOCK:
            WATCH.announce(run.proc.pid)
            run.watched = True
        return _read_process(run)
    with run.lock:
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            exited = bool(poller.poll(QUICK * 1000.0))
        finally:
            os.close(pidfd)
        if not exited:  # (it outlived QUICK: protected from here on, module docstring)
            with _RUNNING_LOCK:  # (as at a spawn: a watchdog started now lists it once)
                WATCH.announce(run.proc.pid)
                run.watched = True
        chunks = _take_ready(run)
        if not exited or run.open:  # (running; or exited, its streams held by another)
            return chunks, None
        return chunks, _reap(run)


def _take_ready(run: Running) -> Chunks:
    """The output there is now (at most ``READ_MAX`` bytes), taken without waiting; the
    streams found at their end are closed. (``run.lock`` held.)"""
    import select

    chunks: Chunks = []
    if not run.open:
        return chunks
    size = 0
    poller = select.poll()
    for fd in run.open:
        poller.register(fd, select.POLLIN)
    while run.open and size < READ_MAX:
        ready = poller.poll(0)
        if not ready:
            break
        for fd, _ in ready:
            data = _read(fd)
            if data:
                chunks.append((run.open[fd], data))
                size += len(data)
            elif data is not None:
                poller.unregister(fd)
                del run.open[fd]
    return chunks


def _reap(run: Running) -> int:
    """The return code of a command that exited and whose streams ended (128+N if killed
    by signal N); forgets its process group and closes its streams. (``run.lock`` held.)"""
    _withdraw(run)  # (before the reap: the group id is still ours)
    rc = run.proc.wait()
    _close_streams(run)
    return 128 - rc if rc < 0 else rc


def _read_process(run: Running) -> Tuple[Chunks, Optional[int]]:
    import select  # (a poll object, not a selector: no descriptor made per read)

    chunks: Chunks = []
    size = 0
    with run.lock:
        if run.open:
            poller = select.poll()
            for fd in run.open:
                poller.register(fd, select.POLLIN)
            timeout: Optional[float] = None  # ms; block for the first bytes or the end
            until = 0.0
            while run.open and size < READ_MAX:
                ready = poller.poll(timeout)
                if not ready:
                    break
                for fd, _ in ready:
                    data = _read(fd)
                    if data is None:
                        continue
                    if data:
                        chunks.append((run.open[fd], data))
                        size += len(data)
                    else:
                        poller.unregister(fd)
                        del run.open[fd]
                # Then linger a moment for more: a short command's end usually
                # follows its output within LINGER (one reply instead of two), and
                # a chatty one sends fuller replies; never past BATCH_MAX in all.
                now = time.monotonic()
                if timeout is None:
                    until = now + BATCH_MAX
                timeout = max(0.0, min(LINGER, until - now)) * 1000.0
        if run.open:
            return chunks, None
        _exited(run.proc.pid)
        return chunks, _reap(run)


def write(token: int, data: bytes) -> None:
    """Write ``data`` to command ``token``'s stdin (blocking until the pipe takes it), or
    to a push's receiver. BrokenPipeError is ignored: the command stopped reading, as
    with a local pipe. ValueError if it was started without stdin."""
    job = RUNNING.get(token)
    if job is not None:  # (else ended, and its end was read: nobody wants the input)
        job.write(data)


def close_stdin(token: int) -> None:
    """End command ``token``'s stdin (it reads end of file; a push then finishes)."""
    job = RUNNING.get(token)
    if job is not None:
        job.close_stdin()


def kill(token: int) -> bool:
    """SIGKILL command ``token`` and what it started (its session), or abandon a copy;
    its ``read`` then reports the end. False if the token is unknown (ended and read
    already)."""
    job = RUNNING.get(token)
    if job is None:
        return False
    job.kill()
    return True


def kill_all() -> None:
    """Kill every command still running and abandon every copy: the connection that
    started them ends (its server process is about to exit, and nobody would read their
    output). The watchdog is let go (killed here, the groups need it no longer). A
    start on another thread (``SINGLE``) that comes after is refused, so no command can
    slip past this."""
    with _RUNNING_LOCK:
        _ENDING[0] = True
        jobs = list(RUNNING.values())
    for job in jobs:
        job.kill()
        if isinstance(job, Running):
            _withdraw(job)  # (killed, and not reaped before we exit: not reused)
    WATCH.close()


def _withdraw(run: Running) -> None:
    if run.watched:
        run.watched = False
        WATCH.withdraw(run.proc.pid)


def _exited(pid: int) -> None:
    """Wait until process ``pid`` (our child) has exited, without reaping it."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    except (AttributeError, ChildProcessError, OSError):  # (no waitid: the reap waits)
        pass


def _read(fd: int) -> Optional[bytes]:
    """Bytes from ``fd``; b"" at its end (or a read error); None if nothing is there."""
    try:
        return os.read(fd, _CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _close_streams(run: Running) -> None:
    for fd in run.fds:
        try:
            os.close(fd)
        except OSError:
            pass
    proc = run.proc
    if isinstance(proc, Spawned):
        return
    for f in (proc.stdout, proc.stderr, proc.stdin):
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
