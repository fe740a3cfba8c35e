"""The keeper process of ``easycluster shell --keep`` (``keeper.py`` is its client).

Wire, over the keeper's Unix socket (both ends in this package, same version: the socket
name includes ``VERSION``):

- client to keeper, once: a big-endian int32 size, then that many bytes of JSON
  ``{"argv": [...] or null (end the keeper), "cwd", "env": {...}, "umask", "persist"}``,
  with the client's descriptors 0, 1, 2 attached (``SCM_RIGHTS``); then any number of
  single bytes: ``I`` Ctrl-C, ``T`` SIGTERM, ``H`` SIGHUP, ``U`` gave up waiting
  (``-u``). End of file (the client is gone) counts as SIGHUP.
- keeper to client, 5 bytes each: a kind and an int32: ``Q pid`` queued behind the
  command of client ``pid``; ``R 0`` running; ``C code`` done, exit ``code``; ``E N``
  not run: signal ``N`` ended the keeper. A connection closed before ``R`` means the
  request was not run (the client may retry: the keeper was ending).

One request runs at a time, in the main thread: it makes the client's descriptors its
0/1/2 and takes the client's working directory, environment and umask, all of which
belong to the whole process (``keeperrun.py``). A thread per connection reads the
request (a peer of another uid, a malformed request, or one not whole within
``REQUEST_WAIT`` seconds, is dropped; nothing a client does can end the keeper), queues
it, then watches the connection: an interrupt byte, or the end of the connection,
becomes the matching signal in the running request (``Terminated``, or
``KeyboardInterrupt`` for Ctrl-C), and drops a queued one unrun.

SIGTERM or SIGHUP to the keeper itself (``kill KEEPER``: a logout script, an admin) ends
it: the running request is interrupted as that signal interrupts a command without
``--keep`` (answered ``C 128+N``), queued ones are answered ``E N``, and the keeper
exits as after its idle time (sessions closed, socket and lock file removed).

Request states (each change under the keeper's lock):

========== ============================== ==========
state      event                          next
========== ============================== ==========
queued     main thread takes it           running
queued     interrupt, U or end of file    dropped (answered C 130/128+N/251, or not at all)
queued     keeper ends                    dropped (closed unanswered: not run)
queued     SIGTERM/SIGHUP ends the keeper dropped (answered E N: not run)
running    interrupt or end of file       running (the signal raised in the run)
running    SIGTERM/SIGHUP to the keeper   running (the signal raised; the keeper ends)
running    run returns                    done (answered C code)
========== ============================== ==========
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import struct
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

from ..cluster.summary import EXIT_TIMEOUT
from .exitcodes import FAILURE, Terminated, exit_code
from .keeperlock import remove_files, take_lock
from .keeperrun import run_as_client

VERSION = "3"  # of the wire above: part of the socket's name
START_WAIT = 10.0  # seconds a client waits for a keeper it started to listen
REQUEST_WAIT = 10.0  # seconds a connection may take to send its whole request
# bytes of a request's JSON: an environment is at most a few MB, but JSON writes a
# control character as 6 bytes (an 8 MiB bound refused a legal 1.6 MB environment)
REQUEST_MAX = 64 << 20
SIZE = struct.Struct(">i")
MESSAGE = struct.Struct(">ci")
INTERRUPTS = {b"I": signal.SIGINT, b"T": signal.SIGTERM, b"H": signal.SIGHUP}
GAVE_UP = b"U"
QUEUED, RUNNING, DONE, ENDED = b"Q", b"R", b"C", b"E"

Runner = Callable[[List[str]], int]  # runs `easycluster shell ARGS` in the keeper


def start_keeper(path: str, persist: float, serve: Runner) -> None:
    """Fork the keeper, detached as a daemon: its own session, no terminal, stdio on
    /dev/null, no other descriptor of ours, working directory /."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # (the middle process exits at once; the keeper is orphaned)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if null > 2:
            os.close(null)
        _close_descriptors_above_2()
        for sig in (signal.SIGTERM, signal.SIGHUP):  # (not the client's run's handlers)
            signal.signal(sig, signal.SIG_DFL)
        keep(path, persist, serve)
    finally:
        os._exit(0)


def _close_descriptors_above_2() -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(3, 65536)
        return
    for fd in fds:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass  # (the listing's own descriptor, closed already)


def keep(path: str, persist: float, serve: Runner) -> None:
    """Serve requests on ``path`` until ``persist`` seconds (the latest request's) pass
    without one, or a request asks to end. Only the holder of ``path``'s lock file binds
    or removes ``path``: a keeper that finds another one alive returns at once."""
    lock = take_lock(path, START_WAIT)
    if lock is None:
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    keeper: Optional[Keeper] = None
    bound = None
    stopper: Optional[Request] = None
    try:
        try:
            os.unlink(path)  # (a stale socket: its keeper, who held the lock, is gone)
        except FileNotFoundError:
            pass
        listener.bind(path)
        bound = os.lstat(path).st_ino
        listener.listen(64)
        keeper = Keeper(listener, persist)
        signal.signal(signal.SIGINT, keeper.on_sigint)
        for sig in (signal.SIGTERM, signal.SIGHUP):  # (the run's terminate_as_interrupt
            signal.signal(sig, keeper.on_terminate)  # leaves a handler that is not SIG_DFL)
        threading.Thread(target=keeper.accept_all, daemon=True).start()
        while True:
            request = keeper.next_request()
            if request is None:
                return
            if request.head["argv"] is None:
                stopper = request
                return
            keeper.run(request, serve)
    finally:
        if keeper is not None:
            keeper.close()
        remove_files(path, bound, lock)
        try:
            listener.shutdown(socket.SHUT_RDWR)  # (wakes the accepting thread)
        except OSError:
            pass
        listener.close()
        if stopper is not None and keeper is not None:  # (answered once the socket is gone)
            with keeper.cond:
                stopper.state = "done"
            _answer(stopper, 0)
        os.close(lock)


class Request:
    """One client's request, from its arrival to its answer (states: module docstring)."""

    def __init__(self, conn: socket.socket, pid: int, head: Dict[str, Any], fds: List[int]):
        self.conn = conn
        self.pid = pid
        self.head = head
        self.fds = fds
        self.state = "queued"
        self.signals: List[int] = []  # interrupts not yet raised in the run
        self.live = False  # the run is inside `serve`: an interrupt may be raised


class Keeper:
    """The queue of requests, the threads that fill it, and the run of each."""

    def __init__(self, listener: socket.socket, persist: float) -> None:
        self.listener = listener
        self.persist = persist
        self.cond = threading.Condition()
        self.queue: List[Request] = []
        self.running: Optional[Request] = None
        self.reading = 0  # connections whose request is still being read
        self.closing = False
        self.ending = 0  # the signal (SIGTERM, SIGHUP) that ends the keeper, once sent
        self.last = time.monotonic()
        self.main = threading.get_ident()

    # -- the threads: accept, read a request, watch its connection -------------------

    def accept_all(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                if self.closing:
                    return
                time.sleep(0.1)  # (out of descriptors, say: try again)
                continue
            with self.cond:
                if self.closing:
                    conn.close()  # (not taken: the client starts a new keeper)
                    continue
                self.reading += 1
            threading.Thread(target=self.connection, args=(conn,), daemon=True).start()

    def connection(self, conn: socket.socket) -> None:
        request = None
        try:
            request = _receive(conn)
        except Exception:  # (whatever a client sent: it is dropped, the keeper lives)
            request = None
        finally:
            with self.cond:
                self.reading -= 1
                if request is not None and self.closing:
                    self.turn_away(request)
                    request = None
                if request is not None:
                    ahead = self.running or (self.queue[0] if self.queue else None)
                    self.queue.append(request)
                    if request.head.get("persist"):
                        self.persist = float(request.head["persist"])
                    if ahead is not None:
                        _send(request, QUEUED, ahead.pid)
                self.cond.notify_all()
        if request is not None:
            self.watch(request)

    def watch(self, request: Request) -> None:
        """Until the request is done: an interrupt byte or the end of the connection
        interrupts its run, or drops it while queued."""
        conn = request.conn
        while True:
            try:
                data = conn.recv(1)
            except OSError:
                data = b""
            signum = INTERRUPTS.get(data, signal.SIGHUP if not data else 0)
            with self.cond:
                if request.state != "queued" and request.state != "running":
                    return
                if request.state == "running":
                    if signum:
                        request.signals.append(signum)
                        signal.pthread_kill(self.main, signal.SIGINT)
                    if not data:
                        return  # (the client is gone: nothing more will come)
                    continue
                if not data or signum or data == GAVE_UP:
                    self.queue.remove(request)
                    request.state = "dropped"
                    self.cond.notify_all()
                else:
                    continue  # (a stray byte from a queued client)
            if data:  # (the client is still there: tell it why its command did not run)
                code = EXIT_TIMEOUT if data == GAVE_UP else _code_for(signum)
                _send(request, DONE, code)
            _drop(request)
            return

    # -- the main thread ------------------------------------------------------------

    def next_request(self) -> Optional[Request]:
        """The next request to run, or None: the idle time passed (the keeper ends)."""
        with self.cond:
            while True:
                if self.ending:  # (before the queue: what waits is turned away)
                    self.closing = True
                    return None
                if self.queue:
                    request = self.queue.pop(0)
                    request.state = "running"
                    self.running = request
                    return request
                idle = self.last + self.persist - time.monotonic()
                if idle <= 0 and not self.reading:
                    self.closing = True
                    return None
                self.cond.wait(max(idle, 0.05))

    def run(self, request: Request, serve: Runner) -> None:
        _send(request, RUNNING, 0)
        try:
            code = run_as_client(request.head, request.fds, lambda: _guarded(request, serve))
        except Exception:  # (setting up the client's process state failed: not its run)
            code = FAILURE
        with self.cond:
            request.state = "done"
            self.running = None
            self.last = time.monotonic()
        _answer(request, code)

    def on_sigint(self, signum: int, frame: Any) -> None:
        """SIGINT handler: raise in the run the interrupt a watcher queued (only while
        the run is inside ``serve``; a stray SIGINT is ignored)."""
        request = self.running
        if request is not None and request.live and request.signals:
            raise _exception_for(request.signals.pop(0))

    def on_terminate(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGHUP handler: the keeper ends. A request running now is interrupted
        as that signal interrupts a command (``Terminated``), or as it begins if it is
        not inside ``serve`` yet; the main thread ends the keeper once it returns. Only
        the first such signal counts (a second must not cut the run's clean-up short)."""
        if self.ending:
            return
        self.ending = signum
        request = self.running
        if request is not None:
            if request.live:
                raise Terminated(signum)
            request.signals.append(signum)  # (raised by _guarded if the run is to come)
        with self.cond:  # (wakes next_request; an RLock, so safe in the main thread)
            self.cond.notify_all()

    def close(self) -> None:
        """The keeper ends: no new request; queued ones are closed unrun (``turn_away``)."""
        with self.cond:
            self.closing = True
            dropped, self.queue = self.queue, []
            for request in dropped:
                request.state = "dropped"
        for request in dropped:
            self.turn_away(request)

    def turn_away(self, request: Request) -> None:
        """Close a request the ending keeper will not run: told so (``E N``) when a
        signal ends the keeper, unanswered otherwise (its client starts a new keeper)."""
        if self.ending:
            _send(request, ENDED, self.ending)
        _drop(request)


def _receive(conn: socket.socket) -> Optional[Request]:
    """Read one request; None (the connection closed) if it is not ours or not whole."""
    fds: List[int] = []
    taken = False
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _ = struct.unpack("3i", creds)
        if uid != os.getuid():
            return None  # (not ours: dropped unanswered)
        # (one deadline for the whole request: a per-recv timeout let a client that
        # trickles a byte at a time hold the keeper past its idle time)
        deadline = time.monotonic() + REQUEST_WAIT
        _wait_until(conn, deadline)
        got, ancdata, _, _ = conn.recvmsg(SIZE.size, socket.CMSG_SPACE(3 * 4))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += array.array("i", data[: len(data) - len(data) % 4]).tolist()
        got += _read(conn, SIZE.size - len(got), deadline)
        (size,) = SIZE.unpack(got)
        if not 0 < size <= REQUEST_MAX or len(fds) != 3:
            raise ValueError("a malformed request")
        head = json.loads(_read(conn, size, deadline))
        _check(head)
        conn.settimeout(None)
        taken = True
        return Request(conn, pid, head, fds)
    finally:
        if not taken:
            for fd in fds:
                os.close(fd)
            conn.close()


def _read(conn: socket.socket, size: int, deadline: float) -> bytes:
    """``size`` bytes from ``conn``; ValueError if it ends first, TimeoutError if they
    have not all come by ``deadline`` (``time.monotonic()``)."""
    data = b""
    while len(data) < size:
        _wait_until(conn, deadline)
        more = conn.recv(size - len(data))
        if not more:
            raise ValueError("the request ended early")
        data += more
    return data


def _wait_until(conn: socket.socket, deadline: float) -> None:
    """Make ``conn``'s next read time out at ``deadline`` (TimeoutError if it passed)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the request took longer than REQUEST_WAIT")
    conn.settimeout(left)


def _check(head: Any) -> None:
    """ValueError unless ``head`` is a request as ``keeper.py`` sends it."""
    ok = isinstance(head, dict)
    argv = head.get("argv") if ok else None
    ok = ok and (argv is None or (isinstance(argv, list) and all(isinstance(a, str) for a in argv)))
    ok = ok and isinstance(head.get("cwd"), str)
    env = head.get("env") if ok else None
    ok = ok and isinstance(env, dict) and all(isinstance(v, str) for v in env.values())
    ok = ok and isinstance(head.get("umask"), int) and 0 <= head["umask"] <= 0o777
    persist = head.get("persist") if ok else None
    ok = ok and (persist is None or (isinstance(persist, (int, float)) and persist > 0))
    if not ok:
        raise ValueError("a malformed request")


def _send(request: Request, kind: bytes, value: int) -> None:
    try:
        request.conn.sendall(MESSAGE.pack(kind, value))
    except OSError:
        pass  # (the client is gone: its watcher sees the end of the connection)


def _answer(request: Request, code: int) -> None:
    _send(request, DONE, code)
    _drop(request)


def _drop(request: Request) -> None:
    """Close the request's descriptors and connection (waking its watcher)."""
    fds, request.fds = request.fds, []
    for fd in fds:
        os.close(fd)
    try:
        request.conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    request.conn.close()


def _exception_for(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _code_for(signum: int) -> int:
    return exit_code(_exception_for(signum))


def _guarded(request: Request, serve: Runner) -> int:
    """``serve`` the request; an interrupt raised in it (``Keeper.on_sigint``) gives
    its exit code, as a programming error gives 1 (its traceback to the client)."""
    try:
        try:
            request.live = True
            if request.signals:  # (came before the run began)
                raise _exception_for(request.signals.pop(0))
            return serve(list(request.head["argv"]))
        finally:
            request.live = False  # (from here on, on_sigint raises nothing)
    except KeyboardInterrupt as e:
        return exit_code(e)
    except Exception:
        traceback.print_exc()
        return FAILURE
