"""What a scheduler's tables add up to: the final ``Report`` (every job once) and the
figures of a status line; and the reasons a job ends NOT_RUN.

Pure functions of the job and host tables (``jobstate.py``'s ``JobState`` and
``HostState``) that ``Scheduler.report`` and ``Scheduler.counts`` answer with.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from .jobstate import DONE, FAILED, NOT_RUN, PAUSED, UP, HostState, Job, JobState, Report

NO_HOSTS_LEFT = "no hosts left"
CANCELLED = "cancelled"
HALTED = "halted"


def report(jobs: Mapping[Job, JobState], hosts: Mapping[str, HostState]) -> Report:
    """Every job once, by outcome (a NOT_RUN job without a reason: ``NO_HOSTS_LEFT``),
    the retired hosts with their reasons, and how often each failed job ran (and was
    lost), so a summary can say it ran N times."""
    done: List[Job] = []
    failed: Dict[Job, Tuple[str, Optional[int]]] = {}
    not_run: Dict[Job, str] = {}
    unfinished: List[Job] = []
    attempts: Dict[Job, Tuple[int, int]] = {}
    for job, s in jobs.items():
        if s.state == DONE:
            done.append(job)
        elif s.state == FAILED:
            failed[job] = (s.kind or "failed", s.code)
            attempts[job] = (s.attempts, s.losses)
        elif s.state == NOT_RUN:
            not_run[job] = s.reason or NO_HOSTS_LEFT
        else:
            unfinished.append(job)
    retired = {h.name: h.reason or "" for h in hosts.values() if not h.alive}
    return Report(len(jobs), done, failed, not_run, unfinished, retired, attempts)


def counts(
    jobs: Mapping[Job, JobState], hosts: Mapping[str, HostState], queued: int, running: int
) -> Dict[str, Any]:
    """Figures for a status line: done, failed, not run, queued, running, total,
    slots (of connected hosts), hosts retired."""
    tally = {DONE: 0, FAILED: 0, NOT_RUN: 0}
    for s in jobs.values():
        if s.state in tally:
            tally[s.state] += 1
    return {
        "done": tally[DONE],
        "failed": tally[FAILED],
        "not run": tally[NOT_RUN],
        "queued": queued,
        "running": running,
        "total": len(jobs),
        "slots": sum(h.slots for h in hosts.values() if h.state in (UP, PAUSED)),
        "retired": sum(1 for h in hosts.values() if not h.alive),
    }
