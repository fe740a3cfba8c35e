"""The Tasks of a program's threads: ``task_self``'s (``task.py``) per-thread Task, and
ClusterShell's module functions over all of them: ``task_wait``, ``task_terminate``,
``task_cleanup``."""

from __future__ import annotations

import threading
import weakref
from typing import Any, List, Optional, Protocol


class TaskLike(Protocol):
    """What these functions use of a Task (``task.Task``)."""

    engine: Any  # an Engine while a run is in progress
    thread: Optional[threading.Thread]  # the thread running it

    def abort(self, kill: bool = False) -> None: ...
    def join(self, timeout: Optional[float] = None) -> bool: ...
    def close_sessions(self) -> None: ...


local = threading.local()  # .task: the calling thread's Task (task_self)
_alive: weakref.WeakSet[Any] = weakref.WeakSet()  # every Task not yet garbage (task_wait)
_lock = threading.Lock()  # (a WeakSet copied while another thread adds to it raises)


def register(task: TaskLike) -> None:
    """Count ``task`` among the program's Tasks (``Task.__init__``)."""
    with _lock:
        _alive.add(task)


def alive() -> List[TaskLike]:
    """The program's Tasks, a copy."""
    with _lock:
        return list(_alive)


def task_wait() -> None:
    """Wait until no Task runs on another thread (each ``join``ed in turn; a run that
    starts meanwhile is waited for too). The calling thread's own Task is not waited
    for."""
    me = threading.current_thread()
    while True:
        busy = [t for t in alive() if t.engine is not None and t.thread is not me]
        if not busy:
            return
        for task in busy:
            task.join()


def task_terminate() -> None:
    """Forget the calling thread's Task (aborted first if it is running: from a
    handler); the next ``task_self()`` makes a new one."""
    task: Optional[TaskLike] = getattr(local, "task", None)
    if task is not None:
        task.abort()
        if task.engine is None:  # (from a handler: the run's sessions stay until it ends)
            task.close_sessions()
        local.task = None


def task_cleanup() -> None:
    """Abort every Task (those running on other threads too, and waited for) and forget
    the calling thread's; for tests and for the end of a program."""
    me = threading.current_thread()
    for task in alive():
        task.abort()
        if task.thread is not me:
            task.join()
    task_terminate()
