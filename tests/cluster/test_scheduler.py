"""The scheduling core, pure, with a fake clock: every drawn cell of ``JobState`` and
``HostState`` (read from their docstrings, so the drawing cannot drift from the code),
then the ``Scheduler``: slots, lazy start, the failure taxonomy, retries on another
host, poison, host retirement, max uses, deadlines, "no hosts left", and the final
accounting. No processes."""

from __future__ import annotations

from typing import Callable, Dict

import pytest
from drawn import cells, drawn_tables

from easycluster.cluster import jobstate as js
from easycluster.cluster.jobstate import HostState, JobState
from easycluster.cluster.scheduler import NO_HOSTS_LEFT, Scheduler

(JOB_TABLE,) = drawn_tables(JobState.__doc__ or "")
(HOST_TABLE,) = drawn_tables(HostState.__doc__ or "")


# -- JobState, cell by cell ------------------------------------------------------------

JOB_REACH: Dict[str, Callable[[JobState], object]] = {
    js.QUEUED: lambda s: None,
    js.RUNNING: lambda s: s.assign("h1"),
    js.DONE: lambda s: (s.assign("h1"), s.succeed()),
    js.FAILED: lambda s: (s.assign("h1"), s.fail(3, 0)),
    js.NOT_RUN: lambda s: s.cancel(),
}

# Each event with a budget left ("go") and with none ("stop"); plain events ignore it.
JOB_EVENTS: Dict[str, Callable[[JobState, bool], object]] = {
    "assign": lambda s, go: s.assign("h2"),
    "succeed": lambda s, go: s.succeed(),
    "fail": lambda s, go: s.fail(7, 1 if go else 0),
    "lose": lambda s, go: s.lose(1 if go else 0, 0),
    "stick": lambda s, go: s.stick(1 if go else 0),
    "release": lambda s, go: s.release(),
    "cancel": lambda s, go: s.cancel(),
    "exhaust": lambda s, go: s.exhaust(NO_HOSTS_LEFT),
}


def job_in(state: str) -> JobState:
    s = JobState()
    JOB_REACH[state](s)
    assert s.state == state
    return s


def test_the_job_table_draws_every_state_and_event():
    header, rows = JOB_TABLE
    assert [h.lower().replace("_", " ") for h in header] == list(js.JOB_STATES)
    assert [event for event, _ in rows] == list(JOB_EVENTS)


@pytest.mark.parametrize("column, event, cell", [p.values for p in cells(JOB_TABLE)])
@pytest.mark.parametrize("budget", [True, False], ids=["budget", "no-budget"])
def test_job_transition(column, event, cell, budget):
    state = column.lower().replace("_", " ")
    s = job_in(state)
    before = (s.state, s.attempts, s.retried, s.losses, s.failures)
    if cell == "illegal":
        with pytest.raises(RuntimeError, match=f"{event!r} cannot happen in state {state!r}"):
            JOB_EVENTS[event](s, budget)
        assert (s.state, s.attempts, s.retried, s.losses, s.failures) == before
        return
    answer = JOB_EVENTS[event](s, budget)
    if cell == "-":
        assert answer is False
        assert (s.state, s.attempts, s.retried, s.losses, s.failures) == before
        return
    if cell.startswith("retry["):
        kind = cell[len("retry[") : -1]
        if budget:
            assert s.state == js.QUEUED and s.kind is None
        else:
            assert s.state == js.FAILED and s.kind == kind
        assert "h1" in s.tried and s.host is None
        if event == "fail":
            assert s.code == 7
        return
    assert s.state == cell.lower().replace("_", " ")
    if s.state == js.NOT_RUN:
        assert s.reason in ("cancelled", NO_HOSTS_LEFT)
    if event == "release":
        assert s.attempts == 0 and not s.tried  # it never began: no cost
    if event == "assign":
        assert s.attempts == 1 and s.host == "h2"


def test_a_job_that_loses_poison_after_hosts_is_poisonous_even_with_retries_left():
    s = JobState()
    for host in ("a", "b"):
        s.assign(host)
        s.lose(retries=10, poison_after=3)
        assert s.state == js.QUEUED
    s.assign("c")
    s.lose(retries=10, poison_after=3)
    assert (s.state, s.kind, s.losses) == (js.FAILED, js.KIND_POISONOUS, 3)
    assert s.tried == {"a", "b", "c"}


# -- HostState, cell by cell -----------------------------------------------------------

HOST_REACH: Dict[str, Callable[[HostState], object]] = {
    js.WAITING: lambda h: None,
    js.OPENING: lambda h: h.open(),
    js.UP: lambda h: (h.open(), h.opened()),
    js.PAUSED: lambda h: (h.open(), h.opened(), h.pause()),
    js.RETIRED: lambda h: h.retire("halted"),
}

# "limit" is True when the event's limit is reached by this very event.
HOST_EVENTS: Dict[str, Callable[[HostState, bool], object]] = {
    "open": lambda h, limit: h.open(),
    "opened": lambda h, limit: h.opened(),
    "unreachable": lambda h, limit: h.unreachable(),
    "lose": lambda h, limit: h.lose(),
    "use": lambda h, limit: h.use(1 if limit else 0),
    "succeed": lambda h, limit: h.succeed(),
    "fail": lambda h, limit: h.fail(1 if limit else 0),
    "pause": lambda h, limit: h.pause(),
    "resume": lambda h, limit: h.resume(),
    "retire": lambda h, limit: h.retire("halted"),
}

RETIRE_REASON = {
    "unreachable": js.RETIRED_UNREACHABLE,
    "lose": js.RETIRED_LOST,
    "use": js.RETIRED_USED_UP,
    "fail": js.RETIRED_FAILING,
    "retire": "halted",
}


def test_the_host_table_draws_every_state_and_event():
    header, rows = HOST_TABLE
    assert [h.lower() for h in header] == list(js.HOST_STATES)
    assert [event for event, _ in rows] == list(HOST_EVENTS)


@pytest.mark.parametrize("column, event, cell", [p.values for p in cells(HOST_TABLE)])
@pytest.mark.parametrize("limit", [True, False], ids=["limit", "no-limit"])
def test_host_transition(column, event, cell, limit):
    state = column.lower()
    h = HostState("n1", 2)
    HOST_REACH[state](h)
    assert h.state == state
    if cell == "illegal":
        with pytest.raises(RuntimeError, match=f"{event!r} cannot happen in state {state!r}"):
            HOST_EVENTS[event](h, limit)
        assert h.state == state
        return
    reason_before = h.reason
    HOST_EVENTS[event](h, limit)
    if cell == "-":
        assert h.state == state and h.reason == reason_before
    elif cell == "retire?":
        if limit:
            assert h.state == js.RETIRED and h.reason == RETIRE_REASON[event]
        else:
            assert h.state == state
    else:
        assert h.state == cell.lower()
        if h.state == js.RETIRED:
            assert h.reason == RETIRE_REASON[event]
    if event == "succeed":
        assert h.streak == 0
    if event == "fail":
        assert h.streak == 1


def test_a_success_ends_the_failure_streak():
    h = HostState("n1", 1)
    h.open()
    h.opened()
    h.fail(3)
    h.fail(3)
    h.succeed()
    h.fail(3)
    h.fail(3)
    assert h.state == js.UP and h.streak == 2
    h.fail(3)
    assert h.state == js.RETIRED and h.reason == js.RETIRED_FAILING


# -- Scheduler ---------------------------------------------------------------------------


class Clock:
    """The fake clock: seconds, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def up(s: Scheduler, clock: Clock) -> None:
    """Open every host the scheduler asks for."""
    for host in s.to_open(clock()):
        s.opened(host, clock())


def make(hosts, jobs, **kw) -> Scheduler:
    s = Scheduler(hosts, **kw)
    s.add_many(jobs)
    s.close()
    return s


def assert_accounted(s: Scheduler) -> None:
    r = s.report()
    assert len(r.done) + len(r.failed) + len(r.not_run) + len(r.unfinished) == r.total
    assert r.total == len(s.jobs)
    assert set(r.done) | set(r.failed) | set(r.not_run) | set(r.unfinished) == set(s.jobs)


def test_a_host_listed_n_times_has_n_slots_and_slots_multiplies():
    clock = Clock()
    s = make(["a", "a", "b"], range(10))
    up(s, clock)
    got = s.assign(clock())
    assert sorted(a.host for a in got) == ["a", "a", "b"]
    s2 = make({"a": 2, "b": 1}, range(10), slots=2)
    up(s2, clock)
    assert sorted(a.host for a in s2.assign(clock())) == ["a", "a", "a", "a", "b", "b"]


def test_jobs_go_in_fifo_order_and_only_to_free_slots():
    clock = Clock()
    s = make(["a", "b"], ["j1", "j2", "j3"])
    up(s, clock)
    first = s.assign(clock())
    assert sorted(a.job for a in first) == ["j1", "j2"]
    assert s.assign(clock()) == []  # no free slot
    s.succeeded(first[0], clock())
    (third,) = s.assign(clock())
    assert third.job == "j3" and third.host == first[0].host


def test_lazy_start_opens_hosts_only_while_jobs_outnumber_free_slots():
    clock = Clock()
    s = make(["a", "b", "c", "d"], ["j1", "j2"])
    assert s.to_open(clock()) == ["a", "b"]
    assert s.to_open(clock()) == []  # the opening slots are counted as supply
    s.opened("a", clock())
    s.opened("b", clock())
    assert len(s.assign(clock())) == 2
    assert s.hosts["c"].state == js.WAITING and s.hosts["d"].state == js.WAITING


def test_max_hosts_bounds_the_hosts_open_at_once_and_a_retired_one_makes_room():
    clock = Clock()
    s = make(["a", "b", "c"], range(6), max_hosts=2)
    assert s.to_open(clock()) == ["a", "b"]
    s.opened("a", clock())
    s.unreachable("b", clock())
    assert s.to_open(clock()) == ["c"]


def test_unreachable_host_is_retired_and_its_attempts_cost_nothing():
    clock = Clock()
    s = make(["a", "b"], ["j1", "j2"])
    up(s, clock)
    attempts = {a.host: a for a in s.assign(clock())}
    s.unreachable("a", clock())
    job = attempts["a"].job
    assert s.jobs[job].state == js.QUEUED and s.jobs[job].attempts == 0
    assert s.hosts["a"].reason == js.RETIRED_UNREACHABLE
    s.succeeded(attempts["b"], clock())
    (again,) = s.assign(clock())
    assert (again.job, again.host, again.number) == (job, "b", 1)


def test_a_lost_job_is_retried_on_another_host_first():
    clock = Clock()
    s = make(["a", "b", "c"], ["j1", "j2", "j3", "j4"])
    up(s, clock)
    running = {a.job: a for a in s.assign(clock())}
    lost_host = running["j1"].host
    assert s.lost(lost_host, clock()) == [running["j1"]]
    assert s.hosts[lost_host].reason == js.RETIRED_LOST
    other = next(a for a in running.values() if a.host != lost_host)
    s.succeeded(other, clock())
    (retry,) = s.assign(clock())
    assert retry.job == "j1"  # requeued jobs go before new ones
    assert retry.host != lost_host and retry.number == 2


def test_a_retry_avoids_the_hosts_the_job_was_stuck_on_while_another_is_connected():
    clock = Clock()
    s = make(["a", "b"], ["slow", "x", "y"], timeout=10)
    up(s, clock)
    first = {a.job: a for a in s.assign(clock())}
    clock.now += 5
    s.succeeded(first["x"], clock())
    assert [a.job for a in s.assign(clock())] == ["y"]  # b is free again
    clock.now += 6
    (stuck,) = s.expire(clock())
    assert stuck is first["slow"] and s.jobs["slow"].state == js.QUEUED
    stuck_on = stuck.host
    other = "b" if stuck_on == "a" else "a"
    # stuck_on is free, but "slow" waits for the host it was not stuck on
    assert s.assign(clock()) == []
    s.succeeded(s.attempts_on(other)[0], clock())
    (retry,) = s.assign(clock())
    assert (retry.job, retry.host) == ("slow", other)


def test_with_one_host_a_stuck_job_is_retried_there():
    clock = Clock()
    s = make(["a"], ["slow"], timeout=1, retries=1)
    up(s, clock)
    s.assign(clock())
    clock.now += 2
    assert len(s.expire(clock())) == 1
    (retry,) = s.assign(clock())
    assert retry.host == "a" and retry.number == 2
    clock.now += 2
    s.expire(clock())
    assert s.jobs["slow"].state == js.FAILED and s.jobs["slow"].kind == js.KIND_STUCK
    assert s.take_settled() == ["slow"]
    assert s.finished


def test_the_deadline_starts_when_a_queued_attempt_begins():
    clock = Clock()
    s = make(["a"], ["j1", "j2"], timeout=10, slots=2)
    up(s, clock)
    a1, a2 = s.assign(clock(), queued=True)
    assert a1.deadline is None and s.next_deadline() is None
    s.started(a1, clock())
    assert s.next_deadline() == clock() + 10
    clock.now += 8
    s.succeeded(a1, clock())
    s.started(a2, clock())
    clock.now += 8
    assert s.expire(clock()) == []  # a2 began 8 s ago, not 16
    assert s.next_deadline() == clock() + 2


def test_a_lost_host_releases_attempts_that_never_began_without_cost():
    clock = Clock()
    s = make(["a", "b"], ["j1", "j2"], slots=2)
    assert s.to_open(clock()) == ["a"]
    s.opened("a", clock())
    a1, a2 = s.assign(clock(), queued=True)
    s.started(a1, clock())
    s.lost("a", clock())
    assert (s.jobs["j1"].losses, s.jobs["j1"].tried) == (1, {"a"})
    assert (s.jobs["j2"].losses, s.jobs["j2"].attempts, s.jobs["j2"].tried) == (0, 0, set())


def test_a_poisonous_job_stops_after_losing_poison_after_hosts():
    clock = Clock()
    s = make(["a", "b", "c", "d", "e"], ["bad"], retries=10)
    up(s, clock)
    hosts = []
    for _ in range(3):
        up(s, clock)
        (a,) = s.assign(clock())
        hosts.append(a.host)
        s.lost(a.host, clock())
    assert len(set(hosts)) == 3
    assert (s.jobs["bad"].state, s.jobs["bad"].kind) == (js.FAILED, js.KIND_POISONOUS)
    assert s.report().retired == {h: js.RETIRED_LOST for h in hosts}
    assert s.finished


def test_retries_bound_automatic_reruns_then_the_job_fails_as_lost():
    clock = Clock()
    s = make(["a", "b", "c"], ["j"], retries=1, poison_after=0)
    up(s, clock)
    for _ in range(2):
        up(s, clock)
        (a,) = s.assign(clock())
        s.lost(a.host, clock())
    assert (s.jobs["j"].state, s.jobs["j"].kind) == (js.FAILED, js.KIND_LOST)
    assert s.hosts["c"].alive  # the third host was never blamed


def test_a_failed_job_is_final_and_never_blames_its_host():
    clock = Clock()
    s = make(["a"], ["bad", "good"])
    up(s, clock)
    (a,) = s.assign(clock())
    s.failed(a, clock(), 2)
    assert (s.jobs["bad"].state, s.jobs["bad"].kind, s.jobs["bad"].code) == (js.FAILED, "failed", 2)
    assert s.hosts["a"].alive  # clstr's defect 7: one bad job emptied the pool
    (b,) = s.assign(clock())
    s.succeeded(b, clock())
    assert s.report().failed == {"bad": ("failed", 2)} and s.report().done == ["good"]


def test_retry_failed_reruns_a_failed_job_elsewhere():
    clock = Clock()
    s = make(["a", "b"], ["flaky"], retry_failed=1)
    up(s, clock)
    (a,) = s.assign(clock())
    s.failed(a, clock(), 1)
    up(s, clock)  # "flaky" has had every connected host: another one is opened
    (b,) = s.assign(clock())
    assert b.host != a.host and b.number == 2
    s.failed(b, clock(), 3)
    assert s.report().failed == {"flaky": ("failed", 3)}


def test_k_consecutive_failures_retire_a_host():
    clock = Clock()
    s = make(["a"], range(5), retire_after=3)
    up(s, clock)
    for _ in range(3):
        (a,) = s.assign(clock())
        s.failed(a, clock(), 1)
    assert s.hosts["a"].reason == js.RETIRED_FAILING
    r = s.report()
    assert sorted(r.failed) == [0, 1, 2] and r.not_run == {3: NO_HOSTS_LEFT, 4: NO_HOSTS_LEFT}
    assert s.finished


def test_max_uses_retires_a_host_after_that_many_jobs():
    clock = Clock()
    s = make(["a", "b"], range(5), max_uses=2)
    up(s, clock)
    while True:
        got = s.assign(clock())
        if not got:
            break
        for a in got:
            s.succeeded(a, clock())
    r = s.report()
    assert len(r.done) == 4 and r.not_run == {4: NO_HOSTS_LEFT}
    assert r.retired == {"a": js.RETIRED_USED_UP, "b": js.RETIRED_USED_UP}


def test_all_hosts_dead_leaves_every_remaining_job_not_run():
    clock = Clock()
    s = make(["a", "b"], range(6))
    up(s, clock)
    running = s.assign(clock())
    s.lost("a", clock())
    s.lost("b", clock())
    r = s.report()
    assert not r.done and not r.unfinished
    ran = {a.job for a in running}  # lost with their hosts: not "not run" (audit67 #5)
    assert r.failed == {j: ("lost", None) for j in ran}
    assert r.not_run == {j: NO_HOSTS_LEFT for j in range(6) if j not in ran}
    assert s.finished and sorted(s.take_settled()) == list(range(6))
    s2 = Scheduler(["a"])
    s2.unreachable("a", clock())
    s2.add("late")  # a job added with no host left is settled at once
    assert s2.report().not_run == {"late": NO_HOSTS_LEFT}


def test_cancel_and_halt_end_queued_jobs_as_not_run_and_leave_running_ones():
    clock = Clock()
    s = make(["a"], ["r", "q1", "q2", "q3"])
    up(s, clock)
    (a,) = s.assign(clock())
    assert s.cancel("q1") and not s.cancel("r")
    s.halt("halted")
    assert s.assign(clock()) == [] and not s.finished
    s.succeeded(a, clock())
    r = s.report()
    assert r.done == ["r"]
    assert r.not_run == {"q1": "cancelled", "q2": "halted", "q3": "halted"}
    assert s.finished


def test_stale_attempts_are_ignored():
    clock = Clock()
    s = make(["a", "b"], ["j"], timeout=1)
    up(s, clock)
    (a,) = s.assign(clock())
    clock.now += 2
    s.expire(clock())
    assert not s.succeeded(a, clock()) and not s.failed(a, clock(), 1)
    assert not s.started(a, clock()) and not s.release(a)
    assert s.jobs["j"].state == js.QUEUED


def test_pause_holds_a_host_back_until_resumed():
    clock = Clock()
    s = make(["a"], ["j"])
    up(s, clock)
    s.pause("a")
    assert s.assign(clock()) == []
    s.resume("a")
    assert [x.job for x in s.assign(clock())] == ["j"]


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="at least one host"):
        Scheduler([])
    with pytest.raises(TypeError, match="list of host names"):
        Scheduler("node1")
    with pytest.raises(ValueError, match="retries must be"):
        Scheduler(["a"], retries=-1)
    with pytest.raises(ValueError, match="slot count"):
        Scheduler({"a": 0})
    with pytest.raises(ValueError, match="timeout must be"):
        Scheduler(["a"], timeout=0)
    s = Scheduler(["a"])
    s.add(1)
    with pytest.raises(ValueError, match="added already"):
        s.add(1)
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.add(2)


@pytest.mark.parametrize("seed", range(20))
def test_random_runs_account_for_every_job(seed):
    """A random mix of every event: every job ends once, and the counts add up."""
    import random

    rnd = random.Random(seed)
    clock = Clock()
    hosts = [f"n{i}" for i in range(rnd.randint(1, 5))]
    s = make(hosts, range(rnd.randint(0, 40)), timeout=5, retry_failed=rnd.randint(0, 1))
    settled = []
    for _ in range(500):
        if s.finished:
            break
        clock.now += rnd.random() * 2
        for h in s.to_open(clock()):
            s.unreachable(h, clock()) if rnd.random() < 0.1 else s.opened(h, clock())
        s.assign(clock())
        for a in list(s._running.values()):
            roll = rnd.random()
            if roll < 0.5:
                s.succeeded(a, clock())
            elif roll < 0.6:
                s.failed(a, clock(), rnd.randint(1, 9))
            elif roll < 0.63 and s.hosts[a.host].alive:
                s.lost(a.host, clock())
        s.expire(clock())
        settled += s.take_settled()
    assert s.finished
    assert_accounted(s)
    assert sorted(settled) == sorted(s.jobs)  # each job settled exactly once
    r = s.report()
    assert not r.unfinished


def test_eager_start_opens_every_host_and_limit_bounds_an_assignment():
    clock = Clock()
    s = make(["a", "b", "c"], ["j1"], lazy=False, slots=4)
    assert s.to_open(clock()) == ["a", "b", "c"]
    for h in ("a", "b", "c"):
        s.opened(h, clock())
    s2 = make(["a"], range(10), slots=8)
    up(s2, clock)
    assert len(s2.assign(clock(), host="a", limit=3)) == 3
    assert len(s2.assign(clock(), host="a")) == 5  # the free slots


def test_expire_can_look_at_one_host():
    clock = Clock()
    s = make(["a", "b"], ["j1", "j2"], timeout=1, lazy=False)
    up(s, clock)
    got = {a.host: a for a in s.assign(clock())}
    clock.now += 2
    assert s.expire(clock(), host="a") == [got["a"]]
    assert s.expire(clock()) == [got["b"]]


def test_forget_drops_only_finished_jobs():
    clock = Clock()
    s = make(["a"], ["j1", "j2"])
    up(s, clock)
    (a,) = s.assign(clock())
    with pytest.raises(ValueError, match="only a finished job"):
        s.forget("j1")
    s.succeeded(a, clock())
    assert s.forget("j1").state == js.DONE
    assert "j1" not in s.jobs and s.report().total == 1


def test_a_job_lost_on_every_host_until_none_is_left_is_failed_lost_not_not_run():
    """audit67 #5: it ran (twice) and took both hosts down; "not run" would hide that."""
    clock = Clock()
    s = make(["a", "b"], ["killer"])
    for _ in range(2):
        up(s, clock)
        (a,) = s.assign(clock())
        s.lost(a.host, clock())
    r = s.report()
    assert r.failed == {"killer": ("lost", None)} and not r.not_run
    assert r.attempts == {"killer": (2, 2)}
    assert s.finished


def test_a_retry_after_a_failure_halted_is_failed_with_its_exit_code():
    clock = Clock()
    s = make(["a"], ["j"], retry_failed=1)
    up(s, clock)
    (a,) = s.assign(clock())
    s.failed(a, clock(), 9)
    s.halt("halted")
    assert s.report().failed == {"j": ("failed", 9)}


def test_pinned_jobs_and_their_retries_run_only_on_their_host():
    """audit67 #1: -E's copy for b is retried on b (never on a, which is free), and
    each dedicated host is used up once its own job is final."""
    clock = Clock()
    s = Scheduler(["a", "b", "c"], retry_failed=1)
    for job, host in (("ja", "a"), ("jb", "b"), ("jc", "c")):
        s.add(job, host=host)
    s.close()
    assert sorted(s.to_open(clock())) == ["a", "b", "c"]
    for h in "abc":
        s.opened(h, clock())
    got = {a.job: a for a in s.assign(clock())}
    assert {j: a.host for j, a in got.items()} == {"ja": "a", "jb": "b", "jc": "c"}
    s.succeeded(got["ja"], clock())
    assert s.hosts["a"].reason == js.RETIRED_USED_UP
    s.failed(got["jb"], clock(), 1)
    assert s.assign(clock(), host="c") == []  # c is busy with its own, and dedicated
    s.succeeded(got["jc"], clock())
    (retry,) = s.assign(clock())
    assert retry.host == "b"
    s.succeeded(retry, clock())
    assert s.finished and sorted(s.report().done) == ["ja", "jb", "jc"]


def test_a_pinned_job_whose_host_is_gone_is_not_run_or_failed_as_it_ran():
    clock = Clock()
    s = Scheduler(["a", "b", "c"], retry_failed=1)
    for job, host in (("ja", "a"), ("jb", "b"), ("jc", "c")):
        s.add(job, host=host)
    s.close()
    s.to_open(clock())
    s.unreachable("a", clock())
    for h in "bc":
        s.opened(h, clock())
    got = {a.job: a for a in s.assign(clock())}
    s.failed(got["jb"], clock(), 3)
    s.lost("b", clock())  # (its retry was queued for b only)
    s.succeeded(got["jc"], clock())
    r = s.report()
    assert r.not_run == {"ja": NO_HOSTS_LEFT} and r.failed == {"jb": ("failed", 3)}
    assert r.done == ["jc"] and s.finished


def test_pinned_hosts_open_one_at_a_time_under_max_hosts():
    clock = Clock()
    s = Scheduler(["a", "b"], max_hosts=1, slots=2)
    s.add("ja", host="a")
    s.add("jb", host="b")
    s.close()
    for want in ("a", "b"):
        assert s.to_open(clock()) == [want]
        s.opened(want, clock())
        (a,) = s.assign(clock())
        assert a.host == want
        s.succeeded(a, clock())
    assert s.finished
