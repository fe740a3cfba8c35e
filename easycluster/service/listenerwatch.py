"""A connection process's watch on its listener: drain when the listener dies.

The contract is ``tcpserver.py``'s (its docstring): if the listener dies without a word
(``kill -9``, the OOM killer), each connection process gets SIGUSR1, the signal to
drain. On Linux the kernel sends it (``prctl(PR_SET_PDEATHSIG)``, through ``ctypes``,
looked up once in the listener: ``parent_death_signal``); elsewhere a thread waits for
the end of file of a pipe whose only write end is the listener's (``watch_listener``).
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: the port opens without importing typing)
    from typing import Callable, Optional


def parent_death_signal() -> Optional[Callable[[int], bool]]:
    """On Linux, a function that asks the kernel to send the calling process a signal
    when its parent dies (``prctl(PR_SET_PDEATHSIG, sig)``; True if it took), looked up
    once so that a forked child only makes the call; None where there is no such call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes  # (only here: the listening port opens without it)

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def arm(sig: int) -> bool:
        return prctl(PR_SET_PDEATHSIG, sig, 0, 0) == 0

    return arm


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def watch_listener(
    fd: int, listener: int, death_signal: Optional[Callable[[int], bool]] = None
) -> None:
    """In a connection process: arrange for SIGUSR1 (the signal to drain: the
    connection's handler, or, before it is set, the default, which ends the process)
    when the listener, pid ``listener``, dies.

    With ``death_signal`` (see ``parent_death_signal``) the kernel sends it; if the
    listener died before we asked, we send it ourselves. Otherwise a daemon thread reads
    ``fd`` (the read end of the listener's pipe) until end of file, then sends it."""
    if death_signal is not None and death_signal(signal.SIGUSR1):
        os.close(fd)  # (not needed: the kernel tells us)
        if os.getppid() != listener:
            os.kill(os.getpid(), signal.SIGUSR1)
        return

    import threading  # (only here: the listening port opens without it)

    def watch() -> None:
        try:
            while os.read(fd, 64):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGUSR1)

    threading.Thread(target=watch, name="listener-watch", daemon=True).start()
