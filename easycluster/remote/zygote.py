"""A clean interpreter that forks local servers on request (used by ``spawn_local``).

Started once per master process as a new interpreter (never a fork of the master, so it
holds none of the master's state), it imports the server side and then waits on a
SOCK_SEQPACKET control socket. Each request carries one end of a socketpair (passed with
SCM_RIGHTS), what the server needs to finish the handshake the master ran in memory
(``protocol/control.py``), a verbosity and a working directory; a child forked from the
zygote serves that socket, and the zygote answers with the child's pid: all the master
waits for (it sends its first frame without waiting for the server). Forking a warm
interpreter starts a server in a fraction of a millisecond instead of tens, and the
children share the zygote's memory pages, which keeps many local servers cache-friendly.

The fork happens ahead of time: the zygote keeps one *spare* child, forked after the
previous request was answered (the first one at once, before the zygote's own warm-up),
that waits on a socketpair of its own for the request (the same message, the socket
passed on with SCM_RIGHTS). A request then costs a message instead of a fork (the answer
leaves before the next spare is forked), and the spare's warm-up runs before its request
comes. A spare that is gone (killed) is replaced by a fork on the spot.

The answers never make the zygote wait: the master reads them when it needs a pid (or
when it next sends a request), and the control socket holds only what fits in the
zygote's send buffer (278 answers with Linux's default). An answer that does not fit
waits in the zygote's own queue, sent as the master reads; a blocking send there would
stop the zygote from taking the requests already queued behind it, and their servers
would never start (seen at the end of a burst of 1,000 spawns: the last server's first
call waited for the master's keep-alive to give up).

The zygote exits when the master's end of the control socket closes; a spare waiting
exits when the zygote's end of its socketpair closes; the other children exit when their
own connections close.

The control messages are drawn in ``protocol``'s docstring (``protocol/control.py``).
"""

from __future__ import annotations

import collections
import gc
import os
import select
import signal
import socket
import sys
from typing import Deque, Optional, Tuple

from ..errors import ProtocolError
from ..objects import definitions
from ..protocol.control import KEY_SIZE, SPAWN, SPAWNED, read_spawn, spawn_request
from ..protocol.frames import FT_REQUEST
from ..protocol.handshake import WireOptions
from ..transport.channel import Channel
from ..transport.tcp import fork_linked
from . import process
from .connection import warm_up
from .rehearsal import rehearse


def main(argv: list) -> int:
    ctrl = socket.socket(fileno=int(argv[argv.index("--control") + 1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the master's terminal
    # The first spare is forked before the zygote's own warm-up: the first request (sent
    # as soon as the master started us) is answered without waiting for that, and the
    # spare warms itself meanwhile (on another core, where there is one).
    spare: Optional[Tuple[int, socket.socket]] = _fork_spare(ctrl)  # (pid, our end)
    cold = True
    unsent: Deque[bytes] = collections.deque()  # answers the master has no room for yet
    while True:
        _reap()
        if spare is None:
            if cold:
                _ready_children()
                cold = False
            spare = _fork_spare(ctrl)
        ready, room, _ = select.select([ctrl], [ctrl] if unsent else [], [], 1.0)
        if room and not _send_answers(ctrl, unsent):
            return 0
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
            if not _answer(ctrl, unsent, -22):
                return 0
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
                if not _answer(ctrl, unsent, pid):
                    return 0
                continue
        try:
            pid = os.fork()
        except OSError as e:
            os.close(fds[0])
            if not _answer(ctrl, unsent, -(e.errno or 1)):
                return 0
            continue
        if pid == 0:
            _child(ctrl, fds[0], msg)
        os.close(fds[0])
        if not _answer(ctrl, unsent, pid):
            return 0


def _answer(ctrl: socket.socket, unsent: Deque[bytes], pid: int) -> bool:
    """Answer a request, now or (no room: see the module doc) once the master reads;
    False when the master is gone (it need not read the answers before it exits: its
    servers end as their sockets close)."""
    unsent.append(SPAWNED.pack(pid))
    return _send_answers(ctrl, unsent)


def _send_answers(ctrl: socket.socket, unsent: Deque[bytes]) -> bool:
    """Send the answers waiting, in order, as far as the master's queue takes them,
    never waiting for room; False when the master is gone."""
    while unsent:
        try:
            ctrl.send(unsent[0], socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True  # (its queue is full: the main loop waits for room)
        except OSError:
            return False
        unsent.popleft()
    return True


def _ready_children() -> None:
    """Warm up what every server needs, so that the children forked from now on start
    ready, and keep those objects out of the children's garbage collections: collecting
    would write to them and unshare the pages the children share with the zygote. A
    call is rehearsed first, so that children start with its path specialized
    (``rehearsal.py``)."""
    definitions.warm_up()
    rehearse()
    gc.collect()
    gc.freeze()


def _fork_spare(ctrl: socket.socket) -> Optional[Tuple[int, socket.socket]]:
    """Fork a spare child waiting for its request; None if the fork failed (the request
    will then fork on the spot)."""
    return fork_linked(_spare, ctrl)


def _spare(link: socket.socket) -> None:
    """A spare child: wait for the request (as the zygote got it), then serve it; exit
    when the zygote goes away first. The warm-up runs only while no request waits:
    ahead of one that is already here (a burst of spawns) it would add its own work to
    the request's, and take the processor from the master and the other servers."""
    if not select.select([link], [], [], 0)[0]:
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
    _serve(fds[0], msg)


def _child(ctrl: socket.socket, fd: int, msg: bytes) -> None:
    try:
        ctrl.close()
        _serve(fd, msg)
    finally:
        os._exit(1)


def _serve(fd: int, msg: bytes) -> None:
    """A child's work: serve the socket ``fd`` as the request ``msg`` says (never
    returns). A request that fails its handshake closes the socket unserved: the master
    meets that as a lost connection on its first frame."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        sock = socket.socket(fileno=fd)
        try:
            session, verbosity, cwd = read_spawn(msg)
        except ProtocolError as e:
            print(f"easycluster local server: {e}", file=sys.stderr)
            return
        try:
            os.chdir(cwd)
        except OSError:
            pass
        process.main_session(sock, session, verbosity)
    finally:
        os._exit(1)


def _warm() -> None:
    """Run, once, what every server does first (both halves of a request's handshake
    and a frame each way, in memory; a connection's objects and a reply, over a
    socketpair of its own) before the spare waits: a forked child's first touch of a
    page it shares with the zygote copies it, and these copies then leave the path of
    the request. Nothing outlives the call but the default definitions module, which
    every server makes anyway."""
    msg, mine = spawn_request(bytes(KEY_SIZE), WireOptions(), 0, "/")
    session, _, _ = read_spawn(msg)
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
