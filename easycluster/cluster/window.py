"""``FanoutWindow``: at most ``limit`` slots run at once; the next starts when one closes.

Pure: the engine asks it which slots to start and tells it which closed. Tested in
``tests/cluster/test_window.py`` without processes.
"""

from __future__ import annotations

import collections
from typing import Deque, Hashable, Iterable, List, Set


class FanoutWindow:
    """A first-in first-out queue of slots waiting to run, and the set running.

    ``add(slot)`` queues a slot; ``take()`` returns the slots to start now (oldest first,
    as many as fit under ``limit``) and counts them as running; ``done(slot)`` frees its
    place (a slot that was never taken, or is already done, is an error: RuntimeError);
    ``drop()`` empties the queue (abort) and returns what was waiting; ``forget(slots)``
    takes these slots out, waiting or running (one worker's abort), and ignores the
    others. ``limit`` may be changed at any time (``set_info('fanout', N)`` while
    running): a smaller limit stops new starts until enough slots are done, it never stops
    a running one. A limit below 1 is a ValueError.
    """

    __slots__ = ("limit", "waiting", "running")

    def __init__(self, limit: int) -> None:
        self.limit = check_limit(limit)
        self.waiting: Deque[Hashable] = collections.deque()
        self.running: Set[Hashable] = set()

    def add(self, slot: Hashable) -> None:
        self.waiting.append(slot)

    def take(self) -> List[Hashable]:
        out: List[Hashable] = []
        while self.waiting and len(self.running) < self.limit:
            slot = self.waiting.popleft()
            self.running.add(slot)
            out.append(slot)
        return out

    def done(self, slot: Hashable) -> None:
        try:
            self.running.remove(slot)
        except KeyError:
            raise RuntimeError(f"fan-out window: {slot!r} is not running") from None

    def drop(self) -> List[Hashable]:
        out = list(self.waiting)
        self.waiting.clear()
        return out

    def forget(self, slots: Iterable[Hashable]) -> None:
        gone = set(slots)
        self.running -= gone
        if gone.intersection(self.waiting):  # (one pass over the queue, not one per slot)
            self.waiting = collections.deque(s for s in self.waiting if s not in gone)

    def __len__(self) -> int:
        """Slots waiting or running."""
        return len(self.waiting) + len(self.running)


def check_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"fanout must be a positive integer, not {limit!r}")
    return limit
