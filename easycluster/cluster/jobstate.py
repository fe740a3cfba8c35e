"""The pure per-job and per-host state machines of the scheduler (``scheduler.py``).

``JobState`` is one job's life (queued, running, done, failed, not run) with its retry
budgets; ``HostState`` is one host's (waiting to be opened, opening, up, paused,
retired) with its slots, uses and failure streak. Neither reads a clock, touches a
process or knows the other: ``Scheduler`` drives both. Every transition is drawn in the
class docstrings and tested cell by cell in ``tests/cluster/test_scheduler.py``.

The failure taxonomy (the cluster layer's, DESIGN.md): *unreachable* (could not connect
or authenticate), *lost* (the connection died or a heartbeat was missed while the job
ran), *stuck* (the attempt passed its deadline), *failed* (the job's own non-zero exit
or exception). Only lost and stuck are retried automatically; failed only on request.
"""

from __future__ import annotations

from typing import Dict, Hashable, Iterable, List, Mapping, NamedTuple, Optional, Set, Tuple, Union

Job = Hashable  # a job id: any hashable value

# Job states.
QUEUED = "queued"  # waiting for a slot (new, or requeued after lost / stuck / failed)
RUNNING = "running"  # an attempt holds a slot on some host
DONE = "done"  # an attempt succeeded
FAILED = "failed"  # given up: ``kind`` says why (FAILED_KINDS), ``code`` the last exit
NOT_RUN = "not run"  # never finished: no hosts left, cancelled or halted (``reason``)
JOB_STATES = (QUEUED, RUNNING, DONE, FAILED, NOT_RUN)
JOB_FINAL = frozenset((DONE, FAILED, NOT_RUN))

# Why a job FAILED (its ``kind``).
KIND_FAILED = "failed"  # its own non-zero exit / exception, with no retry_failed left
KIND_LOST = "lost"  # its host was lost and the retries were used up
KIND_STUCK = "stuck"  # it passed its deadline and the retries were used up
KIND_POISONOUS = "poisonous"  # it lost ``poison_after`` hosts: it is what kills them
FAILED_KINDS = (KIND_FAILED, KIND_LOST, KIND_STUCK, KIND_POISONOUS)

# Host states.
WAITING = "waiting"  # listed, not opened yet (lazy start)
OPENING = "opening"  # the driver is connecting to it
UP = "up"  # connected: its free slots take jobs
PAUSED = "paused"  # connected, takes no new job for now (e.g. being reconnected)
RETIRED = "retired"  # takes no job ever again (``reason``)
HOST_STATES = (WAITING, OPENING, UP, PAUSED, RETIRED)

# Why a host was RETIRED (its ``reason``).
RETIRED_UNREACHABLE = "unreachable"
RETIRED_LOST = "lost"
RETIRED_FAILING = "failing"  # K consecutive job failures there
RETIRED_USED_UP = "used up"  # it ran max_uses jobs
RETIRED_HALTED = "halted"  # the driver stopped using it


def _illegal(what: str, event: str, state: str) -> RuntimeError:
    return RuntimeError(f"{what}: {event!r} cannot happen in state {state!r}")


class JobState:
    """One job, from queued to one final state (DONE, FAILED, NOT_RUN).

    Budgets (from the scheduler): ``retries`` automatic reruns after lost or stuck
    attempts (together); ``poison_after`` lost attempts make the job poisonous (it is
    not retried again: it is probably what kills its hosts); ``retry_failed`` reruns
    after the job's own failures. Events and next states (``retry`` is QUEUED while the
    event's budget lasts, else FAILED with the kind in brackets; ``-`` changes nothing
    and the event answers False; ``illegal`` raises RuntimeError)::

                    QUEUED     RUNNING            DONE     FAILED   NOT_RUN
        assign      RUNNING    illegal            illegal  illegal  illegal
        succeed     illegal    DONE               illegal  illegal  illegal
        fail        illegal    retry[failed]      illegal  illegal  illegal
        lose        illegal    retry[lost]        illegal  illegal  illegal
        stick       illegal    retry[stuck]       illegal  illegal  illegal
        release     illegal    QUEUED             illegal  illegal  illegal
        cancel      NOT_RUN    -                  -        -        -
        exhaust     NOT_RUN    -                  -        -        -

    ``lose`` fails as ``poisonous`` (before looking at ``retries``) once the job has
    lost ``poison_after`` hosts. ``release`` takes an attempt back that never began (its
    host was unreachable, or the attempt was queued behind others on a host that went
    away): no budget is spent. ``cancel`` and ``exhaust`` (no hosts left, or halted)
    end a queued job as NOT_RUN with a ``reason``; a running one is left alone. A queued
    job that already ran (it waits for a retry) is not "not run": ``exhaust`` ends it
    FAILED with the class of its last attempt (``last``: lost, stuck or failed, and
    ``code``), so a job that took its hosts down is reported as lost, not as never run.
    Every host an attempt failed, was lost or stuck on goes into ``tried``, so the
    scheduler can send the retry elsewhere.
    """

    __slots__ = (
        "state",
        "attempts",
        "retried",
        "losses",
        "failures",
        "kind",
        "code",
        "reason",
        "host",
        "tried",
        "last",
    )

    def __init__(self) -> None:
        self.state = QUEUED
        self.attempts = 0  # attempts assigned so far (released ones not counted)
        self.retried = 0  # automatic reruns spent (lost + stuck)
        self.losses = 0  # attempts lost with their host
        self.failures = 0  # the job's own failures
        self.kind: Optional[str] = None  # FAILED: why (FAILED_KINDS)
        self.code: Optional[int] = None  # the last exit code of a failed attempt
        self.reason: Optional[str] = None  # NOT_RUN: why
        self.host: Optional[str] = None  # RUNNING: where; DONE: where it succeeded
        self.tried: Set[str] = set()  # hosts where an attempt failed, was lost or stuck
        self.last: Optional[str] = None  # the kind of the last attempt that did not succeed

    @property
    def final(self) -> bool:
        return self.state in JOB_FINAL

    def _running(self, event: str) -> str:
        if self.state != RUNNING:
            raise _illegal("job", event, self.state)
        if self.host is None:  # (set by assign, before RUNNING)
            raise _illegal("job", event, "running without a host")
        return self.host

    def assign(self, host: str) -> None:
        if self.state != QUEUED:
            raise _illegal("job", "assign", self.state)
        self.state = RUNNING
        self.host = host
        self.attempts += 1

    def succeed(self) -> None:
        self._running("succeed")
        self.state = DONE

    def _requeue_or_fail(self, host: str, again: bool, kind: str) -> None:
        self.tried.add(host)
        self.host = None
        self.last = kind
        if again:
            self.state = QUEUED
        else:
            self.state = FAILED
            self.kind = kind

    def fail(self, code: Optional[int], retry_failed: int) -> None:
        host = self._running("fail")
        self.failures += 1
        self.code = code
        self._requeue_or_fail(host, self.failures <= retry_failed, KIND_FAILED)

    def lose(self, retries: int, poison_after: int) -> None:
        host = self._running("lose")
        self.losses += 1
        if poison_after and self.losses >= poison_after:
            self._requeue_or_fail(host, False, KIND_POISONOUS)
            return
        self.retried += 1
        self._requeue_or_fail(host, self.retried <= retries, KIND_LOST)

    def stick(self, retries: int) -> None:
        host = self._running("stick")
        self.retried += 1
        self._requeue_or_fail(host, self.retried <= retries, KIND_STUCK)

    def release(self) -> None:
        self._running("release")
        self.state = QUEUED
        self.host = None
        self.attempts -= 1  # it never began: not an attempt

    def cancel(self, reason: str = "cancelled") -> bool:
        if self.state != QUEUED:
            return False
        self.state = NOT_RUN
        self.reason = reason
        return True

    def exhaust(self, reason: str) -> bool:
        """No host will run it (``reason``): NOT_RUN, or FAILED as its last attempt was
        (``last``) if it ran before; False unless it was queued."""
        if self.state == QUEUED and self.last is not None:
            self.state = FAILED
            self.kind = self.last
            return True
        return self.cancel(reason)


class HostState:
    """One host: its slots, how many jobs it took, its failure streak.

    ``retire_after`` (K) consecutive job failures retire it (0: never); ``max_uses``
    jobs retire it (0: unlimited) once the last one is assigned. A job's own failure
    never retires a host by itself unless K is 1. Events and next states (``-``: no
    change; ``illegal`` raises RuntimeError; ``retire?`` is RETIRED when its limit is
    reached, else no change)::

                     WAITING    OPENING    UP         PAUSED     RETIRED
        open         OPENING    illegal    illegal    illegal    illegal
        opened       illegal    UP         illegal    illegal    illegal
        unreachable  RETIRED    RETIRED    RETIRED    RETIRED    -
        lose         illegal    RETIRED    RETIRED    RETIRED    -
        use          illegal    illegal    retire?    illegal    illegal
        succeed      illegal    illegal    -          -          -
        fail         illegal    illegal    retire?    retire?    -
        pause        illegal    illegal    PAUSED     -          -
        resume       illegal    illegal    -          UP         -
        retire       RETIRED    RETIRED    RETIRED    RETIRED    -

    ``use`` counts a job assigned to it (RETIRED as ``used up`` at ``max_uses``);
    ``succeed`` ends the failure streak; ``fail`` lengthens it (RETIRED as ``failing``
    at K). Results of jobs still running on a retired host are accepted (``-``): a
    host retired as failing or used up finishes what it runs.
    """

    __slots__ = ("name", "slots", "state", "uses", "streak", "reason", "running")

    def __init__(self, name: str, slots: int) -> None:
        self.name = name
        self.slots = slots
        self.state = WAITING
        self.uses = 0
        self.streak = 0  # consecutive job failures
        self.reason: Optional[str] = None  # RETIRED: why
        self.running: Set[object] = set()  # jobs with an attempt here

    @property
    def free(self) -> int:
        """Slots that may take a job now."""
        return self.slots - len(self.running) if self.state == UP else 0

    @property
    def alive(self) -> bool:
        """Not retired: it may still take jobs (now or once opened or resumed)."""
        return self.state != RETIRED

    def _need(self, event: str, *states: str) -> None:
        if self.state not in states:
            raise _illegal(f"host {self.name}", event, self.state)

    def _retire(self, reason: str) -> None:
        if self.state != RETIRED:
            self.state = RETIRED
            self.reason = reason

    def open(self) -> None:
        self._need("open", WAITING)
        self.state = OPENING

    def opened(self) -> None:
        self._need("opened", OPENING)
        self.state = UP

    def unreachable(self) -> None:
        self._retire(RETIRED_UNREACHABLE)

    def lose(self) -> None:
        self._need("lose", OPENING, UP, PAUSED, RETIRED)
        self._retire(RETIRED_LOST)

    def use(self, max_uses: int) -> None:
        self._need("use", UP)
        self.uses += 1
        if max_uses and self.uses >= max_uses:
            self._retire(RETIRED_USED_UP)

    def succeed(self) -> None:
        self._need("succeed", UP, PAUSED, RETIRED)
        self.streak = 0

    def fail(self, retire_after: int) -> None:
        self._need("fail", UP, PAUSED, RETIRED)
        self.streak += 1
        if retire_after and self.streak >= retire_after:
            self._retire(RETIRED_FAILING)

    def pause(self) -> None:
        self._need("pause", UP, PAUSED, RETIRED)
        if self.state == UP:
            self.state = PAUSED

    def resume(self) -> None:
        self._need("resume", UP, PAUSED, RETIRED)
        if self.state == PAUSED:
            self.state = UP

    def retire(self, reason: str) -> None:
        self._retire(reason)


class Attempt:
    """One try of ``job`` on ``host`` (its ``number``-th). ``deadline`` is None until
    it begins (``begun``) or without a timeout."""

    __slots__ = ("job", "host", "number", "begun", "started", "deadline")

    def __init__(self, job: Job, host: str, number: int) -> None:
        self.job = job
        self.host = host
        self.number = number
        self.begun = False
        self.started: Optional[float] = None
        self.deadline: Optional[float] = None

    def __repr__(self) -> str:
        return f"Attempt({self.job!r} on {self.host!r}, #{self.number})"


class Report(NamedTuple):
    """Every job once: ``done``; ``failed`` {job: (kind, last exit code or None)};
    ``not_run`` {job: reason}; ``unfinished`` (queued or running: only before the end).
    ``retired`` {host: reason}. ``attempts`` {failed job: (attempts, of them lost)}."""

    total: int
    done: List[Job]
    failed: Dict[Job, Tuple[str, Optional[int]]]
    not_run: Dict[Job, str]
    unfinished: List[Job]
    retired: Dict[str, str]
    attempts: Optional[Dict[Job, Tuple[int, int]]] = None

    @property
    def ok(self) -> bool:
        return len(self.done) == self.total


def host_slots(hosts: Union[Iterable[str], Mapping[str, int]], slots: int) -> Dict[str, int]:
    """``{host: slot count}`` from a list (a host listed N times has N slots) or a
    mapping, each count times ``slots``; clear errors for bad input."""
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ValueError(f"slots must be a whole number >= 1, not {slots!r}")
    counts: Dict[str, int] = {}
    if isinstance(hosts, Mapping):
        for name, n in hosts.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"host {name!r}: its slot count must be >= 1, not {n!r}")
            counts[str(name)] = n * slots
    else:
        if isinstance(hosts, str):
            raise TypeError(f"hosts is a list of host names, not the string {hosts!r}")
        for name in hosts:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a host name must be a non-empty string, not {name!r}")
            counts[name] = counts.get(name, 0) + slots
    if not counts:
        raise ValueError("the scheduler needs at least one host")
    return counts


def count_option(name: str, value: int) -> int:
    """``value`` checked as a whole number >= 0 (the option ``name`` in the error)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
    return value
