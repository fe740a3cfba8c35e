"""The scheduling core of the job farm and of ``ClusterExecutor``: pure, no I/O.

``Scheduler`` decides which job runs on which host slot, what a failure means and
when to give up. It never reads a clock (every event takes ``now``, any monotonic
number of seconds), starts no thread and touches no process: the driver (``easycluster
farm``, ``ClusterExecutor``) connects, runs and kills, and tells it what happened.

Hosts and slots: ``Scheduler(["a", "a", "b"])`` gives host ``a`` two slots and ``b``
one (a host listed N times has N slots, as in clstr); ``slots=`` multiplies, and a
mapping ``{"a": 4}`` sets a count per host. Hosts start lazily: ``to_open(now)`` names
the hosts to connect only while queued jobs outnumber the free slots (and at most
``max_hosts`` at once, clstr's ``-m``); the driver answers ``opened`` or
``unreachable``. ``max_uses`` retires a host after that many jobs (clstr's ``-u``).

The failure taxonomy and what each costs (``jobstate.py`` draws both machines):

=========== ================================ ======================================
class       the driver reports               the job                / the host
=========== ================================ ======================================
unreachable ``unreachable(host)``            its attempt is taken   retired
                                             back, no budget spent
lost        ``lost(host)``                   retried elsewhere,     retired
                                             up to ``retries``;
                                             poisonous after
                                             ``poison_after`` losses
stuck       ``expire(now)`` finds it past    retried elsewhere, up  kept (the driver
            its deadline (``timeout``)       to ``retries``         kills the attempt)
failed      ``failed(attempt, code)``        final, unless          retired after
                                             ``retry_failed`` > 0   ``retire_after``
                                                                    failures in a row
=========== ================================ ======================================

A retry goes to a host the job has not failed, been lost or stuck on, while one is
connected; when every connected host has had it, any may take it (a small pool still
retries). Retried jobs go before new ones. When no host is left (all retired), every
queued job ends ``not run``. Each job ends DONE, FAILED (``kind``: failed, lost,
stuck or poisonous; ``code``: its last exit code) or NOT_RUN (``reason``), and
``report()`` accounts for every job once (``jobreport.py``).

Driving it (one loop or one lock; all methods are quick)::

    s = Scheduler(["n1", "n1", "n2"], retries=3, timeout=600)
    s.add_many(range(100)); s.close()
    while not s.finished:
        for host in s.to_open(now): connect it, then s.opened(host, now)
        for a in s.assign(now): start a.job on a.host
        ... on an exit: s.succeeded(a, now) or s.failed(a, now, rc)
        ... on a dead connection: s.lost(host, now)
        for a in s.expire(now): kill a  (stuck; sleep until s.next_deadline())
        for job in s.take_settled(): report it
    print(s.report())

Pinned jobs (``add(job, host=h)``, the farm's ``-E``): the job and every retry of it
run only on ``h``. A host with pinned jobs is *dedicated* to them (no other job goes
there) and is retired as used up once all of them are final (``-m`` can then open the
next host). When ``h`` is retired first, the job ends as if no host were left (NOT_RUN,
or FAILED as its last attempt if it ran).

``assign(now, queued=True)`` is for a driver that pipelines several calls per slot: the
attempt's deadline starts only when the driver says ``started(attempt, now)``, and an
attempt that never began is released without cost if its host goes away.
"""

from __future__ import annotations

from collections import deque
from typing import (
    Any,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Union,
)

from . import jobreport
from .hostopening import hosts_to_open

# (re-exported: their home was this module; farm.py, execpool.py, tests)
from .jobreport import CANCELLED as CANCELLED
from .jobreport import HALTED as HALTED
from .jobreport import NO_HOSTS_LEFT as NO_HOSTS_LEFT
from .jobstate import (
    OPENING,
    PAUSED,
    QUEUED,
    RETIRED_HALTED,
    RETIRED_USED_UP,
    UP,
    Attempt,
    HostState,
    Job,
    JobState,
    Report,
    count_option,
    host_slots,
)
from .pinned import PinnedJobs

__all__ = ["Attempt", "Report", "Scheduler", "NO_HOSTS_LEFT", "CANCELLED", "HALTED"]


class Scheduler:
    """Jobs onto host slots, with the failure taxonomy of the module docstring.

    ``retries``: automatic reruns of a lost or stuck job (default 3); ``poison_after``:
    hosts a job may lose before it is poisonous (3; 0 = never); ``retry_failed``:
    reruns after the job's own failure (0); ``retire_after``: consecutive job failures
    that retire a host (5; 0 = never); ``max_uses``: jobs per host (0 = unlimited);
    ``max_hosts``: hosts open at once (0 = unlimited); ``timeout``: seconds an attempt
    may run before it is stuck (None = no deadline); ``lazy``: open hosts only when
    there is work for them (False: ``to_open`` names every host at once).
    """

    def __init__(
        self,
        hosts: Union[Iterable[str], Mapping[str, int]],
        *,
        slots: int = 1,
        retries: int = 3,
        poison_after: int = 3,
        retry_failed: int = 0,
        retire_after: int = 5,
        max_uses: int = 0,
        max_hosts: int = 0,
        timeout: Optional[float] = None,
        lazy: bool = True,
    ) -> None:
        self.retries = count_option("retries", retries)
        self.poison_after = count_option("poison_after", poison_after)
        self.retry_failed = count_option("retry_failed", retry_failed)
        self.retire_after = count_option("retire_after", retire_after)
        self.max_uses = count_option("max_uses", max_uses)
        self.max_hosts = count_option("max_hosts", max_hosts)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0 (or None), not {timeout!r}")
        self.timeout = timeout
        self.lazy = lazy
        self.hosts: Dict[str, HostState] = {
            name: HostState(name, n) for name, n in host_slots(hosts, slots).items()
        }
        self.jobs: Dict[Job, JobState] = {}
        self._timeouts: Dict[Job, float] = {}
        self._fresh: Deque[Job] = deque()  # new jobs, FIFO
        self._retry: Deque[Job] = deque()  # requeued jobs: they go first
        self._pinned = PinnedJobs()  # jobs that run only on one host (-E)
        self._running: Dict[Job, Attempt] = {}
        self._settled: List[Job] = []
        self._rotate = 0  # where assign() starts among the hosts, for fairness
        self.queued = 0
        self.closed = False
        self.halted: Optional[str] = None

    # -- jobs ------------------------------------------------------------------------

    def add(self, job: Job, timeout: Optional[float] = None, host: Optional[str] = None) -> None:
        """Queue ``job`` (any hashable id, once); ``timeout`` overrides the default;
        ``host`` pins it (and its retries) to that host (module doc)."""
        if host is not None and host not in self.hosts:
            raise ValueError(f"job {job!r} is pinned to {host!r}, which is not a host here")
        if self.closed:
            raise RuntimeError("the scheduler is closed: no job can be added")
        if job in self.jobs:
            raise ValueError(f"job {job!r} was added already: job ids must be unique")
        if timeout is not None:
            if not timeout > 0:
                raise ValueError(f"job {job!r}: timeout must be > 0 seconds, not {timeout!r}")
            self._timeouts[job] = timeout
        state = self.jobs[job] = JobState()
        alive = self._any_host_alive() if host is None else self.hosts[host].alive
        if self.halted is not None or not alive:
            state.exhaust(self.halted or NO_HOSTS_LEFT)
            self._settled.append(job)
            return
        if host is not None:
            self._pinned.add(job, host)
        else:
            self._fresh.append(job)
        self.queued += 1

    def add_many(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.add(job)

    def close(self) -> None:
        """No more jobs will be added: ``finished`` can become true."""
        self.closed = True

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def finished(self) -> bool:
        """Closed, and every job is in a final state."""
        return self.closed and not self.queued and not self._running

    def cancel(self, job: Job) -> bool:
        """End a queued job as NOT_RUN (``cancelled``); False if it is running or over."""
        state = self.jobs[job]
        if not state.cancel(CANCELLED):
            return False
        if self._pinned.remove(job):
            self._pinned.final(job)  # (its host stays: cancel retires nothing)
        self.queued -= 1
        self._settled.append(job)
        return True

    def halt(self, reason: str = HALTED) -> None:
        """Start nothing more: every queued job (and any added later) ends NOT_RUN with
        ``reason``; running attempts go on and are reported as usual."""
        self.halted = reason
        self._exhaust(reason)

    def forget(self, job: Job) -> JobState:
        """Drop a job in a final state from ``jobs`` (and so from ``report``), for a
        driver that runs without end; returns its state. ValueError if not final."""
        state = self.jobs[job]
        if not state.final:
            raise ValueError(f"job {job!r} is {state.state}: only a finished job is forgotten")
        del self.jobs[job]
        self._timeouts.pop(job, None)
        return state

    def take_settled(self) -> List[Job]:
        """The jobs that reached a final state since the last call, in that order."""
        got, self._settled = self._settled, []
        return got

    # -- hosts -----------------------------------------------------------------------

    def to_open(self, now: float) -> List[str]:
        """Hosts to connect now (marked OPENING): only while the queued jobs outnumber
        the free and opening slots (lazy start), and within ``max_hosts``. A retry
        that every connected host has had asks for a fresh host."""
        if self.halted is not None:
            return []
        # a requeued job that every connected host has had wants a new host
        blocked = sum(
            1
            for job in self._retry
            if (state := self._queued(job)) is not None and not self._untried_connected(state)
        )
        return hosts_to_open(
            self.hosts, self._pinned, self.queued, blocked, self.lazy, self.max_hosts
        )

    def opened(self, host: str, now: float) -> None:
        self.hosts[host].opened()

    def unreachable(self, host: str, now: float) -> None:
        """``host`` could not be connected (or authenticated): retired; attempts given
        to it are taken back without cost."""
        h = self.hosts[host]
        h.unreachable()
        for job in list(h.running):
            self._release(self._running[job])
        self._check_hosts(host)

    def lost(self, host: str, now: float) -> List[Attempt]:
        """The connection to ``host`` died or missed its heartbeat: retired; its
        attempts are lost (retried elsewhere, or failed as lost / poisonous); those that
        had not begun are taken back without cost. Returns the affected attempts."""
        h = self.hosts[host]
        h.lose()
        affected = [self._running[job] for job in list(h.running)]
        for a in affected:
            if a.begun:
                self._end(a)
                state = self.jobs[a.job]
                state.lose(self.retries, self.poison_after)
                self._after(a.job, state)
            else:
                self._release(a)
        self._check_hosts(host)
        return affected

    def pause(self, host: str) -> None:
        """Assign nothing more to ``host`` until ``resume`` (e.g. while reconnecting)."""
        self.hosts[host].pause()

    def resume(self, host: str) -> None:
        self.hosts[host].resume()

    def retire(self, host: str, reason: str = RETIRED_HALTED) -> None:
        """Take ``host`` out of the pool (its running attempts finish as usual)."""
        self.hosts[host].retire(reason)
        self._check_hosts(host)

    # -- attempts --------------------------------------------------------------------

    def assign(
        self,
        now: float,
        host: Optional[str] = None,
        queued: bool = False,
        limit: Optional[int] = None,
    ) -> List[Attempt]:
        """Fill free slots (of ``host`` only, if given; at most ``limit`` of them) with
        queued jobs; each attempt begins now, or with ``queued=True`` when the driver
        calls ``started``."""
        out: List[Attempt] = []
        left = -1 if limit is None else limit
        if not self.queued or self.halted is not None:
            return out
        if host is not None:
            order = [self.hosts[host]]
        else:
            names = list(self.hosts)
            self._rotate = (self._rotate + 1) % len(names)
            order = [self.hosts[n] for n in names[self._rotate :] + names[: self._rotate]]
        for h in order:
            while h.free > 0 and self.queued and left != 0:
                job = self._pick(h)
                if job is None:
                    break
                out.append(self._start(job, h, now, queued))
                left -= 1
        return out

    def started(self, attempt: Attempt, now: float) -> bool:
        """The attempt (assigned with ``queued=True``) begins now: its deadline runs."""
        if self._running.get(attempt.job) is not attempt:
            return False
        attempt.begun = True
        attempt.started = now
        timeout = self._timeouts.get(attempt.job, self.timeout)
        attempt.deadline = None if timeout is None else now + timeout
        return True

    def succeeded(self, attempt: Attempt, now: float) -> bool:
        """The attempt's job succeeded. False (nothing changes) for an attempt that is
        no longer current (it was lost, stuck or released meanwhile)."""
        if not self._end(attempt):
            return False
        self.hosts[attempt.host].succeed()
        state = self.jobs[attempt.job]
        state.succeed()
        self._after(attempt.job, state)
        return True

    def failed(self, attempt: Attempt, now: float, code: Optional[int] = None) -> bool:
        """The job failed by itself (``code``: its exit code, None for an exception):
        final unless ``retry_failed`` allows a rerun elsewhere; the host's failure
        streak grows. False for an attempt that is no longer current."""
        if not self._end(attempt):
            return False
        h = self.hosts[attempt.host]
        h.fail(self.retire_after)
        state = self.jobs[attempt.job]
        state.fail(code, self.retry_failed)
        self._after(attempt.job, state)
        self._check_hosts(attempt.host)
        return True

    def release(self, attempt: Attempt) -> bool:
        """Take back an attempt that never began (no budget spent)."""
        if self._running.get(attempt.job) is not attempt:
            return False
        self._release(attempt)
        return True

    def expire(self, now: float, host: Optional[str] = None) -> List[Attempt]:
        """The attempts (on ``host`` only, if given) past their deadline, now stuck
        (retried elsewhere or failed as stuck): the driver must stop them. Their slots
        are free again."""
        pool = self._running.values() if host is None else self.attempts_on(host)
        late = [a for a in pool if a.deadline is not None and a.deadline <= now]
        for a in late:
            self._end(a)
            state = self.jobs[a.job]
            state.stick(self.retries)
            self._after(a.job, state)
        return late

    def stuck(self, attempt: Attempt, now: float) -> bool:
        """The attempt was killed at its timeout before its deadline came (the driver
        heard so): stuck now, as ``expire`` would find it. False if not current."""
        if not self._end(attempt):
            return False
        state = self.jobs[attempt.job]
        state.stick(self.retries)
        self._after(attempt.job, state)
        return True

    def next_deadline(self) -> Optional[float]:
        """The earliest deadline of a running attempt (None: none has one)."""
        times = [a.deadline for a in self._running.values() if a.deadline is not None]
        return min(times) if times else None

    def attempts_on(self, host: str) -> List[Attempt]:
        """The current attempts on ``host``."""
        return [self._running[job] for job in self.hosts[host].running]

    # -- accounting ------------------------------------------------------------------

    def report(self) -> Report:
        """Every job once, by outcome, and the retired hosts (``jobreport.report``)."""
        return jobreport.report(self.jobs, self.hosts)

    def counts(self) -> Dict[str, Any]:
        """Figures for a status line: done, failed, not run, queued, running, total,
        slots (of connected hosts), hosts retired."""
        return jobreport.counts(self.jobs, self.hosts, self.queued, len(self._running))

    # -- inside ----------------------------------------------------------------------

    def _pick(self, h: HostState) -> Optional[Job]:
        """The next job for a free slot of ``h``: a requeued job that may go there
        (not tried there, unless every connected host has tried it), else a new one; a
        dedicated host takes only its pinned jobs."""
        if self._pinned.dedicated(h.name):
            return self._pinned.pop(h.name)
        for i, job in enumerate(self._retry):
            state = self._queued(job)
            if state is None:
                continue
            if h.name not in state.tried or not self._untried_connected(state):
                del self._retry[i]
                return job
        while self._fresh:
            job = self._fresh.popleft()
            if self._queued(job) is not None:
                return job
        # left: requeued jobs that must wait for another host; clear cancelled ones
        self._retry = deque(j for j in self._retry if self._queued(j) is not None)
        return None

    def _queued(self, job: Job) -> Optional[JobState]:
        """The state of a job found in a queue, if it is still queued: a cancelled job
        stays in its queue (taking it out costs a search per cancel) and may be
        forgotten already (``forget``)."""
        state = self.jobs.get(job)
        return state if state is not None and state.state == QUEUED else None

    def _untried_connected(self, state: JobState) -> bool:
        return any(
            h.state in (UP, OPENING, PAUSED) and h.name not in state.tried
            for h in self.hosts.values()
        )

    def _start(self, job: Job, h: HostState, now: float, queued: bool) -> Attempt:
        state = self.jobs[job]
        state.assign(h.name)
        self.queued -= 1
        a = Attempt(job, h.name, state.attempts)
        self._running[job] = a
        h.running.add(job)
        h.use(self.max_uses)
        if not queued:
            self.started(a, now)
        if not h.alive:  # used up by this job
            self._check_hosts(h.name)
        return a

    def _end(self, attempt: Attempt) -> bool:
        """Remove a current attempt from the running set; False if it is not current."""
        if self._running.get(attempt.job) is not attempt:
            return False
        del self._running[attempt.job]
        self.hosts[attempt.host].running.discard(attempt.job)
        return True

    def _release(self, attempt: Attempt) -> None:
        self._end(attempt)
        self.jobs[attempt.job].release()
        self.hosts[attempt.host].uses -= 1  # it never ran there
        if self._pinned.host(attempt.job) is not None:
            self._pinned.push(attempt.job, first=True)
        else:
            self._retry.appendleft(attempt.job)
        self.queued += 1

    def _after(self, job: Job, state: JobState) -> None:
        if state.state == QUEUED:
            if self._pinned.host(job) is not None:
                self._pinned.push(job)
            else:
                self._retry.append(job)
            self.queued += 1
        elif state.final:
            self._settle(job)

    def _any_host_alive(self) -> bool:
        # (a plain loop: add() asks this per job, and the first host is nearly always
        # alive; a generator in any() cost ~3 us a job)
        for h in self.hosts.values():  # noqa: SIM110 - see above
            if h.alive:
                return True
        return False

    def _settle(self, job: Job) -> None:
        """``job`` is final: reported by ``take_settled``; a dedicated host whose last
        pinned job this was has nothing left to do and is used up (once closed)."""
        self._settled.append(job)
        host = self._pinned.final(job)
        if host is not None and self.closed and self.hosts[host].alive:
            self.hosts[host].retire(RETIRED_USED_UP)
            self._check_hosts(host)

    def _check_hosts(self, host: Optional[str] = None) -> None:
        """After ``host`` may have been retired: its queued pinned jobs can never run;
        with no host alive, no queued job can."""
        if host is not None and not self.hosts[host].alive:
            for job in self._pinned.drain(host):
                if self._queued(job) is not None and self.jobs[job].exhaust(NO_HOSTS_LEFT):
                    self.queued -= 1
                    self._settle(job)
        if not self._any_host_alive():
            self._exhaust(NO_HOSTS_LEFT)

    def _exhaust(self, reason: str) -> None:
        for queue in (self._pinned.drain(), self._retry, self._fresh):
            for job in queue:
                if self._queued(job) is not None and self.jobs[job].exhaust(reason):
                    self.queued -= 1
                    self._settled.append(job)
                    self._pinned.final(job)  # (its host is gone or idle: left alone)
            queue.clear()
