"""The job farm's engine: shell jobs over warm sessions, scheduled by ``scheduler.py``.

``Farm(jobs, hosts, connect, options).run(observer)`` runs every job (a shell command)
once on some host slot and returns the scheduler's ``Report``: every job done, failed
(kind and last exit code) or not run. A host listed N times has N slots (``--slots``
multiplies). Each host gets one session (``ThreadedClient``, opened lazily by
``connect(host)``), and each of its slots is a server thread of that session, so a job
costs one round trip on an open connection, never an ssh start.

On the host a job runs as ``sh -c COMMAND`` in a new session, with ``/dev/null`` as
stdin and its stdout and stderr captured; with a timeout its whole process group is
killed at the deadline (``farm_runner``, which also kills what still runs when the
farm gives up: ``--halt now``, Ctrl-C).

What the driver reports to the scheduler (the failure taxonomy):

=================================== ==============================================
this happens                        the scheduler hears
=================================== ==============================================
``connect(host)`` raises            ``unreachable(host)``: retired, no cost to jobs
a reply fails with ConnectionLost   ``lost(host)``: retired, its jobs retried
(the server died, or sent nothing   elsewhere (poisonous after 3 lost hosts)
for 2 heartbeats: SIGKILL, SIGSTOP)
the runner killed the job at        ``stuck``: as ``expire``, at once, with the
``timeout`` and said so             output the job wrote until then
the attempt's deadline passes       ``expire``: stuck, retried elsewhere; the
(``timeout`` + ``grace``)           server killed the job at ``timeout``
the job exits non-zero              ``failed(code)``: final unless ``retry_failed``;
                                    the host stays (retired only after
                                    ``retire_after`` failures in a row)
``host_gone(host)``: SLURM took     ``lost(host)``; ``unreachable(host)`` if its
the node out of service             session had not opened yet
=================================== ==============================================

A late reply for an attempt already judged (stuck, or lost) changes nothing. Retried
work runs at least once, possibly more: a job whose host was lost may have finished
there before the loss was seen.

One thread (the caller's) owns the scheduler: connects run in a small pool and replies
arrive on the sessions' reader threads, and both only put events on a queue that the
loop takes them from. ``observer`` is called on that thread too.
"""

from __future__ import annotations

import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, List, NamedTuple, Optional, Sequence, Set, Tuple

from ..errors import ConnectionLost
from .scheduler import HALTED, Attempt, Report, Scheduler

RUNNER = "easycluster_farm_run"  # the names the runner's two functions have on a server
KILLER = "easycluster_farm_kill"
_PAIR = "easycluster_farm_pair"
KILL_WAIT = 2.0  # seconds to wait for a server to kill abandoned jobs

Runner = Callable[[str, Optional[float]], Tuple[Optional[int], bytes, bytes, bool]]


def _make_runner() -> Tuple[Runner, Callable[[], int]]:
    """The two functions each server keeps: ``run(command, timeout)`` runs one job,
    ``kill()`` kills the process groups of the jobs running (``--halt now``, Ctrl-C).
    Made inside a function so cloudpickle sends them by value (servers have no
    ``easycluster.cluster``), together in one pickle so they share ``running``; they
    return plain data."""
    running: Dict[int, Any] = {}  # pid: Popen, of the jobs running on this server

    def run(command: str, timeout: Optional[float]) -> Tuple[Optional[int], bytes, bytes, bool]:
        import os
        import signal
        import subprocess

        proc = subprocess.Popen(
            command,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
        running[proc.pid] = proc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            return None, out, err, True
        finally:
            running.pop(proc.pid, None)
        rc = proc.returncode
        return (128 - rc if rc < 0 else rc), out, err, False

    def kill() -> int:
        import os
        import signal

        count = 0
        for pid in list(running):
            try:
                os.killpg(pid, signal.SIGKILL)
                count += 1
            except ProcessLookupError:
                pass
        return count

    return run, kill


farm_runner = _make_runner()


def install_runner(client: Any) -> None:
    """Store the runner's functions on ``client``'s server (as ``RUNNER``, ``KILLER``)."""
    client.set_global(_PAIR, farm_runner)
    client.execblock(f"{RUNNER}, {KILLER} = {_PAIR}")


def seq_of(job: Hashable) -> int:
    """A scheduler job id as the farm's job number (the farm only adds ints)."""
    if not isinstance(job, int):
        raise TypeError(f"the farm's job ids are ints, not {job!r}")
    return job


class Job(NamedTuple):
    """One job: ``seq`` (its 1-based number in the job list) and its shell command;
    ``host``: the only host it (and any retry of it) may run on (``-E``), or None."""

    seq: int
    command: str
    host: Optional[str] = None


class AttemptEnd(NamedTuple):
    """How one attempt ended: ``klass`` is done, failed, lost, stuck or killed (abandoned
    while running: ``--halt now``, Ctrl-C); ``code`` the exit code (None when there was
    none); ``start`` wall-clock seconds since the epoch. A stuck attempt carries what
    the job wrote before it was killed at its timeout."""

    job: Job
    host: str
    start: float
    duration: float
    code: Optional[int]
    klass: str
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class FarmOptions:
    """How the farm schedules (see ``Scheduler`` for the scheduling terms)."""

    slots: int = 1
    retries: int = 3
    retry_failed: int = 0
    poison_after: int = 3
    retire_after: int = 5
    max_hosts: int = 0
    max_uses: int = 0
    timeout: Optional[float] = None  # seconds a job may run; the server kills it then
    grace: float = 1.0  # seconds after ``timeout`` before the attempt is judged stuck
    halt: Optional[Tuple[str, int]] = None  # ("now" | "soon", failed jobs that halt)
    connect_fanout: int = 32
    tick: float = 0.25  # seconds between observer.tick calls while waiting


class FarmObserver:
    """What a farm tells its user; the default does nothing."""

    def attempt_ended(self, end: AttemptEnd) -> None:
        """An attempt ended (every attempt exactly once; in the joblog's order)."""

    def host_retired(self, host: str, reason: str, detail: str) -> None:
        """``host`` takes no more jobs: unreachable (``detail``: the error) or lost."""

    def tick(self, farm: Farm) -> None:
        """Called at most every ``tick`` seconds and at every state change burst: a
        chance to redraw a status line (``farm.counts()``, ``farm.active()``)."""


class Farm:
    """Runs ``jobs`` over ``hosts`` (module doc). ``connect(host)`` returns an open
    ``ThreadedClient`` (or raises: the host is unreachable). ``skip`` holds seqs not to
    run (already done, ``--resume``)."""

    def __init__(
        self,
        jobs: Sequence[Job],
        hosts: Sequence[str],
        connect: Callable[[str], Any],
        options: FarmOptions = FarmOptions(),
    ) -> None:
        if not hosts:
            raise ValueError("the farm needs at least one host")
        self.jobs = {job.seq: job for job in jobs}
        self.options = options
        self.connect = connect
        o = options
        deadline = None if o.timeout is None else o.timeout + o.grace
        self.scheduler = Scheduler(
            list(hosts),
            slots=o.slots,
            retries=o.retries,
            poison_after=o.poison_after,
            retry_failed=o.retry_failed,
            retire_after=o.retire_after,
            max_uses=o.max_uses,
            max_hosts=o.max_hosts,
            timeout=deadline,
        )
        for job in jobs:
            self.scheduler.add(job.seq, host=job.host)
        self.scheduler.close()
        self.clients: Dict[str, Any] = {}
        self.retired: Dict[str, Tuple[str, str]] = {}  # host: (reason, detail)
        self.halted: Optional[str] = None  # "now" or "soon" once --halt fired
        self.killed: Set[int] = set()  # seqs abandoned while running (--halt now, Ctrl-C)
        self._abandoned = False  # _abandon ran (once per run: a failing observer may ask twice)
        self._events: queue.Queue[Tuple[Any, ...]] = queue.Queue()
        self._free_tids: Dict[str, List[int]] = {}
        self._next_tid: Dict[str, int] = {}
        self._starts: Dict[int, Tuple[float, float]] = {}  # seq: (monotonic, wall) start
        self._failed = 0
        self.started = time.monotonic()

    def host_gone(self, host: str, why: str) -> None:
        """``host`` must take no more work though its session may still answer (SLURM
        drained or downed its node: ``launch/slurmwatch.py``). Safe from any thread: the
        loop retires it as lost, its running jobs retried elsewhere as for a dead
        session (a host not connected yet is retired as unreachable). ``why`` is what
        the summary says of it."""
        self._events.put(("gone", host, why))

    # -- what observers read ---------------------------------------------------------

    def counts(self) -> Dict[str, Any]:
        """The scheduler's counts (done, failed, not run, queued, running, total,
        slots, retired) plus ``elapsed`` seconds."""
        c = self.scheduler.counts()
        c["elapsed"] = time.monotonic() - self.started
        return c

    def active(self) -> List[Tuple[str, Job]]:
        """``(host, job)`` for every running attempt, by host."""
        out = []
        for name, h in self.scheduler.hosts.items():
            for seq in sorted(seq_of(job) for job in h.running):
                out.append((name, self.jobs[seq]))
        return out

    # -- the loop --------------------------------------------------------------------

    def run(self, observer: Optional[FarmObserver] = None) -> Report:
        """Run until every job is final (or ``--halt now``); always closes the sessions.
        On KeyboardInterrupt, or an error from ``observer`` (a file it cannot write),
        the running jobs are abandoned (``killed``: their processes killed, never left
        running unreported) and it propagates after the sessions are closed."""
        obs = observer or FarmObserver()
        s = self.scheduler
        pool = ThreadPoolExecutor(max_workers=self.options.connect_fanout)
        last_tick = 0.0
        try:
            while True:
                now = time.monotonic()
                for host in s.to_open(now):
                    pool.submit(self._connect, host)
                for attempt in s.assign(now):
                    self._start(attempt, now)
                if s.finished or self.halted == "now":
                    break
                wait = self.options.tick
                deadline = s.next_deadline()
                if deadline is not None:
                    wait = max(0.0, min(wait, deadline - now))
                try:
                    event = self._events.get(timeout=wait)
                except queue.Empty:
                    event = None
                while event is not None:
                    self._handle(event, obs)
                    try:
                        event = self._events.get_nowait()
                    except queue.Empty:
                        event = None
                now = time.monotonic()
                for attempt in s.expire(now):
                    self._ended(attempt, None, "stuck", b"", b"", obs)
                self._check_halt()
                if now - last_tick >= self.options.tick:
                    last_tick = now
                    obs.tick(self)
            if self.halted == "now":
                self._abandon(obs)
        except BaseException:  # Ctrl-C, or the observer failed: nothing may run on unseen
            try:
                self._abandon(obs)
            except Exception:  # (the observer again: the error being raised says why)
                pass
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._drain_connects()
            for client in self.clients.values():
                client.close()
        obs.tick(self)
        return s.report()

    def _abandon(self, obs: FarmObserver) -> None:
        """Running attempts are given up: their processes are killed on every host that
        answers within ``KILL_WAIT`` (the sessions are closed next), and each ends as
        ``killed`` for the observer (the joblog: a line that ``--resume`` reruns). Done
        once per run; the kills come before the reports, so an observer that fails (a
        joblog that cannot be written: the reason the run stops, maybe) never leaves a
        job running. The observer's first error is raised once every job is reported."""
        if self._abandoned:
            return
        self._abandoned = True
        running = list(self.active())
        hosts = set()
        for host, job in running:
            self.killed.add(job.seq)
            hosts.add(host)
        for host in hosts:
            client = self.clients.get(host)
            if client is None or host in self.retired:
                continue
            tid = self._next_tid.get(host, 1)  # a thread no job is queued on
            self._next_tid[host] = tid + 1
            try:
                client.call(KILLER, threadid=tid, call_timeout=KILL_WAIT)
            except Exception:  # noqa: BLE001 - a host that cannot kill is closed anyway
                pass
        failed: Optional[Exception] = None
        for host, job in running:
            try:
                self._report_killed(job, host, obs)
            except Exception as e:  # (the next jobs are reported all the same)
                failed = failed or e
        if failed is not None:
            raise failed

    def _report_killed(self, job: Job, host: str, obs: FarmObserver) -> None:
        mono, wall = self._starts.get(job.seq, (time.monotonic(), time.time()))
        duration = time.monotonic() - mono
        obs.attempt_ended(AttemptEnd(job, host, wall, duration, None, "killed", b"", b""))

    def _check_halt(self) -> None:
        halt = self.options.halt
        if halt is None or self.halted is not None:
            return
        when, limit = halt
        if self._failed >= limit:
            self.halted = when
            self.scheduler.halt(HALTED)

    # -- connects and calls ----------------------------------------------------------

    def _connect(self, host: str) -> None:
        """In the pool: open ``host``'s session and store the runner there."""
        client = None
        try:
            client = self.connect(host)
            install_runner(client)
        except Exception as e:  # any failure to connect is this host's outcome
            if client is not None:
                client.close()
            self._events.put(("unreachable", host, e))
            return
        self._events.put(("opened", host, client))

    def _drain_connects(self) -> None:
        """Close sessions whose connect ended after the loop did."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if event[0] == "opened" and event[1] not in self.clients:
                event[2].close()

    def _start(self, attempt: Attempt, now: float) -> None:
        host = attempt.host
        free = self._free_tids.setdefault(host, [])
        if free:
            tid = free.pop()
        else:  # each slot is a server thread of the host's one session
            tid = self._next_tid.get(host, 1)
            self._next_tid[host] = tid + 1
        job = self.jobs[seq_of(attempt.job)]
        self._starts[job.seq] = (now, time.time())
        try:
            resp = self.clients[host].call(
                RUNNER, job.command, self.options.timeout, nonblocking=True, threadid=tid
            )
        except ConnectionLost as e:
            self._events.put(("lost", host, e))
            return
        events = self._events
        resp.add_done_callback(lambda fut: events.put(("reply", attempt, tid, fut)))

    def _handle(self, event: Tuple[Any, ...], obs: FarmObserver) -> None:
        kind = event[0]
        s = self.scheduler
        now = time.monotonic()
        if kind == "opened":
            _, host, client = event
            if host in self.retired:  # gone while it connected (host_gone)
                client.close()
                return
            self.clients[host] = client
            s.opened(host, now)
        elif kind == "unreachable":
            _, host, exc = event
            if host in self.retired:
                return
            s.unreachable(host, now)
            self.retired[host] = ("unreachable", str(exc))
            obs.host_retired(host, "unreachable", str(exc))
        elif kind == "lost":
            self._lose(event[1], event[2], obs)
        elif kind == "gone":
            self._gone(event[1], event[2], obs)
        elif kind == "reply":
            _, attempt, tid, fut = event
            exc = fut.exception()
            if isinstance(exc, ConnectionLost):
                self._lose(attempt.host, exc, obs)
                return
            self._free_tids.setdefault(attempt.host, []).append(tid)
            if exc is not None:  # the runner itself raised (e.g. no fork): the job failed
                if s.failed(attempt, now, None):
                    self._ended(attempt, None, "failed", b"", str(exc).encode(), obs)
                return
            code, out, err, timed_out = fut.result()
            if timed_out:  # killed at --timeout: stuck now, with what it wrote till then
                if s.stuck(attempt, now):
                    self._ended(attempt, None, "stuck", out, err, obs)
                return
            if code == 0:
                if s.succeeded(attempt, now):
                    self._ended(attempt, 0, "done", out, err, obs)
            elif s.failed(attempt, now, code):
                self._failed_seen(attempt)
                self._ended(attempt, code, "failed", out, err, obs)

    def _failed_seen(self, attempt: Attempt) -> None:
        state = self.scheduler.jobs[attempt.job]
        if state.final:
            self._failed += 1

    def _gone(self, host: str, why: str, obs: FarmObserver) -> None:
        """``host_gone``: a host with a session is lost (its jobs retried elsewhere); one
        not connected yet is never opened (retired as unreachable: no job ran there)."""
        if host not in self.scheduler.hosts or host in self.retired:
            return
        if host in self.clients:
            self._lose(host, ConnectionLost(why), obs)
            return
        self.scheduler.unreachable(host, time.monotonic())
        self.retired[host] = ("unreachable", why)
        obs.host_retired(host, "unreachable", why)

    def _lose(self, host: str, exc: BaseException, obs: FarmObserver) -> None:
        """``host``'s session died (once per host; later replies find it retired)."""
        if host in self.retired:
            return
        self.retired[host] = ("lost", str(exc))
        client = self.clients.get(host)
        if client is not None:
            client.close()
        for attempt in self.scheduler.lost(host, time.monotonic()):
            if attempt.job in self._starts and attempt.begun:
                self._ended(attempt, None, "lost", b"", b"", obs)
        obs.host_retired(host, "lost", str(exc))

    def _ended(
        self,
        attempt: Attempt,
        code: Optional[int],
        klass: str,
        out: bytes,
        err: bytes,
        obs: FarmObserver,
    ) -> None:
        job = self.jobs[seq_of(attempt.job)]
        mono, wall = self._starts.get(job.seq, (time.monotonic(), time.time()))
        if klass in ("lost", "stuck") and self.scheduler.jobs[attempt.job].final:
            self._failed += 1
        end = AttemptEnd(job, attempt.host, wall, time.monotonic() - mono, code, klass, out, err)
        obs.attempt_ended(end)


def run_jobs(
    commands: Sequence[str],
    hosts: Sequence[str],
    connect: Callable[[str], Any],
    options: FarmOptions = FarmOptions(),
    observer: Optional[FarmObserver] = None,
) -> Report:
    """Run shell ``commands`` (seqs 1..N) over ``hosts``; the scheduler's report."""
    jobs = [Job(i, c) for i, c in enumerate(commands, 1)]
    return Farm(jobs, hosts, connect, options).run(observer)
