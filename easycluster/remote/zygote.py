"""A clean interpreter that forks local servers on request (used by ``spawn_local``).

Started once per master process as a new interpreter (never a fork of the master, so it
holds none of the master's state), it imports the server side and then waits on a
SOCK_SEQPACKET control socket. Each request carries one end of a socketpair (passed with
SCM_RIGHTS), the session key, a verbosity and a working directory; the zygote forks a
child that serves that socket and answers with the child's pid. Forking a warm
interpreter starts a server in a few milliseconds instead of tens, and the children
share the zygote's memory pages, which keeps many local servers cache-friendly.

The zygote exits when the master's end of the control socket closes; its children exit
when their own connections close.

The control messages are drawn in ``protocol``'s docstring (``protocol/control.py``).
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys

from ..objects import definitions
from ..protocol.control import SPAWN, SPAWNED
from . import process


def main(argv: list) -> int:
    ctrl = socket.socket(fileno=int(argv[argv.index("--control") + 1]))
    # Warm up everything a server needs, so children start ready.
    definitions.warm_up()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the master's terminal
    # Keep the warm objects out of the children's garbage collections: collecting would
    # write to them and unshare the pages the children share with the zygote.
    gc.collect()
    gc.freeze()
    while True:
        _reap()
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


def _child(ctrl: socket.socket, fd: int, key: bytes, verbosity: int, cwd: str) -> None:
    try:
        ctrl.close()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            os.chdir(cwd)
        except OSError:
            pass
        process.main_socket(socket.socket(fileno=fd), key, verbosity)
    finally:
        os._exit(1)


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
