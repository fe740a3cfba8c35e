"""Test helpers: real server processes on port 0, with their log lines captured."""

from __future__ import annotations

import io
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import List, Optional, Tuple

import easycluster
from easycluster.protocol import frames, handshake
from easycluster.server import spawn_local

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerProcess:
    """``easycluster -S ...`` in a subprocess; ``port`` is read from its first log line.

    A context manager: ``with ServerProcess(...) as srv:`` stops it however the test
    ends. ``stop()`` also waits for the log reader, which closes the stderr pipe."""

    def __init__(self, *args: str, env: Optional[dict] = None):
        self._start([sys.executable, "-m", "easycluster", "-S", "-p", "0", *args], env)

    def _start(self, argv: List[str], env: Optional[dict]) -> None:
        """Run ``argv``, collect its stderr lines, wait for "serving on"; stopped again
        if it never gets there."""
        self.proc = subprocess.Popen(
            argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: List[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        try:
            line = self.wait_for(r"serving on", timeout=20)
        except BaseException:
            self.stop()
            raise
        self.port = int(line.rsplit(":", 1)[1].split()[0])

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr as stream:  # closed at end of stream, by the one reading it
            for line in stream:
                self.log.append(line)
                self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 10) -> str:
        """Return the next log line matching ``pattern``; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no log line matching {pattern!r}; log: {self.log}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if re.search(pattern, line):
                return line

    def stop(self) -> int:
        """SIGTERM (SIGKILL after 10 s), reap, and wait for the end of its log; return
        the exit code. Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The pipe ends when every process holding it has (connection processes too).
        self._reader.join(10)
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_fresh(code: str, timeout: float = 60) -> str:
    """Run ``code`` (dedented) in a new interpreter, from this directory (so it can import
    ``helpers``): what a fresh process loads is what such tests look at. Its stdout; the
    test fails with its stderr if it exits non-zero."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def wait_until(cond, timeout: float = 10, interval: float = 0.02) -> bool:
    """Poll ``cond()`` until true or ``timeout``; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


def in_threads(work, n: int, timeout: float = 60) -> None:
    """Run ``work(i)`` on ``n`` threads at once; raise the first error any of them
    raised, or AssertionError if one is still running after ``timeout``."""
    errors: list = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as e:  # noqa: BLE001 (raised below, on the test's thread)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), f"a thread still runs after {timeout} s"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def live_children() -> set:
    """This process's live child pids (every thread's children)."""
    out = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                out.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return {p for p in out if pid_alive(p)}


def session_pair(
    ckey: bytes = b"k" * 32,
    skey: bytes = b"k" * 32,
    copts: handshake.WireOptions = handshake.WireOptions(),
    sopts: handshake.WireOptions = handshake.WireOptions(),
) -> Tuple[frames.Session, frames.Session]:
    """Run a full handshake in memory; return (client session, server session)."""
    server = handshake.ServerHandshake(skey, sopts)
    client = handshake.ClientHandshake(ckey, copts)
    reply, ssession = server.receive(client.receive_hello(server.hello))
    assert ssession is not None, server.failure
    return client.receive_accept(reply), ssession


def connect(transport, request, **kw):
    """A client over ``transport`` ("local", "tcp" or "ssh"), using the session's
    fixtures through ``request`` (the ``rmt`` fixture's connection, for tests that need
    more than one). Imported from here, never from ``conftest``: another folder's
    conftest module may hold that name."""
    if transport == "local":
        return spawn_local(**kw)
    if transport == "tcp":
        srv = request.getfixturevalue("tcp_server")
        k = request.getfixturevalue("key")
        return easycluster.Client(k, "127.0.0.1", srv.port, **kw)
    if transport == "ssh":  # this venv's Python as the remote one: the tests use numpy
        cls = kw.pop("clientclass", None) or easycluster.Client
        return cls(**request.getfixturevalue("sshd").client_kw(rpython=sys.executable), **kw)
    raise ValueError(transport)


# ``easycluster shell`` as a subprocess, and in-process with its streams captured.
SHELL = [sys.executable, "-m", "easycluster", "shell"]


def run_shell(argv, capfdbinary, monkeypatch):
    """``easycluster shell`` ``main(argv)`` in-process: (exit code, stdout, stderr) as text."""
    from easycluster.cli.shell import main

    monkeypatch.setenv("NO_COLOR", "1")
    code = main(argv)
    out, err = capfdbinary.readouterr()
    return code, out.decode(), err.decode()


def ctrl_c(proc: subprocess.Popen, ready) -> Tuple[bytes, bytes]:
    """A terminal's Ctrl-C to ``proc`` (started with ``start_new_session=True``, pipes on
    stdout and stderr): once ``ready()`` returns (it may read ``proc.stdout``), SIGINT
    to its process group, then its remaining (stdout, stderr). Whatever happens, the
    group is SIGKILLed and reaped if it is still there."""
    try:
        ready()
        os.killpg(proc.pid, signal.SIGINT)
        return proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def run_main(main, argv, capsys, monkeypatch, stdin=""):
    """A command's ``main(argv)`` in-process with ``stdin`` as its standard input:
    (exit code, stdout, stderr) as text."""
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def cmdline(pid: int) -> bytes:
    """Process ``pid``'s command line (NUL-separated words), b"" once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def tree(root) -> List[str]:
    """Every path under ``root``, relative, sorted (``/`` after directories)."""
    out = []
    for base, dirs, files in os.walk(root):
        rel = os.path.relpath(base, root)
        out += [os.path.normpath(os.path.join(rel, d)) + "/" for d in dirs]
        out += [os.path.normpath(os.path.join(rel, f)) for f in files]
    return sorted(out)


FARM_SUMMARY = re.compile(r"(\d+) jobs: (\d+) done.*?, (\d+) failed, (\d+) not run")


def farm_run(capfd, *argv: str, stdin: str = ""):
    """``easycluster farm -R local --no-status ARGV`` in this process: (rc, out, err)."""
    from easycluster.cli import farm

    rc = farm.main(["-R", "local", "--no-status", *argv], stdin=io.StringIO(stdin))
    out, err = capfd.readouterr()
    return rc, out, err


def added_up(err: str, total: int) -> tuple:
    """The farm summary's (done, failed, not run), checked to add up to ``total``."""
    m = FARM_SUMMARY.search(err)
    assert m, err
    t, done, failed, not_run = map(int, m.groups())
    assert t == total and done + failed + not_run == total, err
    return done, failed, not_run


OTHER_MAGIC = b"\x00\x01\r\n"  # a bytecode magic number no Python has


def other_magic_python(folder) -> str:
    """A stand-in for a remote Python of another bytecode version (this machine may have
    none): this interpreter, reporting ``OTHER_MAGIC``, run as ``PY -c CODE`` as stage 0
    runs it. Returns its path (a script in ``folder``)."""
    path = os.path.join(str(folder), "otherpython")
    with open(path, "w") as f:
        f.write(
            "#!/bin/sh\n"
            f"exec {sys.executable} -c 'import sys, _frozen_importlib_external as b\n"
            'b.MAGIC_NUMBER = b"\\x00\\x01\\r\\n"\n'  # (OTHER_MAGIC, in the shell's quotes)
            "code = sys.argv[1]\n"
            'sys.argv = ["-c"]\n'
            'exec(code)\' "$2"\n'
        )
    os.chmod(path, 0o755)
    return path
