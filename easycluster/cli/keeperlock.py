"""The files of a keeper (``keeperd.py``): its Unix socket, and the lock file that makes
it the one keeper of that socket. Only the lock's holder binds or removes the socket.
As it ends, the holder removes both files while still holding the lock, so a process
that locks a file no longer at the lock path (it opened it before the removal) lets it
go and tries the one there now: two keepers never hold "the" lock at once."""

from __future__ import annotations

import fcntl
import os
import time
from typing import Optional


def lock_path(path: str) -> str:
    """The lock file the keeper of socket ``path`` holds while it lives."""
    return path[: -len(".sock")] + ".lock" if path.endswith(".sock") else path + ".lock"


def take_lock(path: str, wait: float) -> Optional[int]:
    """The lock file's descriptor, locked, for the keeper of socket ``path``; None if
    another keeper holds it and its socket is there (it serves, or is ending and its
    clients start a new keeper), or if it is held ``wait`` seconds without a socket."""
    lock = lock_path(path)
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _is_at(fd, lock):
                return fd
        except BlockingIOError:
            if os.path.exists(path) or time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.02)  # (the winner of a start race has not bound yet)
        os.close(fd)  # (locked, but removed by its last holder: try the one there now)


def remove_files(path: str, bound: Optional[int], lock: int) -> None:
    """Remove the socket ``path`` if it is still the one of inode ``bound`` (None: it
    was never bound), and the lock file held on descriptor ``lock``. The lock stays held
    until ``lock`` is closed: close it once the keeper's last answer is sent."""
    if bound is not None:
        _unlink_if(path, bound)
    _unlink_if(lock_path(path), os.fstat(lock).st_ino)


def _is_at(fd: int, path: str) -> bool:
    """Whether the file open on ``fd`` is the one at ``path``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


def _unlink_if(path: str, inode: int) -> None:
    """Remove ``path`` if it is still the file ``inode`` (not a successor's)."""
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass
