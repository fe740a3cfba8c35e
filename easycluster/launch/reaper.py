"""Collecting local servers after their clients closed, without making the close wait.

A local server exits when its end of the socketpair closes, some hundreds of
microseconds later on a busy machine: a master closing 1,000 clients one by one would
pay that wait for each. ``Reaper.add(proc)`` hands the process over instead. One thread
per master process (started on the first hand-over, then asleep while it has nothing to
watch) waits on the pidfds of every process handed over, all at once, and when one
exits records it with ``proc.poll()``: a fresh interpreter's ``Popen`` is waited for
(no zombie stays), a zygote child's ``LocalProcess`` notes its exit code and closes its
pidfd (the zygote, its parent, reaps it). A process still running ``grace`` seconds
after it was handed over is killed, then watched for another ``grace`` seconds (one
that outlives even that, stuck in the kernel, is given up). At the master's exit the
processes still handed over are waited for the same way, so the interpreter never ends
with one unreaped.

A process that cannot be watched (no pidfd: not Linux, or a kernel before 5.3), and any
hand-over once the exit has begun, is reaped at once on the caller's thread, as before:
wait up to ``grace`` seconds, then kill.
"""

from __future__ import annotations

import atexit
import os
import select
import subprocess
import threading
import time
from typing import Any, Dict, Optional, Tuple

GRACE = 5.0  # seconds a closed server has to exit before it is killed


def reap_now(proc: Any, grace: float = GRACE) -> None:
    """Wait up to ``grace`` seconds for ``proc`` to exit; kill it if it lingers (then wait
    up to ``grace`` seconds more, raising ``subprocess.TimeoutExpired`` if it still runs)."""
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


class Reaper:
    """The thread that collects handed-over processes (see the module doc).

    ``add`` never waits for the process (unless it falls back to ``reap_now``); ``finish``
    stops taking processes and waits until every one handed over is collected, killed
    or given up. Neither raises for a process that ended meanwhile, however it ended.
    """

    def __init__(self, grace: float = GRACE):
        self.grace = grace
        self.owner = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._epoll = select.epoll()
        # by pidfd (our own, dup'ed or opened here): the process, its deadline, and
        # whether it was killed already. Insertion order is deadline order: every
        # deadline is the time it was (re)inserted plus the same grace.
        self._watched: Dict[int, Tuple[Any, float, bool]] = {}
        self._thread: Optional[threading.Thread] = None
        self._finishing = False

    def add(self, proc: Any) -> None:
        """Collect ``proc`` once it exits; kill it if it is still running after ``grace``
        seconds. Returns at once (see the module doc for the fallback that waits)."""
        if proc.poll() is not None:
            return  # ended, and collected just now
        fd = _pidfd_of(proc)
        if fd is None:
            reap_now(proc, self.grace)
            return
        with self._cond:
            if self._finishing or self.owner != os.getpid():
                fd_taken = False
            else:
                fd_taken = self._start_locked()
                if fd_taken:
                    self._epoll.register(fd, select.EPOLLIN)
                    self._watched[fd] = (proc, time.monotonic() + self.grace, False)
                    if len(self._watched) == 1:
                        self._cond.notify()  # (asleep with nothing to watch)
        if not fd_taken:
            os.close(fd)
            reap_now(proc, self.grace)

    def _start_locked(self) -> bool:
        """The thread runs (started now if need be); False if it cannot be started (the
        interpreter is shutting down)."""
        if self._thread is not None:
            return True
        thread = threading.Thread(target=self._run, name="easycluster-reaper", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            return False
        self._thread = thread
        return True

    def _run(self) -> None:
        # (daemon: ``finish``, at exit, is what waits for the processes still watched)
        watched, cond = self._watched, self._cond
        while True:
            with cond:
                while not watched:
                    if self._finishing:
                        return
                    cond.wait()
                first = watched[next(iter(watched))][1]
            try:
                ready = self._epoll.poll(max(first - time.monotonic(), 0.0))
            except InterruptedError:  # (a signal: look again)
                ready = []
            with cond:
                for fd, _ in ready:
                    entry = watched.pop(fd, None)
                    if entry is not None:
                        self._forget_locked(fd)
                        entry[0].poll()  # exited: record it (Popen: reap it)
                now = time.monotonic()
                while watched:
                    fd = next(iter(watched))
                    proc, deadline, killed = watched[fd]
                    if deadline > now:
                        break
                    del watched[fd]
                    if proc.poll() is not None:  # (exited at the last moment)
                        self._forget_locked(fd)
                    elif not killed:
                        proc.kill()
                        watched[fd] = (proc, now + self.grace, True)
                    else:
                        self._forget_locked(fd)  # unkillable for now: given up
                if not watched:
                    cond.notify_all()  # (``finish`` waits for this)

    def _forget_locked(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass
        os.close(fd)

    def finish(self) -> None:
        """Take no more processes; wait until every one handed over is collected (killed
        after its grace if need be). For the master's exit."""
        with self._cond:
            self._finishing = True
            thread, self._thread = self._thread, None
            if self.owner != os.getpid():
                return  # a fork of the master: no thread here, the processes are not ours
            self._cond.notify_all()
        if thread is not None:
            thread.join()
        self._epoll.close()


def _pidfd_of(proc: Any) -> Optional[int]:
    """A pidfd of our own on ``proc`` (a ``LocalProcess`` or a ``Popen``), or None."""
    own = getattr(proc, "dup_pidfd", None)
    if own is not None:
        return own()
    try:  # a Popen not yet waited for: its pid is still its own (it is our child)
        return os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return None


# The reaper of this process, started on first use (runtime state, not configuration); a
# forked master notices it is not the owner and makes its own. The last one is finished
# at exit.
_reaper: Optional[Reaper] = None
_reaper_lock = threading.Lock()


def get_reaper() -> Reaper:
    """This process's reaper (made on first use; finished at exit)."""
    global _reaper
    with _reaper_lock:
        r = _reaper
        if r is None or r.owner != os.getpid():
            if r is None:
                atexit.register(_finish_reaper)  # once (a forked master inherits it)
            r = _reaper = Reaper()
        return r


def _finish_reaper() -> None:
    global _reaper
    with _reaper_lock:
        r, _reaper = _reaper, None
    if r is not None:
        r.finish()
