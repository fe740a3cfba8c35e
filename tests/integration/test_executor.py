"""``ClusterExecutor`` and ``Cluster.map`` with real server processes: a server killed
mid-job (SIGKILL) or frozen (SIGSTOP) has its work rerun elsewhere; an exception is
re-raised and never retried; an item past its deadline is retried, then given up; all
servers dead gives every future a clear error; map order, chunks, timeouts, shutdown,
lambdas, and the same answers as ProcessPoolExecutor. Items report where they ran
through files, so the tests see every execution."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sys
import time
from typing import List

import pytest

from easycluster.cluster.executor import ClusterExecutor, NoHostsLeft, WorkLost, WorkStuck
from easycluster.cluster.session import Cluster
from easycluster.server import spawn_local

pytestmark = pytest.mark.timeout(60)


def runs(path) -> List[str]:
    """The executions recorded in ``path`` (one file per run)."""
    return sorted(os.listdir(path))


def wait_for(predicate, what: str, limit: float = 20.0):
    """Poll until ``predicate()`` is true (bounded: a failing test must not hang)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def recording_job(directory: str, seconds: float):
    """A job that records its server's pid, sleeps, and returns the pid."""

    def job(tag):
        import os
        import time

        with open(os.path.join(directory, f"{tag}.{os.getpid()}.{time.monotonic_ns()}"), "w"):
            pass
        time.sleep(seconds)
        return os.getpid()

    return job


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def started_pid(directory, tag: str) -> int:
    name = wait_for(lambda: [n for n in os.listdir(directory) if n.startswith(tag + ".")], tag)
    return int(name[0].split(".")[1])


def test_a_server_killed_mid_job_has_its_work_completed_elsewhere(tmp_path):
    job = recording_job(str(tmp_path), 1.0)
    with ClusterExecutor(local=2, heartbeat=1.0) as ex:
        fut = ex.submit(job, "victim")
        pid = started_pid(tmp_path, "victim")
        os.kill(pid, signal.SIGKILL)
        where = fut.result(30)
        assert where != pid  # it ran to the end on the other server
        assert len(runs(tmp_path)) == 2  # once on each: at-least-once
        assert ex.submit(job, "after").result(30) == where  # the survivor goes on
        assert "1 retired" in repr(ex)


def test_a_frozen_server_is_declared_lost_by_its_heartbeat_and_its_work_rerun(tmp_path):
    job = recording_job(str(tmp_path), 0.5)
    pid = 0
    try:
        with ClusterExecutor(local=2, heartbeat=1.0) as ex:
            fut = ex.submit(job, "frozen")
            pid = started_pid(tmp_path, "frozen")
            os.kill(pid, signal.SIGSTOP)
            where = fut.result(30)  # no hang: the heartbeat deadline moved it
            assert where != pid
            assert "1 retired" in repr(ex)
            assert sorted(n.split(".")[1] for n in runs(tmp_path)) == sorted([str(pid), str(where)])
    finally:
        if pid:
            kill_quietly(pid)


def test_an_exception_is_re_raised_and_never_retried(tmp_path):
    directory = str(tmp_path)

    def fails(x):
        import os

        open(os.path.join(directory, f"run{x}.{os.getpid()}"), "w").close()
        raise KeyError(f"bad item {x}")

    with ClusterExecutor(local=2) as ex:
        fut = ex.submit(fails, 1)
        with pytest.raises(KeyError, match="bad item 1") as info:
            fut.result(30)
        assert "KeyError" in str(info.value.__cause__)  # the remote traceback
        with pytest.raises(KeyError, match="bad item 2"):
            list(ex.map(fails, [2]))
    assert [n.split(".")[0] for n in runs(tmp_path)] == ["run1", "run2"]  # once each


def test_an_item_past_its_timeout_is_retried_then_given_up(tmp_path):
    job = recording_job(str(tmp_path), 30)
    with ClusterExecutor(local=2, task_timeout=0.5, retries=1) as ex:
        fut = ex.submit(job, "hang")
        with pytest.raises(WorkStuck, match="task_timeout=0.5"):
            fut.result(30)
        pids = {n.split(".")[1] for n in runs(tmp_path)}
        assert len(runs(tmp_path)) == 2 and len(pids) == 2  # retried on the other server
        # the servers were replaced, not retired: work goes on
        assert ex.submit(pow, 2, 10).result(30) == 1024
        assert "0 retired" in repr(ex)


def test_all_servers_dead_gives_every_future_a_clear_error(tmp_path):
    def kill_my_server(x):
        import os

        os.kill(os.getpid(), 9)

    with ClusterExecutor(local=2, heartbeat=1.0) as ex:
        futs = [ex.submit(kill_my_server, i) for i in range(6)]
        done, pending = concurrent.futures.wait(futs, timeout=30)
        assert not pending
        errors = [f.exception() for f in futs]
        assert all(isinstance(e, (NoHostsLeft, WorkLost)) for e in errors), errors
        assert any(isinstance(e, NoHostsLeft) for e in errors)
        assert "every server of this executor is gone" in str(
            next(e for e in errors if isinstance(e, NoHostsLeft))
        )
        late = ex.submit(pow, 2, 2)  # nothing left to run it: settled at once
        with pytest.raises(NoHostsLeft):
            late.result(5)


def test_an_item_lost_with_the_last_server_says_none_was_left_not_retries_used_up():
    def kill_my_server():
        import os

        os.kill(os.getpid(), 9)

    # two servers, three retries, poisonous only after three losses: the item is lost on
    # both and ends with retries still in its budget, for want of a server
    with ClusterExecutor(local=2, heartbeat=1.0, retries=3, poison_after=3) as ex:
        bad = ex.submit(kill_my_server)
        with pytest.raises(WorkLost) as err:
            bad.result(30)
    text = str(err.value)
    assert "no server was left to retry it on" in text, text
    assert "retries are used up" not in text, text


def test_a_poisonous_item_stops_after_poison_after_servers(tmp_path):
    def kill_my_server():
        import os

        os.kill(os.getpid(), 9)

    with ClusterExecutor(local=3, heartbeat=1.0, poison_after=2, retries=5) as ex:
        bad = ex.submit(kill_my_server)
        with pytest.raises(WorkLost, match="poisonous"):
            bad.result(30)
        assert ex.submit(pow, 3, 2).result(30) == 9  # the third server is still there
        assert "2 retired" in repr(ex)


def test_map_keeps_input_order_with_and_without_chunks():
    with ClusterExecutor(local=2) as ex:
        assert list(ex.map(lambda x: x * x, range(500))) == [x * x for x in range(500)]
        assert list(ex.map(pow, range(97), range(97), chunksize=10)) == [
            pow(x, x) for x in range(97)
        ]
        assert list(ex.map(abs, [])) == []
        with pytest.raises(ValueError, match="chunksize"):
            ex.map(abs, [1], chunksize=0)


def test_map_timeout_bounds_the_whole_wait():
    with ClusterExecutor(local=1) as ex:
        results = ex.map(time.sleep, [0.0, 2.0], timeout=0.5)
        assert next(results) is None
        with pytest.raises(TimeoutError):
            next(results)
        ex.shutdown(wait=True, cancel_futures=True)


def test_shutdown_cancel_futures_cancels_what_did_not_start():
    with ClusterExecutor(local=1) as ex:
        first = ex.submit(time.sleep, 0.5)
        wait_for(first.running, "the first item to start")
        rest = [ex.submit(pow, 2, i) for i in range(10)]
        ex.shutdown(wait=True, cancel_futures=True)
        assert first.result(0) is None
        assert all(f.done() for f in rest)
        assert rest[-1].cancelled()
        assert all(f.cancelled() or f.result(0) == 2**i for i, f in enumerate(rest))
        with pytest.raises(RuntimeError, match="after shutdown"):
            ex.submit(pow, 1, 1)


def test_map_items_cancelled_by_shutdown_end_the_iterator_with_cancelled_error():
    with ClusterExecutor(local=1, pipeline=1) as ex:
        assert ex.submit(pow, 2, 3).result() == 8  # the server is up
        results = ex.map(time.sleep, [0.5] + [0.0] * 20, chunksize=1)
        ex.shutdown(wait=True, cancel_futures=True)
        got = []
        with pytest.raises(concurrent.futures.CancelledError):
            for value in results:
                got.append(value)
        assert got == [None] * len(got) and len(got) < 21  # some ran, the rest cancelled


def test_submit_and_map_match_process_pool_executor():
    def collect(ex):
        values = list(ex.map(pow, range(20), [2] * 20))
        values.append(ex.submit(divmod, 17, 5).result(30))
        with pytest.raises(ZeroDivisionError):
            list(ex.map(divmod, [4, 5], [2, 0]))
        return values

    with concurrent.futures.ProcessPoolExecutor(2) as ppe:
        expected = collect(ppe)
    with ClusterExecutor(local=2) as ex:
        assert collect(ex) == expected


def test_lambdas_and_closures_travel():
    base = 100
    with ClusterExecutor(local=2) as ex:
        assert ex.submit(lambda: base + 1).result(30) == 101
        assert ex.submit(lambda a, b=2: a * b, 21).result(30) == 42
        assert list(ex.map(lambda x: x + base, [1, 2], chunksize=2)) == [101, 102]


def test_cluster_map_runs_over_the_sessions_in_order():
    with Cluster(["a", "b", "a"], client=lambda n: spawn_local()) as c:
        assert c.map(lambda x: -x, range(200)) == [-x for x in range(200)]
        assert c.map(str, range(50), chunksize=7) == [str(x) for x in range(50)]
        with pytest.raises(ZeroDivisionError):
            c.map(lambda x: 1 // x, [1, 0, 2])
        assert c.call(os.getpid).succeeded  # the sessions are still usable


def test_cluster_map_keeps_its_executor_between_calls_until_an_error_or_close():
    c = Cluster(["a", "b"], client=lambda n: spawn_local())
    try:
        assert c.map(abs, [-1, -2]) == [1, 2]
        (first,) = c._executors.values()
        assert c.map(abs, [-3], retries=3) == [3] and c._executors[(3, None)] is first
        assert c.map(abs, [-4], timeout=5.0) == [4] and len(c._executors) == 2
        with pytest.raises(ZeroDivisionError):
            c.map(lambda x: 1 // x, [0], retries=3)
        assert (3, None) not in c._executors  # (items of the failed map may still run)
        assert c.map(abs, [-5]) == [5] and c._executors[(3, None)] is not first
        kept = list(c._executors.values())
    finally:
        c.close()
    assert not c._executors
    assert all(not h.thread.is_alive() for ex in kept for h in ex._hosts.values())


def test_executor_over_clients_of_each_transport(make_client):
    clients = [make_client(), make_client()]
    with ClusterExecutor(clients) as ex:
        pids = set(ex.map(lambda _: __import__("os").getpid(), range(40)))
        assert list(ex.map(lambda x: x * 2, range(30))) == list(range(0, 60, 2))
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    assert all(c.connected for c in clients)  # clients passed in are left open
    assert clients[0].call("os.getpid") in pids or clients[1].call("os.getpid") in pids


def test_bad_arguments_get_clear_errors():
    with pytest.raises(Exception, match="nodes .* or local=N"):
        ClusterExecutor()
    with pytest.raises(ValueError, match="local must be"):
        ClusterExecutor(local=0)
    with pytest.raises(ValueError, match="heartbeat"):
        ClusterExecutor(local=1, heartbeat=0)
    with pytest.raises(TypeError, match="a name or a Client"):
        ClusterExecutor([42])
    with ClusterExecutor(local=1) as ex, pytest.raises(TypeError, match="callable"):
        ex.submit(42)


def test_an_unreachable_node_is_retired_and_the_others_run_the_work():
    def connect(node):
        if node == "down":
            raise ConnectionRefusedError("no route to down")
        return spawn_local()

    with ClusterExecutor(["down", "up"], client=connect) as ex:
        assert list(ex.map(abs, [-1, -2, -3])) == [1, 2, 3]
        assert "1 retired" in repr(ex)
    with ClusterExecutor(["down"], client=connect) as ex:
        late = ex.submit(abs, 1)
        with pytest.raises(NoHostsLeft, match="no route to down"):
            late.result(30)


def test_over_ssh_node_names_a_killed_server_and_a_stuck_item_move_on(sshd, tmp_path):
    """Nodes named as for Cluster (two loopback ssh aliases): the servers are started
    through the real sshd; one is SIGKILLed mid-item, then an item hangs past its
    deadline (its server is reconnected over ssh)."""
    kw = sshd.client_kw(rpython=sys.executable)
    options = {"extra_args": kw["extra_args"], "rpython": kw["rpython"]}
    job = recording_job(str(tmp_path), 1.0)
    with ClusterExecutor(["sshtest0", "sshtest1"], heartbeat=1.0, **options) as ex:
        fut = ex.submit(job, "victim")
        pid = started_pid(tmp_path, "victim")
        os.kill(pid, signal.SIGKILL)
        assert fut.result(30) != pid
        assert "1 retired" in repr(ex)
    hang = recording_job(str(tmp_path), 30)
    with ClusterExecutor(["sshtest2"], task_timeout=0.5, retries=1, **options) as ex:
        with pytest.raises(WorkStuck):
            ex.submit(hang, "hang").result(30)
        assert len([n for n in runs(tmp_path) if n.startswith("hang.")]) == 2
        assert ex.submit(pow, 2, 5).result(30) == 32  # the reconnected server works


def test_cluster_map_timeout_gives_up_a_stuck_item_and_keeps_the_sessions():
    """Sessions made by spawn_local cannot reconnect: a server with a stuck item is
    retired from the map (left open), and the Cluster can still use it."""

    def maybe_hang(x):
        import time

        if x == 0:
            time.sleep(30)
        return x

    with Cluster(["a", "b"], client=lambda n: spawn_local()) as c:
        with pytest.raises(WorkStuck, match="2 times"):
            c.map(maybe_hang, [0, 1, 2], timeout=0.5, retries=1)
        assert len(c.call(os.getpid).succeeded) == 2  # both sessions still work


def test_futures_work_with_as_completed_and_wait():
    with ClusterExecutor(local=2) as ex:
        futs = [ex.submit(pow, 2, i) for i in range(20)]
        assert sorted(f.result() for f in concurrent.futures.as_completed(futs, 30)) == sorted(
            2**i for i in range(20)
        )
        done, _ = concurrent.futures.wait([ex.submit(abs, -1)], timeout=30)
        assert [f.result() for f in done] == [1]


def test_cancelled_items_leave_the_executor_working():
    """A cancelled item stays in its queue until a server picks past it, by which time
    the executor may have forgotten it: the runners used to die on it, and every later
    future hung (a map that raised cancels the rest; Future.cancel; a shutdown)."""

    def fails_on_zero(x):  # (a local function: it travels by value)
        import time as t

        if x == 0:
            raise ValueError("boom")
        t.sleep(0.01)
        return x

    with ClusterExecutor(local=2) as ex:
        with pytest.raises(ValueError, match="boom"):
            list(ex.map(fails_on_zero, range(200), chunksize=1))
        assert ex.submit(pow, 2, 10).result(30) == 1024
    with ClusterExecutor(local=1) as ex:
        first = ex.submit(time.sleep, 0.5)
        second = ex.submit(pow, 2, 3)
        assert second.cancel()
        first.result(30)
        time.sleep(0.3)  # (the cancelled one forgotten by now)
        third = ex.submit(pow, 2, 5)
        ex.shutdown(wait=True)
        assert third.done() and third.result() == 32
