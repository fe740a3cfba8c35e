"""Jobs pinned to one host each (the farm's ``-E``): the scheduler's bookkeeping of them.

Pure and small: ``Scheduler`` keeps one ``PinnedJobs`` and asks it which queued job a
dedicated host takes next, which hosts wait for their pinned jobs, and what is left when
a host goes away. A host with any pinned job is *dedicated*: it takes only those.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Optional

from .jobstate import Job


class PinnedJobs:
    """Pinned jobs that are not final yet, and the queue of each dedicated host.

    ``queued`` counts the jobs in the queues (waiting for their host's slot)."""

    def __init__(self) -> None:
        self._host: Dict[Job, str] = {}  # pinned job, not final yet: its only host
        self._queues: Dict[str, Deque[Job]] = {}  # dedicated host: its queued jobs
        self._left: Dict[str, int] = {}  # dedicated host: its pinned jobs not final
        self.queued = 0

    def add(self, job: Job, host: str) -> None:
        """Pin a new ``job`` to ``host`` and queue it."""
        self._host[job] = host
        self._left[host] = self._left.get(host, 0) + 1
        self._queues.setdefault(host, deque())
        self.push(job)

    def host(self, job: Job) -> Optional[str]:
        """The host ``job`` is pinned to (None: not pinned, or final)."""
        return self._host.get(job)

    def dedicated(self, host: str) -> bool:
        """``host`` has (or had) pinned jobs: it takes no other job."""
        return host in self._queues

    def waiting(self, host: str) -> bool:
        """Pinned jobs are queued for ``host``."""
        return bool(self._queues.get(host))

    def push(self, job: Job, first: bool = False) -> None:
        """Queue a pinned job (again) for its host; ``first``: ahead of the others."""
        queue = self._queues[self._host[job]]
        if first:
            queue.appendleft(job)
        else:
            queue.append(job)
        self.queued += 1

    def pop(self, host: str) -> Optional[Job]:
        """The next queued job of ``host`` (None: none)."""
        queue = self._queues.get(host)
        if not queue:
            return None
        self.queued -= 1
        return queue.popleft()

    def remove(self, job: Job) -> bool:
        """Take a queued pinned job out of its queue (cancelled); False if not there."""
        host = self._host.get(job)
        if host is None or job not in self._queues[host]:
            return False
        self._queues[host].remove(job)
        self.queued -= 1
        return True

    def final(self, job: Job) -> Optional[str]:
        """``job`` reached a final state: forgotten. Returns its host when that was the
        host's last pinned job (it has nothing left to do), else None."""
        host = self._host.pop(job, None)
        if host is None:
            return None
        self._left[host] -= 1
        return host if self._left[host] == 0 else None

    def drain(self, host: Optional[str] = None) -> List[Job]:
        """Empty the queue of ``host`` (None: every queue): the jobs it held, which will
        never run (their host is gone, or the scheduler halted)."""
        hosts = list(self._queues) if host is None else [host]
        out: List[Job] = []
        for name in hosts:
            queue = self._queues.get(name)
            if queue:
                out.extend(queue)
                self.queued -= len(queue)
                queue.clear()
        return out
