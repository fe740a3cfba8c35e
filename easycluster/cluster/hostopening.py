"""Which hosts a ``Scheduler`` connects next: its lazy-start policy, as a pure function.

Kept apart from ``scheduler.py`` (which calls it from ``to_open``) so that the policy
reads in one place: a dedicated host (one with pinned jobs, ``pinned.py``) opens as soon
as one of its jobs waits; the other hosts open only while the queued jobs outnumber the
free and opening slots, and all within ``max_hosts``.
"""

from __future__ import annotations

from typing import Dict, List

from .jobstate import OPENING, PAUSED, UP, WAITING, HostState
from .pinned import PinnedJobs


def hosts_to_open(
    hosts: Dict[str, HostState],
    pinned: PinnedJobs,
    queued: int,
    blocked: int,
    lazy: bool,
    max_hosts: int,
) -> List[str]:
    """Mark the hosts to connect now OPENING and return their names, in host order.

    ``queued``: jobs waiting for a slot (pinned ones included); ``blocked``: requeued
    jobs that every connected host has had (each wants a fresh host); ``lazy`` False:
    every waiting host opens at once; ``max_hosts``: hosts open at once (0: no limit)."""
    supply = 0
    active = 0
    for h in hosts.values():
        if pinned.dedicated(h.name):
            active += h.state in (UP, OPENING, PAUSED)  # (takes only its own jobs)
        elif h.state == UP:
            supply += h.free
            active += 1
        elif h.state == OPENING:
            supply += h.slots
            active += 1
        elif h.state == PAUSED:
            active += 1
    need = blocked + max(0, queued - pinned.queued - blocked - supply)
    if not lazy:
        need = len(hosts) * max(h.slots for h in hosts.values())
    out: List[str] = []
    for h in hosts.values():  # a dedicated host opens when its jobs wait
        if max_hosts and active >= max_hosts:
            return out
        if h.state == WAITING and pinned.waiting(h.name):
            h.open()
            out.append(h.name)
            active += 1
    for h in hosts.values():
        if need <= 0 or (max_hosts and active >= max_hosts):
            break
        if h.state == WAITING and not pinned.dedicated(h.name):
            h.open()
            out.append(h.name)
            need -= h.slots
            active += 1
    return out
