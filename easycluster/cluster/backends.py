"""How a slot's command runs: the backends behind one interface.

A ``Backend`` turns ``(node, rank, command)`` into a running ``Command``: a process
whose stdout, stderr and stdin are non-blocking pipe ends the engine waits on, and
whose end the engine sees on a pidfd (or by polling where there is none). It also
classifies a return code: the command's own (``exit``), or the backend's failure
(``unreachable``, ``hostkey``). The backends here are exec backends (one local process
per slot): ``ExecBackend`` runs any local command, ``SshBackend`` (``sshexec.py``) runs
``ssh [options] host command``. The RPC backend (``rpc.py``: our server over a session) keeps this
contract: ``start`` gives the engine file descriptors to wait on and an end to report,
``kill`` ends the command, ``classify`` names the failure class. A command whose output
arrives on another thread rather than from a process (the RPC backend's) hands it to
the engine through a ``Mailbox`` instead of pipes: one descriptor and one wake-up for
many commands' output and ends, where pipes cost three descriptors per command.

Placeholders (the one rule, ``substitute``): the backends that run the command
themselves, ``exec`` (a local ``sh -c``) and ``rpc`` (``sh -c`` under our server on
the node), replace ``%h``/``%host`` with the node's name (shell-quoted), ``%n``/``%rank``
with its 0-based rank and ``%%`` with ``%``, as ClusterShell's ExecWorker does. ``ssh``
hands the command to the remote login shell exactly as written, as clush and pdsh do
(``date +%h`` stays a date format there). ``literal(command)`` is the text that runs a
command as written on any backend; ``copy`` and ``rcopy`` never substitute in their
paths (only a leading ``~`` is the node's home: ``copy.py``).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import weakref
from typing import Any, List, Optional, Sequence, Tuple

from .copy import pull_command, push_command
from .nodestate import RC_NOT_STARTED

EXIT = "exit"
UNREACHABLE = "unreachable"
HOSTKEY = "hostkey"

SSH_FAILED = 255  # ssh's own exit status: it could not connect, authenticate, or lost the link


class Command:
    """One slot's running process, seen by the engine.

    ``stdout`` and ``stderr`` are the read ends (``stderr`` is None when stderr goes to
    stdout), ``stdin`` the write end or None (stdin is /dev/null, or held open and never
    written: see ``SshBackend``), ``pidfd`` a descriptor readable once the process ended
    (None where ``os.pidfd_open`` is missing: the engine then polls). All are
    non-blocking and non-inheritable. The process leads its own process group, so
    ``kill`` reaches what it started too.

    ``mailbox``: None here. A command that is not a local process may have one (a
    ``Mailbox``) instead of ``stdout``, ``stderr`` and ``pidfd`` (then -1, None, None):
    the engine takes its output and its end from there (the ``Mailbox`` contract).

    ``wait`` comes after ``kill`` (or once the command ended) and returns once the
    command is over; a command that is not a local process may need a grace period for
    that, which it counts from its ``kill``: the engine kills every command it gives up
    before it waits for any, so they are waited for together.
    """

    __slots__ = ("proc", "stdout", "stderr", "stdin", "pidfd", "held", "rc")
    mailbox: Optional[Mailbox] = None

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stdout: int,
        stderr: Optional[int],
        stdin: Optional[int],
        held: Optional[int],
    ) -> None:
        self.proc = proc
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self.held = held  # a stdin write end kept open and never written (closed at the end)
        self.rc: Optional[int] = None
        try:
            self.pidfd: Optional[int] = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # no pidfd here (old kernel or not Linux)
            self.pidfd = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> Optional[int]:
        """The return code once the process ended (128+N if killed by signal N); None while
        it runs. The process is not reaped (``wait`` does that): while it is a zombie its
        pid stays its process group's id, so ``kill`` still reaches what it left running
        (a child holding the output open) and never a stranger that reused the pid."""
        if self.rc is None:
            if self.proc.returncode is not None:  # (reaped already)
                rc = self.proc.returncode
                self.rc = 128 - rc if rc < 0 else rc
                return self.rc
            try:
                info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            except AttributeError:  # no waitid here: reap (the pid may then be reused)
                rc = self.proc.poll()
                if rc is not None:
                    self.rc = 128 - rc if rc < 0 else rc
                return self.rc
            if info is not None and info.si_pid:
                exited = info.si_code == os.CLD_EXITED
                self.rc = info.si_status if exited else 128 + info.si_status
        return self.rc

    def reap(self) -> bool:
        """Reap the process if it ended; True once reaped."""
        return self.proc.poll() is not None

    def kill(self) -> None:
        """SIGKILL the process group (ssh and any ProxyCommand; the local command and its
        children). Safe to call twice; the process must still be reaped (``wait``)."""
        if self.proc.returncode is None:  # not reaped, so the pid (= pgid) is still ours
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def wait(self) -> None:
        """Reap the process, blocking (after ``kill``, or once it ended)."""
        self.proc.wait()

    def close_stdin(self) -> None:
        if self.stdin is not None:
            close_fd(self.stdin)
            self.stdin = None

    def close(self) -> None:
        """Close every descriptor the engine holds for this process."""
        self.close_stdin()
        for fd in (self.stdout, self.stderr, self.pidfd, self.held):
            if fd is not None and fd >= 0:
                close_fd(fd)
        self.stdout = -1
        self.stderr = self.pidfd = self.held = None


class Mailbox:
    """Output and ends of commands, posted by other threads and taken by the engine.

    ``post(cmd, sname, data)`` queues ``data`` of ``cmd``'s stream ``sname`` ("stdout" or
    "stderr"); ``post(cmd, None, b"")`` says ``cmd`` ended (its ``poll()`` gives the
    return code before that post, and nothing of it is posted after). Per command, items
    are taken in the order posted. ``fd`` becomes readable when there is something to
    take (with ``wake=False``, not before the poster calls ``wake()``, or posts with
    ``wake``, or waits for room); ``take()`` (the engine's thread) returns everything
    queued and clears it.
    Output waits (``post`` blocks) while more than ``limit`` bytes are queued and not
    taken, so a flood cannot outrun the engine; a command whose ``closed`` is true (the
    engine let go of it) posts nothing. ``close()`` releases the descriptors.
    """

    def __init__(self, limit: int = 4 << 20) -> None:
        self.limit = limit
        self.fd, self._wake = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._wake, False)
        self._items: List[Tuple[Any, Optional[str], bytes]] = []
        self._size = 0
        self._signalled = False  # a wake-up byte is on its way for the queued items
        self._closed = False
        self._room = threading.Condition(threading.Lock())
        # (a thread's mailbox is dropped with the thread: its descriptors go with it)
        self._release = weakref.finalize(self, close_fds, self.fd, self._wake)

    def post(self, cmd: Any, sname: Optional[str], data: bytes, wake: bool = True) -> None:
        with self._room:
            while sname is not None and self._size > self.limit:
                if cmd.closed or self._closed:
                    return
                self._signal()  # (a held wake-up would leave us waiting for ever)
                self._room.wait(0.1)  # (bounded: a closed command is seen soon)
            if cmd.closed or self._closed:
                return
            self._items.append((cmd, sname, data))
            self._size += len(data)
            if wake:
                self._signal()

    def wake(self) -> None:
        """Make ``fd`` readable if there is something to take (after posts with
        ``wake=False``: a poster that has more coming wakes the engine once for all)."""
        with self._room:
            if self._items:
                self._signal()

    def _signal(self) -> None:
        if not self._signalled and not self._closed:  # (one byte per batch)
            self._signalled = True
            try:
                os.write(self._wake, b"x")
            except OSError:  # (full of stale bytes: a wake-up is due anyway)
                pass

    def take(self) -> List[Tuple[Any, Optional[str], bytes]]:
        try:  # (before the swap: a post after it writes a new byte)
            os.read(self.fd, 4096)
        except OSError:
            pass
        with self._room:
            items, self._items = self._items, []
            self._signalled = False
            if self._size > self.limit:
                self._room.notify_all()
            self._size = 0
        return items

    def close(self) -> None:
        with self._room:  # (no post writes to a descriptor number reused meanwhile)
            if self._closed:
                return
            self._closed = True
            self._release()


def close_fds(*fds: int) -> None:
    """``close_fd`` each of ``fds``."""
    for fd in fds:
        close_fd(fd)


def close_fd(fd: int) -> None:
    """Close ``fd``, ignoring an error (it was closed already, or the peer went away)."""
    try:
        os.close(fd)
    except OSError:
        pass


def open_pipes(*wanted: bool) -> List[Optional[Tuple[int, int]]]:
    """A ``(read end, write end)`` pipe for each true ``wanted``, None for each false one,
    in order. On an error (out of descriptors) the pipes made so far are closed and the
    error raised: nothing leaks."""
    made: List[Optional[Tuple[int, int]]] = []
    try:
        for want in wanted:
            made.append(os.pipe() if want else None)
    except BaseException:
        close_pipes(made)
        raise
    return made


def close_pipes(pipes: Sequence[Optional[Tuple[int, int]]]) -> None:
    """Close both ends of every pipe of ``pipes`` (None entries skipped)."""
    for pipe in pipes:
        if pipe is not None:
            close_fd(pipe[0])
            close_fd(pipe[1])


def spawn(argv: Sequence[str], stdin: bool, stderr: bool, hold_stdin: bool = False) -> Command:
    """Start ``argv`` in a new session (its own process group) with pipes for the engine.

    ``stdin``: give it a pipe the engine writes; else ``hold_stdin`` gives it a pipe
    nobody writes (it sees EOF only when the engine closes it); else /dev/null.
    ``stderr``: a pipe of its own; else stderr goes to stdout. Raises OSError when the
    program cannot be started.
    """
    pipes = open_pipes(True, stderr, stdin or hold_stdin)
    out_r, out_w = pipes[0] or (-1, -1)  # (always made)
    err_r, err_w = pipes[1] or (None, None)
    in_r, in_w = pipes[2] or (None, None)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=in_r if in_r is not None else subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w if err_w is not None else subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    except BaseException:
        close_pipes(pipes)
        raise
    for child_end in (out_w, err_w, in_r):
        if child_end is not None:
            close_fd(child_end)
    for our_end in (out_r, err_r, in_w):
        if our_end is not None:
            os.set_blocking(our_end, False)
    if stdin:
        return Command(proc, out_r, err_r, in_w, None)
    return Command(proc, out_r, err_r, None, in_w)


class Backend:
    """How a slot's command is started and how its return code is read.

    ``start(node, rank, command, stdin, stderr)`` returns a running ``Command`` or raises
    OSError (the slot is then ``failed``); ``classify(rc, tail)`` names the outcome from
    the return code and the last bytes of the stream carrying stderr: ``"exit"`` (the
    command's own code), ``"unreachable"`` or ``"hostkey"``; the engine asks
    ``verdict(rc, tail, spoke)`` instead, ``spoke`` True once the command's stdout (apart
    from its stderr) sent a byte, which ``SshBackend`` takes as proof that the node was
    reached (by default, ``classify``). ``literal(command)`` is the
    text to give ``start`` so that ``command`` runs exactly as written (``copy`` and
    ``rcopy`` build their commands that way).
    """

    name = "backend"

    def start(self, node: str, rank: int, command: str, stdin: bool, stderr: bool) -> Command:
        raise NotImplementedError

    def classify(self, rc: int, tail: bytes) -> str:
        return EXIT

    def verdict(self, rc: int, tail: bytes, spoke: bool) -> str:
        """``classify``, knowing whether the command's own stdout sent something."""
        return self.classify(rc, tail)

    def literal(self, command: str) -> str:
        """``command`` as ``start`` must be given it to run it exactly as written (a
        backend that substitutes placeholders escapes its ``%``; others return it
        unchanged)."""
        return command

    def push_command(
        self, dest: str, name: str, size: int, mode: int, kind: str, preserve: bool, mtime: float
    ) -> str:
        """What ``start`` is given for a node to receive ``Task.copy``'s stream on stdin
        (default: ``copy.RECEIVER`` as a literal ``sh`` command; arguments as for
        ``copy.push_command``). A backend with a better way returns its own."""
        return self.literal(push_command(dest, name, size, mode, kind, preserve, mtime))

    def pull_command(self, source: str) -> str:
        """What ``start`` is given for a node to send ``source`` for ``Task.rcopy`` on
        stdout (a header line, then the data: ``copy.SENDER``'s stream)."""
        return self.literal(pull_command(source))


_PLACEHOLDER = re.compile(r"%(hosts|host|rank|h|n|%)")
_TEMPLATE_PLACEHOLDER = re.compile(r"%(hosts|host|rank|h|n|c|%)")
HOSTS_REFUSED = (
    "%hosts (ClusterShell's one command for the whole node set) is not offered: the "
    "command runs once per node; write %%hosts for a literal '%hosts'"
)


def uses_hosts(command: str) -> bool:
    """True if ``command`` has the ``%hosts`` placeholder, which ``substitute`` refuses
    (``HOSTS_REFUSED``): for a caller that wants to say so once, before any node runs."""
    return any(m.group(1) == "hosts" for m in _PLACEHOLDER.finditer(command))


def substitute(command: str, host: str, rank: int, inner: Optional[str] = None) -> str:
    """``command`` with ``%h``/``%host`` as the host (shell-quoted), ``%n``/``%rank`` as the
    0-based rank and ``%%`` as ``%``; when ``inner`` is given (a template), ``%c`` as
    ``inner`` shell-quoted. (Which backends apply it: the module docstring.)"""

    def one(m: re.Match[str]) -> str:
        what = m.group(1)
        if what == "hosts":  # (never "%host" then "s": ValueError, the node "failed")
            raise ValueError(HOSTS_REFUSED)
        if what in ("h", "host"):
            return shlex.quote(host)
        if what in ("n", "rank"):
            return str(rank)
        if what == "c":
            return shlex.quote(inner or "")
        return "%"

    pattern = _PLACEHOLDER if inner is None else _TEMPLATE_PLACEHOLDER
    return pattern.sub(one, command)


class ExecBackend(Backend):
    """A local command per node, run by ``shell -c`` after ``%h``/``%n`` substitution:
    ``docker exec %h uname -r``, ``kubectl exec %h -- ...``, or plain ``sh -c`` work
    per node. The command's return code is always its own (nothing is classified).

    ``template`` (optional) wraps every command: ``%c`` in it is the command (after its
    own substitution, shell-quoted), ``%h``/``%n``/``%%`` as in a command. So
    ``ExecBackend(template="docker exec -i %h sh -c %c")`` runs ``shell("uname -r")``
    in each container, and ``Task.copy`` and ``rcopy`` work through it (their commands
    are POSIX ``sh``, fed on stdin or read on stdout: keep ``-i`` for ``copy``)."""

    name = "exec"

    def __init__(self, shell: str = "/bin/sh", template: Optional[str] = None) -> None:
        self.shell = shell
        self.template = template

    def argv(self, node: str, rank: int, command: str) -> List[str]:
        text = substitute(command, node, rank)
        if self.template is not None:
            text = substitute(self.template, node, rank, text)
        return [self.shell, "-c", text]

    def literal(self, command: str) -> str:
        """``command`` escaped so that it runs as written (no ``%h`` substitution)."""
        return command.replace("%", "%%")

    def start(self, node: str, rank: int, command: str, stdin: bool, stderr: bool) -> Command:
        return spawn(self.argv(node, rank, command), stdin, stderr)


def failed_message(error: BaseException) -> bytes:
    """The error buffer of a slot whose command could not be started."""
    return f"cannot start the command here: {error} (rc {RC_NOT_STARTED})\n".encode()
