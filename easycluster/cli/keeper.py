"""``easycluster shell --keep``: RPC sessions kept open between invocations, the way
OpenSSH's ControlMaster/ControlPersist keeps connections.

The first ``easycluster shell --keep ...`` starts a *keeper*: a background process that
owns the RPC backend (one session to our server per node) and listens on a Unix socket.
Every ``--keep`` invocation, the first included, is a thin client: it hands the keeper
its arguments, working directory, a few environment variables and its own stdin,
stdout and stderr (the descriptors themselves, ``SCM_RIGHTS``), and exits with the code
the keeper sends back. The keeper runs the command as ``easycluster shell`` would, on
the sessions it keeps, so a second command costs round trips, not ssh starts. Ctrl-C in
the client is passed on (the keeper's run is interrupted as a terminal's would be).

One keeper per set of connection options (``-l``, ``-o``, ``-t``, ``ssh_path``): the socket
name is a hash of them, in ``$XDG_RUNTIME_DIR/easycluster`` (else ``/tmp/easycluster-UID``), a
directory that must be ours and mode 0700; the keeper also checks each peer's uid
(``SO_PEERCRED``). It runs one request at a time and ends after ``--keep SECONDS``
without a request (600 by default), or on ``--keep-exit``, closing every session.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import ConnectError
from .exitcodes import UsageError

PERSIST = 600.0  # seconds a keeper waits for the next request before it ends
ENV_PASSED = ("NO_COLOR", "TERM", "COLUMNS", "SLURM_JOB_ID", "SLURM_JOB_NODELIST")
START_WAIT = 10.0  # seconds a client waits for a keeper it started to listen
_CODE = struct.Struct(">i")
INTERRUPT = b"I"

Runner = Callable[[List[str]], int]  # runs `easycluster shell ARGS` in the keeper


def socket_dir() -> str:
    """The directory of our sockets, made (mode 0700) if missing; UsageError if it is
    not ours or others may enter it."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = os.path.join(base, "easycluster") if base else f"/tmp/easycluster-{os.getuid()}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:  # (XDG_RUNTIME_DIR naming a directory that is not there, say)
        raise UsageError(
            f"cannot make {path} for --keep: {e.strerror or e} (check XDG_RUNTIME_DIR)"
        ) from None
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not os.path.isdir(path):
        raise UsageError(
            f"{path} must be a directory of yours that only you may enter (mode 0700): "
            "fix or remove it to use --keep"
        )
    return path


def socket_path(options: Sequence[str]) -> str:
    """The keeper socket for these connection options."""
    digest = hashlib.sha256(json.dumps(list(options)).encode()).hexdigest()[:16]
    return os.path.join(socket_dir(), f"shell-{digest}.sock")


# -- the client side --------------------------------------------------------------------


def run_kept(argv: List[str], options: Sequence[str], persist: float, serve: Runner) -> int:
    """Run ``easycluster shell argv`` through the keeper for ``options`` (started now,
    running ``serve`` for each request, if none answers); return its exit code."""
    path = socket_path(options)
    sock = _connect(path)
    if sock is None:
        _start_keeper(path, persist, serve)
        sock = _connect_when_up(path)
    with sock:
        return _request(sock, argv)


def stop_keeper(options: Sequence[str]) -> bool:
    """Ask the keeper for ``options`` to end (closing its sessions); False if none ran."""
    sock = _connect(socket_path(options))
    if sock is None:
        return False
    with sock:
        _request(sock, None)
    return True


def _connect(path: str) -> Optional[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        return sock
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except BaseException:
        sock.close()
        raise


def _connect_when_up(path: str) -> socket.socket:
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        sock = _connect(path)
        if sock is not None:
            return sock
        time.sleep(0.01)
    raise ConnectError(f"the session keeper did not start listening on {path}")


def _request(sock: socket.socket, argv: Optional[List[str]]) -> int:
    """Send one request (None: end the keeper) with our descriptors 0, 1, 2; pass a
    Ctrl-C on; return the exit code the keeper sends."""
    head = {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": {k: os.environ[k] for k in ENV_PASSED if k in os.environ},
    }
    data = json.dumps(head).encode()
    fds = array.array("i", [0, 1, 2])
    sys.stdout.flush()
    sys.stderr.flush()
    sock.sendmsg(
        [_CODE.pack(len(data)), data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())]
    )
    got = b""
    while len(got) < _CODE.size:
        try:
            more = sock.recv(_CODE.size - len(got))
        except KeyboardInterrupt:  # passed on; the keeper reports what finished
            sock.sendall(INTERRUPT)
            continue
        if not more:
            raise ConnectError("the session keeper ended before it answered")
        got += more
    code: int = _CODE.unpack(got)[0]
    return code


# -- the keeper -------------------------------------------------------------------------


def _start_keeper(path: str, persist: float, serve: Runner) -> None:
    """Fork the keeper (detached: its own session, no terminal, stdio on /dev/null)."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # (the middle process exits at once; the keeper is orphaned)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        keep(path, persist, serve)
    finally:
        os._exit(0)


def keep(path: str, persist: float, serve: Runner) -> None:
    """Serve requests on ``path`` one at a time until ``persist`` seconds pass without
    one, or a request asks to end."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            listener.bind(path)
        except OSError:  # a stale socket (its keeper died) or another keeper won the race
            if _connect(path) is not None:
                return
            os.unlink(path)
            listener.bind(path)
        listener.listen(8)
        listener.settimeout(persist)
        while True:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                return
            with conn:
                if not _serve_one(conn, serve):
                    return
    finally:
        listener.close()
        try:
            if os.stat(path).st_ino and _is_ours(path):
                os.unlink(path)
        except OSError:
            pass


def _is_ours(path: str) -> bool:
    return os.stat(path).st_uid == os.getuid()


def _serve_one(conn: socket.socket, serve: Runner) -> bool:
    """One request; False when it asked the keeper to end."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    if uid != os.getuid():
        return True  # (not ours: dropped unanswered)
    msg, fds = _receive(conn)
    try:
        if msg["argv"] is None:
            conn.sendall(_CODE.pack(0))
            return False
        code = _run_with(msg, fds, serve, conn)
        conn.sendall(_CODE.pack(code))
        return True
    finally:
        for fd in fds:
            os.close(fd)


def _receive(conn: socket.socket) -> Any:
    head, ancdata, _, _ = conn.recvmsg(_CODE.size, socket.CMSG_SPACE(3 * 4))
    fds: List[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array("i", data[: len(data) - len(data) % 4]).tolist()
    (size,) = _CODE.unpack(head)
    body = b""
    while len(body) < size:
        more = conn.recv(size - len(body))
        if not more:
            break
        body += more
    return json.loads(body), fds


def _run_with(msg: Dict[str, Any], fds: List[int], serve: Runner, conn: socket.socket) -> int:
    """Run the request with the client's descriptors as stdin/stdout/stderr, its working
    directory and environment variables; a Ctrl-C from it interrupts the run."""
    saved_fds = [os.dup(fd) for fd in (0, 1, 2)]
    saved_env = {k: os.environ.get(k) for k in ENV_PASSED}
    cwd = os.getcwd()
    done = threading.Event()
    watcher = threading.Thread(target=_watch_interrupts, args=(conn, done), daemon=True)
    try:
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        for k in ENV_PASSED:
            os.environ.pop(k, None)
        os.environ.update(msg.get("env", {}))
        os.chdir(msg["cwd"])
        watcher.start()
        try:
            return serve(list(msg["argv"]))
        except KeyboardInterrupt:
            return 130
    finally:
        done.set()
        sys.stdout.flush()
        sys.stderr.flush()
        for target, fd in zip((0, 1, 2), saved_fds):
            os.dup2(fd, target)
            os.close(fd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.chdir(cwd)


def _watch_interrupts(conn: socket.socket, done: threading.Event) -> None:
    """Turn an interrupt byte from the client into KeyboardInterrupt in the run."""
    conn.settimeout(0.2)
    while not done.is_set():
        try:
            data = conn.recv(1)
        except socket.timeout:
            continue
        except OSError:
            return
        if not data:
            return
        if data == INTERRUPT and not done.is_set():
            os.kill(os.getpid(), signal.SIGINT)
