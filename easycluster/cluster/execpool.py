"""The shared core of ``ClusterExecutor`` (``executor.py``): the lock, the scheduler,
the submitted items, and how a settled item's future gets its outcome; the errors a
future can raise. The runners (``execrunner.py``) and the executor share one
``WorkPool``: every scheduler call is made with ``lock`` held, and futures are given
their outcomes after it is released (``take_settled`` then ``finish``), since future
callbacks may submit.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Dict, List, Optional, Tuple

from ..errors import CallTimeout, ConnectionLost, EasyClusterError, RemoteException
from . import jobstate
from .scheduler import CANCELLED, Scheduler

__all__ = [
    "NoHostsLeft",
    "WorkLost",
    "WorkStuck",
    "RemoteTraceback",
    "Work",
    "WorkPool",
    "MapGroup",
    "MapItem",
    "MAP_DONE",
    "MAP_CANCELLED",
    "unwrap",
]


class NoHostsLeft(EasyClusterError, concurrent.futures.BrokenExecutor):
    """Every server of the executor was lost, unreachable or retired: the item never
    finished. The message says what happened to each server."""


class WorkLost(ConnectionLost):
    """The item's server was lost (connection died, heartbeat missed) and its retries
    are used up, or it lost ``poison_after`` servers (poisonous: it probably kills
    them). It may have run, partly or fully, on those servers."""


class WorkStuck(CallTimeout):
    """The item ran past ``task_timeout`` on every server it was tried on."""


class RemoteTraceback(Exception):
    """The cause attached to a re-raised remote exception: its traceback there."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


# MapItem states
MAP_PENDING, MAP_RUNNING, MAP_DONE, MAP_CANCELLED = 0, 1, 2, 3


class MapGroup:
    """The items of one ``map`` call and the one thread that consumes them (in order).

    ``wait`` blocks until an item is done; ``finish`` wakes the consumer once per batch
    it settles, and only when the item it waits for is among them (a real Future per
    item woke it, and paid a Condition, per item)."""

    __slots__ = ("cond", "waiting")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.waiting: Optional[MapItem] = None

    def wait(self, item: MapItem, timeout: Optional[float]) -> bool:
        """Wait for ``item`` (of this group) to be done, at most ``timeout`` seconds
        (None: no limit); True if it is. No wake-up is lost: the consumer publishes
        ``waiting`` before it looks at the state, a settler sets the state before it
        looks at ``waiting`` (and notifies under ``cond``)."""
        with self.cond:
            self.waiting = item
            try:
                if item.state < MAP_DONE:
                    self.cond.wait(timeout)
            finally:
                self.waiting = None
        return item.state >= MAP_DONE

    def wake(self) -> None:
        item = self.waiting
        if item is not None and item.state >= MAP_DONE:
            with self.cond:
                self.cond.notify()


class MapItem:
    """The outcome of one item (or chunk) of a ``map`` call: the part of a Future the
    executor uses (``running``, ``set_running_or_notify_cancel``, ``done``, ``cancel``,
    ``set_result``, ``set_exception``) without its Condition. Never seen by users: map's
    iterator reads ``state``/``value``/``error``. Only the scheduler cancels it (a
    QUEUED job, which no runner holds), so its transitions need no lock."""

    __slots__ = ("group", "state", "value", "error")

    def __init__(self, group: MapGroup) -> None:
        self.group = group
        self.state = MAP_PENDING
        self.value: Any = None
        self.error: Optional[BaseException] = None

    def running(self) -> bool:
        return self.state == MAP_RUNNING

    def set_running_or_notify_cancel(self) -> bool:
        if self.state == MAP_CANCELLED:
            return False
        self.state = MAP_RUNNING
        return True

    def done(self) -> bool:
        return self.state >= MAP_DONE

    def cancel(self) -> bool:
        if self.state == MAP_PENDING:
            self.state = MAP_CANCELLED
        return self.state == MAP_CANCELLED

    def set_result(self, value: Any) -> None:
        self.value = value
        self.state = MAP_DONE

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self.state = MAP_DONE


class Work:
    """One submitted item: what to call and the future that gets its outcome (a
    ``concurrent.futures.Future`` from ``submit``, a ``MapItem`` from ``map``)."""

    __slots__ = ("future", "name", "fn", "args", "kwargs", "token", "value", "error")

    def __init__(
        self,
        future: Any,
        fn: Any,
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
        token: Optional[str],
    ) -> None:
        self.future = future
        self.fn = fn  # with a token: the object registered under it on each server
        self.args = args
        self.kwargs = kwargs
        self.token = token
        self.value: Any = None
        self.error: Optional[BaseException] = None


class WorkPool:
    """What the executor and its runners share (see the module docstring).

    ``lock`` guards everything here; ``wake`` (on ``lock``) is where idle runners wait
    for work, ``idle`` counts them; ``work`` maps job ids to items; ``why`` says what
    retired each server (for ``NoHostsLeft``); ``closing`` is set by ``shutdown``.
    """

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.idle = 0
        self.work: Dict[Any, Work] = {}
        self.why: Dict[str, str] = {}
        self.closing = False

    def take_settled(self) -> List[Tuple[Work, Any, jobstate.JobState]]:
        """The items settled since the last call, each with its final state; the
        scheduler forgets them (a long-lived executor keeps no record per item)."""
        out = []
        for job in self.sched.take_settled():
            w = self.work.pop(job, None)
            state = self.sched.forget(job)
            if w is not None:
                out.append((w, job, state))
        return out

    def finish(self, settled: List[Tuple[Work, Any, jobstate.JobState]]) -> None:
        """Give each settled item's future its outcome (outside the lock: future
        callbacks may submit); a map's consumer is woken once per batch."""
        groups: Optional[List[MapGroup]] = None
        for w, job, state in settled:
            fut = w.future
            if fut.__class__ is MapItem:
                group = fut.group
                if groups is None:
                    groups = [group]
                elif group is not groups[-1] and group not in groups:
                    groups.append(group)
            if fut.done():
                continue  # cancelled by its owner
            try:
                if state.state == jobstate.DONE:
                    fut.set_result(w.value)
                elif state.state == jobstate.FAILED:
                    fut.set_exception(self.failure(job, state, w))
                elif state.reason == CANCELLED:
                    if not fut.cancel():  # it had begun, and was waiting for a retry
                        fut.set_exception(
                            concurrent.futures.CancelledError(
                                f"item {job} was cancelled while it waited to be retried"
                            )
                        )
                else:
                    fut.set_exception(self.not_run(job, state))
            except concurrent.futures.InvalidStateError:
                pass  # cancelled meanwhile
        if groups is not None:
            for group in groups:
                group.wake()

    def failure(self, job: Any, state: jobstate.JobState, w: Work) -> BaseException:
        where = ", ".join(sorted(state.tried)) or "?"
        if state.kind == jobstate.KIND_FAILED and w.error is not None:
            return w.error
        if state.kind == jobstate.KIND_POISONOUS:
            return WorkLost(
                f"item {job}: its server was lost {state.losses} times ({where}); it is "
                "probably what kills them (poisonous), so it is not retried. It may have "
                "run, partly or fully, on them"
            )
        # (a retry still in the budget when no server was left: the job ends as its last
        # attempt did, see JobState.exhaust; the message must not blame the budget)
        spent = state.retried > self.sched.retries
        if state.kind == jobstate.KIND_LOST:
            why = (
                f"its {self.sched.retries} retries are used up"
                if spent
                else "no server was left to retry it on"
            )
            return WorkLost(
                f"item {job}: its server was lost ({where}) and {why}; it may have run, "
                "partly or fully, there"
            )
        why = "given up" if spent else "no server was left to retry it on"
        return WorkStuck(
            f"item {job}: ran past task_timeout={self.sched.timeout:g} s on {where}, "
            f"{state.attempts} times; {why}"
        )

    def not_run(self, job: Any, state: jobstate.JobState) -> BaseException:
        why = "; ".join(f"{h}: {r}" for h, r in sorted(self.why.items())) or "none connected"
        return NoHostsLeft(
            f"item {job} was not run: {state.reason} (every server of this executor is gone: {why})"
        )


def unwrap(err: BaseException) -> BaseException:
    """The exception a future raises for a remote one: the original, with the remote
    traceback as its cause."""
    if isinstance(err, RemoteException) and err.orig is not None:
        orig = err.orig
        if err.text:
            orig.__cause__ = RemoteTraceback("\n" + "".join(err.text).rstrip())
        return orig
    return err
