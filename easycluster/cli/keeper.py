"""``easycluster shell --keep``: RPC sessions kept open between invocations, the way
OpenSSH's ControlMaster/ControlPersist keeps connections.

The first ``easycluster shell --keep ...`` starts a *keeper* (``keeperd.py``): a
background process that owns the RPC backend (one session to our server per node) and
listens on a Unix socket. Every ``--keep`` invocation, the first included, is a thin
client: it hands the keeper its arguments, working directory, whole environment, umask
and its own stdin, stdout and stderr (the descriptors themselves, ``SCM_RIGHTS``), and
exits with the code the keeper sends back. The keeper runs the command as ``easycluster
shell`` would, on the sessions it keeps, so a second command costs round trips, not ssh
starts. Ctrl-C, SIGTERM and SIGHUP in the client are passed on (the keeper's run is
interrupted as a terminal's would be, with the same exit code); a client that goes away
interrupts its run as SIGHUP would.

One keeper per set of connection options (``-l``, ``-o``, ``-t``, ``ssh_path``) and of
what the sessions' ssh takes from the environment (the ``ssh`` that ``PATH`` finds,
``HOME``, ``SSH_AUTH_SOCK``): the socket name is a hash of them, in
``$XDG_RUNTIME_DIR/easycluster`` (else ``/tmp/easycluster-UID``), a directory that must be
ours and mode 0700; the keeper checks each peer's uid (``SO_PEERCRED``) and the client
the keeper's. It runs one request at a time (a later one waits, and its client says so)
and ends after ``--keep SECONDS`` (the latest request's) without a request (600 by
default), or on ``--keep-exit``, closing every session. SIGTERM or SIGHUP sent to the
keeper itself ends it too: its running command is interrupted as that signal would
interrupt it (exit 128 + N), and a waiting command's client says that the keeper was
ended, exiting 128 + N as well (it does not start a new keeper).
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import signal
import socket
import stat
import struct
import sys
import time
from typing import Dict, List, Optional, Sequence

from ..errors import ConfigError, ConnectError
from .exitcodes import Terminated
from .keeperd import (
    DONE,
    ENDED,
    GAVE_UP,
    MESSAGE,
    QUEUED,
    REQUEST_MAX,
    RUNNING,
    SIZE,
    START_WAIT,
    VERSION,
    Runner,
    start_keeper,
)

PERSIST = 600.0  # seconds a keeper waits for the next request before it ends
PROG = "easycluster shell"
_SIGNAL_BYTES: Dict[int, bytes] = {signal.SIGTERM: b"T", signal.SIGHUP: b"H"}  # (else I)


def socket_dir() -> str:
    """The directory of our sockets, made (mode 0700) if missing; ConfigError if it is
    not ours or others may enter it."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = os.path.join(base, "easycluster") if base else f"/tmp/easycluster-{os.getuid()}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:  # (XDG_RUNTIME_DIR naming a directory that is not there, say)
        raise ConfigError(
            f"cannot make {path} for --keep: {e.strerror or e} (check XDG_RUNTIME_DIR)"
        ) from None
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not stat.S_ISDIR(st.st_mode):
        fix = (
            "remove it, or set XDG_RUNTIME_DIR to a directory of yours that only you may "
            "enter (--keep uses its easycluster/)"
        )
        if st.st_uid != os.getuid():
            fix = (
                f"it belongs to uid {st.st_uid}: ask them or root to remove it, or set "
                "XDG_RUNTIME_DIR to a directory of yours that only you may enter "
                "(--keep uses its easycluster/)"
            )
        raise ConfigError(
            f"{path} must be a directory of yours that only you may enter (mode 0700) "
            f"for --keep: {fix}"
        )
    return path


def socket_path(options: Sequence[str]) -> str:
    """The keeper socket for these connection options."""
    key = json.dumps([VERSION, *options]).encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    return os.path.join(socket_dir(), f"shell-{digest}.sock")


# -- the client side --------------------------------------------------------------------


class _NotTaken(Exception):
    """The keeper closed the connection before it ran the request (it was ending)."""


def run_kept(
    argv: List[str],
    options: Sequence[str],
    persist: float,
    serve: Runner,
    wait_limit: Optional[float] = None,
) -> int:
    """Run ``easycluster shell argv`` through the keeper for ``options`` (started now,
    running ``serve`` for each request, if none answers); return its exit code. The
    keeper's idle time becomes ``persist``. ``wait_limit``: seconds this request may
    wait behind others before it gives up (exit 251, as a timeout)."""
    path = socket_path(options)
    for attempt in range(3):
        sock = _connect(path)
        if sock is None:
            start_keeper(path, persist, serve)
            sock = _connect_when_up(path)
        with sock:
            try:
                return _request(sock, _head(argv, persist), wait_limit)
            except _NotTaken:
                time.sleep(0.05 * (attempt + 1))  # (the keeper was ending: start anew)
    raise ConnectError(f"the session keeper on {path} kept closing before it took the command")


def stop_keeper(options: Sequence[str]) -> bool:
    """Ask the keeper for ``options`` to end (closing its sessions); False if none ran."""
    sock = _connect(socket_path(options))
    if sock is None:
        return False
    with sock:
        try:
            _request(sock, _head(None, None), None)
        except _NotTaken:
            pass  # (it was ending anyway)
    return True


def _head(argv: Optional[List[str]], persist: Optional[float]) -> Dict[str, object]:
    try:
        cwd = os.getcwd()
    except FileNotFoundError:  # (the request runs in our directory: there is none)
        raise ConfigError(
            "--keep: the current directory no longer exists; cd to one (or run without --keep)"
        ) from None
    umask = os.umask(0o77)
    os.umask(umask)
    return {
        "argv": argv,
        "cwd": cwd,
        "env": dict(os.environ),
        "umask": umask,
        "persist": persist,
    }


def _connect(path: str) -> Optional[socket.socket]:
    """A connection to the keeper on ``path``, or None if none listens there. Refuses
    (ConfigError) a socket, or a peer, of another uid."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if st.st_uid != os.getuid() or not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{path} is not a socket of yours: remove it to use --keep")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] != os.getuid():
            raise ConfigError(f"{path}: the process listening there is not yours")
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


def _request(sock: socket.socket, head: Dict[str, object], wait_limit: Optional[float]) -> int:
    """Send one request (``argv`` None: end the keeper) with our descriptors 0, 1, 2;
    pass Ctrl-C, SIGTERM and SIGHUP on; say so while it waits behind another command
    (and give up after ``wait_limit`` seconds of that); return the exit code the keeper
    sends. _NotTaken if the keeper closed before it ran the request."""
    data = json.dumps(head).encode()
    if len(data) > REQUEST_MAX:  # (the keeper would drop it unanswered: say why here)
        raise ConfigError(
            f"--keep: this environment is too large to hand to the keeper ({len(data) >> 20} "
            f"MiB as JSON, at most {REQUEST_MAX >> 20}); run without --keep"
        )
    fds = array.array("i", [0, 1, 2])
    sys.stdout.flush()
    sys.stderr.flush()
    sock.sendmsg([SIZE.pack(len(data)), data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    sent = time.monotonic()
    started = False
    got = b""
    while True:
        try:
            more = sock.recv(MESSAGE.size - len(got))
        except socket.timeout:  # (-u passed while waiting: the keeper drops the request)
            sock.settimeout(None)
            _tell(sock, GAVE_UP)
            print(f"{PROG}: gave up waiting for the kept session after -u", file=sys.stderr)
            continue
        except KeyboardInterrupt as e:  # passed on; the keeper reports what finished
            signum = e.signum if isinstance(e, Terminated) else int(signal.SIGINT)
            _tell(sock, _SIGNAL_BYTES.get(signum, b"I"))
            continue
        if not more:
            if not started:
                raise _NotTaken()
            raise ConnectError("the session keeper ended before it answered")
        got += more
        if len(got) < MESSAGE.size:
            continue
        kind, value = MESSAGE.unpack(got)
        got = b""
        if kind == DONE:
            return int(value)
        if kind == ENDED:  # (a signal to the keeper itself: not retried in a new one)
            print(
                f"{PROG}: the session keeper was ended by {_signal_name(value)} before it "
                "ran the command",
                file=sys.stderr,
            )
            return 128 + value
        if kind == RUNNING:
            started = True
            sock.settimeout(None)
        elif kind == QUEUED:
            print(
                f"{PROG}: waiting for the kept session: another command is running (pid {value})",
                file=sys.stderr,
            )
            if wait_limit:
                sock.settimeout(max(0.001, sent + wait_limit - time.monotonic()))


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _tell(sock: socket.socket, byte: bytes) -> None:
    try:
        sock.sendall(byte)
    except OSError:
        pass  # (the keeper is gone: the next read says so)
