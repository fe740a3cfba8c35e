"""A clean interpreter that forks local servers on request (used by ``spawn_local``).

Started once per master process as a new interpreter (never a fork of the master, so it
holds none of the master's state), it imports the server side and then waits on a
SOCK_SEQPACKET control socket. Each request carries one end of a socketpair (passed with
SCM_RIGHTS), the session key, a verbosity and a working directory; a child forked from
the zygote serves that socket, and the zygote answers with the child's pid. Forking a
warm interpreter starts a server in a few milliseconds instead of tens, and the children
share the zygote's memory pages, which keeps many local servers cache-friendly.

The fork happens ahead of time: the zygote keeps one *spare* child, forked after the
previous request was answered, that waits on a socketpair of its own for the request
(the same message, the socket passed on with SCM_RIGHTS). A request then costs a message
instead of a fork, and the next spare is forked while the master runs its handshake.
A spare that is gone (killed) is replaced by a fork on the spot.

The zygote exits when the master's end of the control socket closes; a spare waiting
exits when the zygote's end of its socketpair closes; the other children exit when their
own connections close.

The control messages are drawn in ``protocol``'s docstring (``protocol/control.py``).
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
from typing import Optional, Tuple

from ..objects import definitions
from ..protocol.control import KEY_SIZE, SPAWN, SPAWNED
from ..protocol.frames import FT_REQUEST
from ..protocol.handshake import ClientHandshake, ServerHandshake
from ..transport.channel import Channel
from . import process
from .connection import warm_up


def main(argv: list) -> int:
    ctrl = socket.socket(fileno=int(argv[argv.index("--control") + 1]))
    # Warm up everything a server needs, so children start ready.
    definitions.warm_up()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the master's terminal
    # Keep the warm objects out of the children's garbage collections: collecting would
    # write to them and unshare the pages the children share with the zygote.
    gc.collect()
    gc.freeze()
    spare: Optional[Tuple[int, socket.socket]] = None  # (pid, our end of its socketpair)
    while True:
        _reap()
        if spare is None:
            spare = _fork_spare(ctrl)
        ready, _, _ = select.select([ctrl], [], [], 1.0)
        if not ready:
            continue
        try:
            msg, fds, _flags, _addr = socket.recv_fds(ctrl, 8192, 1)
        except OSError:
            return 0
        if not msg:
            return 0  # the master is gone
        if len(msg) < SPAWN.size or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            ctrl.send(SPAWNED.pack(-22))
            continue
        if spare is not None:
            pid, link = spare
            spare = None
            try:
                socket.send_fds(link, [msg], fds)  # (buffered: the spare takes it over)
            except OSError:
                pid = 0  # the spare is gone: fork one for this request instead
            link.close()
            if pid:
                os.close(fds[0])
                ctrl.send(SPAWNED.pack(pid))
                continue
        key, verbosity = SPAWN.unpack_from(msg)
        cwd = msg[SPAWN.size :].decode("utf-8", "surrogateescape")
        try:
            pid = os.fork()
        except OSError as e:
            os.close(fds[0])
            ctrl.send(SPAWNED.pack(-(e.errno or 1)))
            continue
        if pid == 0:
            _child(ctrl, fds[0], key, verbosity, cwd)
        os.close(fds[0])
        ctrl.send(SPAWNED.pack(pid))


def _fork_spare(ctrl: socket.socket) -> Optional[Tuple[int, socket.socket]]:
    """Fork a spare child waiting for its request; None if the fork failed (the request
    will then fork on the spot)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
    except OSError:
        mine.close()
        theirs.close()
        return None
    if pid == 0:
        try:
            mine.close()
            ctrl.close()
            _spare(theirs)
        finally:
            os._exit(1)
    theirs.close()
    return pid, mine


def _spare(link: socket.socket) -> None:
    """A spare child: wait for the request (as the zygote got it), then serve it; exit
    when the zygote goes away first."""
    try:
        _warm()
    except Exception:  # (a warm-up only: the request meets any such error itself)
        pass
    try:
        msg, fds, _flags, _addr = socket.recv_fds(link, 8192, 1)
    except OSError:
        os._exit(0)
    link.close()
    if len(msg) < SPAWN.size or len(fds) != 1:
        os._exit(0)  # the zygote is gone (or sent nonsense: it checked the request)
    key, verbosity = SPAWN.unpack_from(msg)
    cwd = msg[SPAWN.size :].decode("utf-8", "surrogateescape")
    _serve(fds[0], key, verbosity, cwd)


def _child(ctrl: socket.socket, fd: int, key: bytes, verbosity: int, cwd: str) -> None:
    try:
        ctrl.close()
        _serve(fd, key, verbosity, cwd)
    finally:
        os._exit(1)


def _serve(fd: int, key: bytes, verbosity: int, cwd: str) -> None:
    """A child's work: serve the socket ``fd`` in ``cwd`` (never returns)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            os.chdir(cwd)
        except OSError:
            pass
        process.main_socket(socket.socket(fileno=fd), key, verbosity)
    finally:
        os._exit(1)


def _warm() -> None:
    """Run, once, what every server does first (a handshake and a frame each way, in
    memory; a connection's objects and a reply, over a socketpair of its own) before the
    spare waits: a forked child's first touch of a page it shares with the zygote copies
    it, and these copies then leave the path of the request. Nothing outlives the call
    but the default definitions module, which every server makes anyway."""
    key = bytes(KEY_SIZE)
    server = ServerHandshake(key)
    client = ClientHandshake(key)
    accept, session = server.receive(client.receive_hello(server.hello))
    mine = client.receive_accept(accept)
    if session is None:  # (cannot happen: the same key on both ends)
        return
    for sender, receiver in ((mine, session), (session, mine)):
        data = b"".join(sender.pack(FT_REQUEST, b"warm"))
        view = receiver.reader.buffer()
        view[: len(data)] = data
        receiver.reader.advance(len(data))
    a, b = socket.socketpair()
    try:  # a connection's objects, and a reply written (into a socket nobody reads)
        warm_up(Channel(a, session))
    finally:
        a.close()
        b.close()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
