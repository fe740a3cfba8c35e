"""What a service manager sees of the standalone server: systemd's notifications, the
detached process (``daemonize``) and its pid file."""

from __future__ import annotations

import os
import socket
import stat

from ..remote.serverlog import lazy_logger

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: the port opens without importing typing)
    from typing import Optional

log = lazy_logger("easycluster.server")  # (logging loads on first use: see listener.py)


def notify_systemd(path: str, state: str) -> bool:
    """Send one sd_notify datagram (``READY=1`` ...) to ``path``; False if it failed."""
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(path)
            s.sendall(state.encode("utf-8"))
        return True
    except OSError as e:
        log.warning("cannot notify systemd at %s: %s", path.lstrip("\0"), e)
        return False


def daemonize(pidfile: Optional[str]) -> None:
    """Detach from the terminal (double fork) and write ``pidfile`` atomically."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    # stderr too, unless it already goes to a file (--logfile): not a terminal now gone
    keep_stderr = stat.S_ISREG(os.fstat(2).st_mode)
    for fd in (0, 1) if keep_stderr else (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    if pidfile:
        tmp = f"{pidfile}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, pidfile)


def remove_pidfile(path: str) -> None:
    """Remove the pid file if it still names this process (another server may have
    replaced it since)."""
    try:
        with open(path) as f:
            mine = f.read().strip() == str(os.getpid())
        if mine:
            os.unlink(path)
    except (OSError, ValueError) as e:
        log.warning("cannot remove the pid file %s: %s", path, e)
