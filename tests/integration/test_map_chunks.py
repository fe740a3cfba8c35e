"""``ClusterExecutor.map`` and ``Cluster.map`` with no chunksize: a chunk size picked as
``multiprocessing.Pool.map`` does, with real server processes. Order is kept (one
iterable or several, with or without a length); an item's exception is raised at that
item, after the values before it in its chunk, and the items after it in the chunk are
not run; a server killed mid-chunk has the whole chunk rerun elsewhere; a chunk's
deadline is ``task_timeout`` per item it holds. Items record their runs in files, so
the tests see every execution."""

from __future__ import annotations

import os

import pytest

from easycluster.cluster.executor import AUTO_CHUNK_MAX, ClusterExecutor, auto_chunksize
from easycluster.cluster.session import Cluster
from easycluster.server import spawn_local

pytestmark = pytest.mark.timeout(60)


def recorded(directory) -> list:
    """``(item, pid)`` of each run recorded in ``directory``."""
    return sorted((int(n.split(".")[0]), int(n.split(".")[1])) for n in os.listdir(directory))


def test_auto_chunksize_follows_pool_and_is_capped():
    assert auto_chunksize(40, 2) == 5  # ceil(40 / (4 * 2)), as Pool.map
    assert auto_chunksize(41, 2) == 6
    assert auto_chunksize(3, 2) == 1
    assert auto_chunksize(0, 2) == 1
    assert auto_chunksize(10**7, 2) == AUTO_CHUNK_MAX  # a lost chunk stays bounded


def test_auto_chunks_keep_order_for_generators_and_several_iterables():
    with ClusterExecutor(local=2) as ex:
        assert list(ex.map(lambda x: -x, (x for x in range(1001)))) == [-x for x in range(1001)]
        assert list(ex.map(pow, range(300), iter([2] * 300))) == [x**2 for x in range(300)]
        assert list(ex.map(abs, [])) == []
    with Cluster(["a", "b"], client=lambda n: spawn_local()) as c:
        assert c.map(str, range(777)) == [str(x) for x in range(777)]


def test_an_exception_is_raised_at_its_item_after_the_values_before_it(tmp_path):
    directory = str(tmp_path)

    def job(x):
        import os

        open(os.path.join(directory, f"{x}.{os.getpid()}"), "w").close()
        if x == 7:
            raise KeyError(f"bad item {x}")
        return x * 10

    with ClusterExecutor(local=2) as ex:
        assert auto_chunksize(40, 2) == 5  # item 7 is the third of chunk [5, 10)
        got = []
        with pytest.raises(KeyError, match="bad item 7") as info:
            for value in ex.map(job, range(40)):
                got.append(value)
        assert got == [x * 10 for x in range(7)]  # 5 and 6 came from the failed chunk
        assert "KeyError" in str(info.value.__cause__)  # the remote traceback
        assert "bad item 7" in str(info.value.__cause__)
    ran = {x for x, _ in recorded(tmp_path)}
    assert 7 in ran and not ran & {8, 9}  # the rest of its chunk did not run
    assert [x for x, _ in recorded(tmp_path)].count(7) == 1  # never retried
    c = Cluster(["a", "b"], client=lambda n: spawn_local())
    try:  # (not one with-statement of two: Python 3.9 has no parenthesized form)
        with pytest.raises(KeyError, match="bad item 7"):
            c.map(job, range(40))
    finally:
        c.close()


def test_a_server_killed_mid_chunk_has_the_whole_chunk_rerun_elsewhere(tmp_path):
    directory = str(tmp_path)
    marker = os.path.join(directory, "killed")

    def job(x):
        import os

        if x == 7 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), 9)  # the server dies in the middle of chunk [5, 10)
        open(os.path.join(directory, f"{x}.{os.getpid()}"), "w").close()
        return x + 1

    with ClusterExecutor(local=2, heartbeat=1.0) as ex:
        assert list(ex.map(job, range(40))) == [x + 1 for x in range(40)]
        assert "1 retired" in repr(ex)
    os.unlink(marker)
    runs = recorded(tmp_path)
    first = {pid for x, pid in runs if x == 5}
    assert len(first) == 2  # items 5 and 6 ran on the dead server, then again elsewhere
    assert {pid for x, pid in runs if x == 6} == first
    (survivor,) = {pid for x, pid in runs if x == 7}  # 7 finished only after the move
    assert survivor in first
    assert [x for x, _ in runs].count(8) == 1  # never reached on the dead server


def test_a_chunk_deadline_is_task_timeout_per_item(tmp_path):
    def slow(x):
        import time

        time.sleep(0.3)
        return x

    # 4 items of 0.3 s: 1.2 s a chunk, past task_timeout but within 4 x 0.5 s
    with ClusterExecutor(local=2, task_timeout=0.5, retries=0) as ex:
        assert list(ex.map(slow, range(8), chunksize=4)) == list(range(8))


def test_an_item_raising_stop_iteration_does_not_end_its_chunk_quietly():
    def stop_at_5(x):
        if x == 5:
            raise StopIteration
        return x

    with ClusterExecutor(local=1) as ex:
        got = []
        with pytest.raises(RuntimeError, match="StopIteration"):  # (PEP 479)
            for value in ex.map(stop_at_5, range(10), chunksize=10):
                got.append(value)
        assert got == [0, 1, 2, 3, 4]
