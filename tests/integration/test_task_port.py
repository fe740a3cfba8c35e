"""What a ClusterShell script ported by changing its imports relies on (found by
running such scripts against both libraries): buffers that answer ``message()`` and
iterate by line, a node's results over several ``shell()`` calls of one run, slot keys
handed back to ``shell()`` from a handler, ``worker.abort()`` ending that worker alone,
a run's timeout counted as ClusterShell counts it, results kept until the next
``resume()``, ClusterShell's other getters and names, and its open-by-default stdin.
Real ``sh`` processes (exec backend); none is left behind."""

from __future__ import annotations

import os
import threading

import pytest
from helpers import pid_alive

from easycluster.cluster import EventHandler, Task
from easycluster.nodeset import NodeSet

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leftover_children")]


def exec_task() -> Task:
    task = Task()
    task.set_default("backend", "exec")
    return task


def test_buffers_answer_clustershell_buffer_methods():
    task = exec_task()
    task.run("printf 'one\\ntwo %h\\n'", nodes="n[1-2]")
    seen = {}
    for buf, keys in task.iter_buffers():
        assert isinstance(buf, bytes)  # still bytes: comparisons, decode, join work
        seen[str(NodeSet.fromlist(keys))] = (buf.message().decode(), list(buf))
    assert seen == {
        "n1": ("one\ntwo n1", [b"one", b"two n1"]),
        "n2": ("one\ntwo n2", [b"one", b"two n2"]),
    }
    assert list(task.node_buffer("n1").lines()) == [b"one", b"two n1"]
    assert task.node_buffer("n1") == b"one\ntwo n1"
    assert task.node_buffer("elsewhere") == b""  # not in the run: empty, as ClusterShell's
    assert task.node_error("elsewhere") == b""
    with pytest.raises(KeyError):
        task.node_retcode("elsewhere")


def test_a_node_over_several_shell_calls_of_one_run():
    task = exec_task()
    first = task.shell("echo check1 %h; [ %h = n2 ] && exit 1; exit 0", nodes="n[1-2]")
    second = task.shell("echo check2 %h; [ %h = n1 ] && exit 3; exit 0", nodes="n[1-2]")
    task.resume()
    # the Task's view of a node: every run of it (largest code, outputs in order)
    assert task.node_retcode("n1") == 3 and task.node_retcode("n2") == 1
    assert task.node_buffer("n1") == b"check1 n1\ncheck2 n1"
    assert task.max_retcode() == 3
    # a worker's view: its own slot only
    assert first.node_retcode(first.keys[0]) == 0 and second.node_retcode(second.keys[0]) == 3
    assert first.node_buffer(first.keys[1]) == b"check1 n2"
    assert second.node_buffer(second.keys[1]) == b"check2 n2"


class Pipeline(EventHandler):
    """Each node's next step is scheduled from its ev_hup, as admins' scripts do."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.hosts = []
        self.last = {}

    def ev_read(self, worker, node, sname, msg):
        self.hosts.append(msg.decode())
        self.last[node] = msg.decode()

    def ev_hup(self, worker, node, rc):
        step = int(self.last[node].split()[0][4:])  # "stepN host"
        if step < 3:
            self.task.shell(f"echo step{step + 1} %h", nodes=node, handler=self)


def test_a_slot_key_given_back_to_shell_runs_on_its_node():
    task = exec_task()
    pipeline = Pipeline(task)
    task.shell("echo step0 %h", nodes="n[1-2]", handler=pipeline)
    task.resume()
    # the later steps got keys n1#2, n1#3... but ran on n1 and n2, never on "n1#2"
    assert sorted(pipeline.hosts) == sorted(f"step{i} {n}" for i in range(4) for n in ("n1", "n2"))
    assert task.node_buffer("n1") == b"step0 n1\nstep1 n1\nstep2 n1\nstep3 n1"


class Log(EventHandler):
    """Records ``(name, event, ...)`` tuples into a shared list."""

    def __init__(self, name, log):
        self.name = name
        self.log = log

    def ev_start(self, worker):
        self.log.append((self.name, "start"))

    def ev_pickup(self, worker, node):
        self.log.append((self.name, "pickup", node))

    def ev_read(self, worker, node, sname, msg):
        self.log.append((self.name, "read", node, bytes(msg)))

    def ev_hup(self, worker, node, rc):
        self.log.append((self.name, "hup", node, rc))

    def ev_timeout(self, worker):
        self.log.append((self.name, "timeout", sorted(worker.iter_keys_timeout())))

    def ev_close(self, worker, timedout):
        self.log.append((self.name, "close", timedout))


def of(log, name, event):
    return [e for e in log if e[0] == name and e[1] == event]


# -- worker.abort(): that worker alone ---------------------------------------------


class AbortOnRead(Log):
    """Aborts its worker at its first line (the shell's pid)."""

    def __init__(self, name, log):
        super().__init__(name, log)
        self.pids = []

    def ev_read(self, worker, node, sname, msg):
        super().ev_read(worker, node, sname, msg)
        self.pids.append(int(msg))
        worker.abort()
        self.log.append((self.name, "abort returned"))


def test_worker_abort_ends_that_worker_alone():
    task = exec_task()
    task.set_info("fanout", 2)  # a1, a2 run; a3 and b1, b2 wait
    log = []
    a = AbortOnRead("A", log)
    task.shell("echo $$; exec sleep 60", nodes="a[1-3]", handler=a)
    task.shell("echo b %h", nodes="b[1-2]", handler=Log("B", log))
    task.resume()
    assert dict(task.iter_status()) == {"aborted": ["a1", "a2", "a3"], "hup": ["b1", "b2"]}
    assert dict(task.iter_buffers(match_keys=["b1", "b2"])) == {b"b b1": ["b1"], b"b b2": ["b2"]}
    # A: one line read, its ev_close before abort() returned, nothing after; a3 never ran
    a_events = [e for e in log if e[0] == "A"]
    assert a_events[-2:] == [("A", "close", False), ("A", "abort returned")]
    assert len(of(log, "A", "read")) == 1 and not of(log, "A", "hup")
    assert ("A", "pickup", "a3") not in log
    assert of(log, "B", "close") == [("B", "close", False)]
    assert sorted(e[2] for e in of(log, "B", "hup")) == ["b1", "b2"]
    assert not any(pid_alive(p) for p in a.pids)


def test_worker_abort_from_its_ev_start_and_before_resume():
    task = exec_task()
    log = []

    class AbortAtStart(Log):
        def ev_start(self, worker):
            super().ev_start(worker)
            worker.abort()

    task.shell("echo never", nodes="a[1-2]", handler=AbortAtStart("A", log))
    dropped = task.shell("echo never", nodes="c1", handler=Log("C", log))
    dropped.abort()  # before resume: it never runs
    task.shell("echo b", nodes="b1", handler=Log("B", log))
    task.resume()
    assert [e for e in log if e[0] == "A"] == [("A", "start"), ("A", "close", False)]
    assert not of(log, "C", "start") and not of(log, "C", "close")
    assert dict(task.iter_status()) == {"aborted": ["a1", "a2", "c1"], "hup": ["b1"]}
    assert dict(task.iter_buffers()) == {b"b": ["b1"]}


def test_worker_abort_off_the_task_thread_refused_and_join_waits(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    task = exec_task()
    picked = threading.Event()

    class Picked(EventHandler):
        def ev_pickup(self, worker, node):
            picked.set()

    worker = task.shell(f"cat {fifo}", nodes="n1", handler=Picked())
    runner = threading.Thread(target=task.resume)
    runner.start()
    try:
        assert picked.wait(30)
        with pytest.raises(RuntimeError, match="handler"):
            worker.abort()
    finally:
        with open(fifo, "wb") as f:  # (cat ends: the run ends)
            f.write(b"done\n")
        assert task.join(30)
        runner.join(30)
    assert task.node_buffer("n1") == b"done" and task.node_status("n1") == "hup"
    assert task.join() is True  # no run in progress: at once


# -- the run's timeout, as ClusterShell counts it ----------------------------------


def test_a_run_timeout_counts_running_nodes_as_timed_out():
    task = exec_task()
    task.set_info("fanout", 2)  # n1, n2 run; n3 waits and never starts
    log = []
    worker = task.shell("echo $$; exec sleep 60", nodes="n[1-3]", handler=Log("A", log))
    task.shell("echo quick", nodes="q1", handler=Log("Q", log))
    with pytest.raises(TimeoutError):  # (TaskTimeout is one, as ClusterShell raises one)
        task.run(timeout=1)
    assert task.num_timeout() == 2 and sorted(task.iter_keys_timeout()) == ["n1", "n2"]
    assert worker.num_timeout() == 2 and worker.did_timeout()
    assert task.node_status("n3") == "aborted" and task.node_retcode("n1") is None
    assert of(log, "A", "timeout") == [("A", "timeout", ["n1", "n2"])]
    assert [e for e in log if e[0] == "A"][-2:] == [
        ("A", "timeout", ["n1", "n2"]),
        ("A", "close", True),
    ]
    pids = [int(e[3]) for e in of(log, "A", "read")]
    assert not any(pid_alive(p) for p in pids)


# -- results live until the next resume() ---------------------------------------------


def test_results_stay_until_the_next_resume_not_the_next_shell():
    task = exec_task()
    task.run("echo first %h", nodes="n[1-2]")
    task.shell("echo second %h", nodes="n1")
    task.shell("echo third %h", nodes="n1")
    # scheduled, not run: the last run's results are still there (ClusterShell's reset
    # is at resume)
    assert task.node_buffer("n2") == b"first n2"
    assert dict(task.iter_retcodes()) == {0: ["n1", "n2"]}
    task.resume()
    assert task.node_buffer("n1") == b"second n1\nthird n1"
    assert task.node_buffer("n2") == b"" and dict(task.iter_retcodes()) == {0: ["n1", "n1#2"]}


# -- ClusterShell's other names --------------------------------------------------------


def test_key_getters_flush_and_match_keys():
    task = exec_task()
    task.shell("echo out %h; echo err >&2; exit 2", nodes="n1")
    task.shell("echo out %h; exit 3", nodes="n[1-3]")
    task.resume()
    assert task.key_buffer("n1") == b"out n1\nout n1" and task.key_buffer("n1#2") == b"out n1"
    assert task.key_error("n1") == b"err" and task.key_retcode("n1") == 3
    assert dict(task.iter_retcodes(match_keys=["n1"])) == {2: ["n1"], 3: ["n1#2"]}
    assert dict(task.iter_retcodes(match_keys=["n3", "zz"])) == {3: ["n3"]}
    assert dict(task.iter_buffers(match_keys=NodeSet("n[2-3]"))) == {
        b"out n2": ["n2"],
        b"out n3": ["n3"],
    }
    assert dict(task.iter_errors(match_keys=["n2"])) == {}
    with pytest.raises(TypeError):
        task.iter_buffers(match_keys="n1")  # a sequence is meant (ClusterShell's rule)
    task.flush_buffers()
    assert list(task.iter_buffers()) == [] and task.key_error("n1") == b"err"
    task.flush_errors()
    assert list(task.iter_errors()) == [] and task.max_retcode() == 3


class OldStyle(EventHandler):
    """ClusterShell 1.x handlers read the worker's current_*/last_* attributes."""

    def __init__(self):
        self.seen = []

    def ev_read(self, worker, node, sname, msg):
        if sname == "stdout":
            self.seen.append(("read", worker.current_node, worker.current_msg, worker.last_read()))
        else:
            self.seen.append(("error", worker.last_error()))

    def ev_hup(self, worker, node, rc):
        self.seen.append(("hup", worker.current_node, worker.current_rc, worker.last_retcode()))


def test_worker_getters_and_current_attributes():
    task = exec_task()
    h = OldStyle()
    worker = task.shell("echo hi; echo oops >&2; exit 4", nodes="n1", handler=h)
    other = task.shell("echo hi; exit 5", nodes="n[1-2]")
    task.resume()
    assert ("read", "n1", b"hi", ("n1", b"hi")) in h.seen
    assert ("error", ("n1", b"oops")) in h.seen
    assert ("hup", "n1", 4, ("n1", 4)) in h.seen
    assert [(bytes(b), sorted(ns)) for b, ns in other.iter_buffers()] == [(b"hi", ["n1#2", "n2"])]
    assert [(rc, str(ns)) for rc, ns in worker.iter_retcodes()] == [(4, "n1")]
    assert list(other.iter_node_retcodes()) == [("n1#2", 5), ("n2", 5)]
    assert list(other.iter_node_buffers(match_keys=["n2"])) == [("n2", b"hi")]
    assert list(worker.iter_node_errors()) == [("n1", b"oops")]
    assert [(bytes(b), str(ns)) for b, ns in worker.iter_errors()] == [(b"oops", "n1")]
    worker.flush_buffers()
    assert task.key_buffer("n1#2") == b"hi" and task.node_buffer("n1") == b"hi"


def test_worker_getters_read_their_own_run():
    task = exec_task()
    first = task.shell("echo one %h", nodes="n[1-2]")
    # scheduled, not run: empty answers, not KeyError
    assert first.node_buffer("n1") == b"" and first.node_retcode("n1") is None
    assert list(first.iter_buffers()) == [] and list(first.iter_node_retcodes()) == []
    assert list(first.iter_retcodes()) == [] and first.node_status("n2") == "pending"
    task.resume()
    second = task.shell("echo two %h; exit 1", nodes="n1")
    # the new worker's slot n1 has not run: the last run's n1 is not its own
    assert second.node_buffer("n1") == b"" and second.node_retcode("n1") is None
    task.resume()
    assert second.node_buffer("n1") == b"two n1" and second.node_retcode("n1") == 1
    # the first worker still reads the run it was part of
    assert first.node_buffer("n1") == b"one n1" and list(first.iter_node_retcodes()) == [
        ("n1", 0),
        ("n2", 0),
    ]


def test_an_autoclose_worker_does_not_keep_the_run_going():
    task = exec_task()
    log = []
    keeper = AbortOnRead("K", log)
    keeper.ev_read = lambda worker, node, sname, msg: keeper.pids.append(int(msg))
    task.shell("echo $$; exec sleep 60", nodes="k1", handler=keeper, autoclose=True)
    task.shell("read x < /dev/null; echo done", nodes="n1", handler=Log("N", log))
    task.resume()  # returns once n1 is done: k1 is killed then
    assert task.node_status("n1") == "hup" and task.node_status("k1") == "aborted"
    assert of(log, "K", "close") == [("K", "close", False)]
    assert not any(pid_alive(p) for p in keeper.pids)


# -- stdin: open by default, as ClusterShell's --------------------------------------------


def test_stdin_is_open_by_default_until_the_nodes_start():
    task = exec_task()
    fed = task.shell("cat; echo end", nodes="n[1-2]")
    fed.write(b"hello\n")  # no stdin=True: ClusterShell's default keeps stdin open
    fed.set_write_eof()
    task.resume()
    assert dict(task.iter_buffers()) == {b"hello\nend": ["n1", "n2"]}
    # nothing written: the command reads an empty stdin and ends, never waits
    task.run("cat; echo end", nodes="n1")
    assert task.node_buffer("n1") == b"end"

    class LateWriter(EventHandler):
        error = None

        def ev_pickup(self, worker, node):
            try:
                worker.write(b"late\n")
            except ValueError as e:
                self.error = e

    late = LateWriter()
    task.run("cat; echo end", nodes="n1", handler=late)
    assert isinstance(late.error, ValueError) and task.node_buffer("n1") == b"end"
    closed = task.shell("cat", nodes="n1", stdin=False)
    with pytest.raises(ValueError):
        closed.write(b"x")
    task.resume()


class LateWriter(EventHandler):
    def ev_pickup(self, worker, node):
        worker.write(b"late\n")
        worker.set_write_eof()


def test_a_stdin_default_set_as_clustershell_sets_it():
    task = exec_task()
    task.set_default("stdin", False)  # /dev/null: nothing may be written
    closed = task.shell("cat; echo end", nodes="n1")
    with pytest.raises(ValueError):
        closed.write(b"x")
    task.resume()
    assert task.node_buffer("n1") == b"end"
    task.set_default("stdin", True)  # open for writes once the nodes run
    task.shell("cat; echo end", nodes="n1", handler=LateWriter())
    task.resume()
    assert task.node_buffer("n1") == b"late\nend"


def test_stdin_written_in_ev_start_reaches_the_nodes():
    class Feeder(EventHandler):
        def ev_start(self, worker):
            worker.write(b"from ev_start\n")
            worker.set_write_eof()

    task = exec_task()
    task.run("cat", nodes="n[1-2]", handler=Feeder())
    assert dict(task.iter_buffers()) == {b"from ev_start": ["n1", "n2"]}


# -- what else a port met (a second audit) ---------------------------------------------


def test_a_zero_or_numeric_run_timeout_as_clushell():
    task = exec_task()
    task.shell("sleep 0.2; echo slow", nodes="n1")
    task.resume(0)  # 0: no limit, as ClusterShell's
    assert task.node_buffer("n1") == b"slow"
    task.shell("sleep 0.2; echo slow", nodes="n1")
    task.run(timeout=0)
    assert task.node_buffer("n1") == b"slow"
    task.shell("exec sleep 30", nodes="n1")
    with pytest.raises(TimeoutError):
        task.run(0.3)  # a number for run(): resume(0.3)
    assert task.node_status("n1") == "timeout"


def test_abort_from_another_thread_wakes_a_silent_run():
    task = exec_task()
    task.shell("exec sleep 60", nodes="n[1-2]")  # prints nothing, never ends by itself
    refused = []

    def other():
        while task.engine is None or not task.running():
            threading.Event().wait(0.01)
        try:
            task.shell("true", nodes="n3")
        except RuntimeError as e:
            refused.append(e)
        task.abort()

    helper = threading.Thread(target=other)
    helper.start()
    task.resume()  # (without the wake-up it would wait for the sleeps: the test times out)
    helper.join()
    assert dict(task.iter_status()) == {"aborted": ["n1", "n2"]}
    assert refused and "from a handler" in str(refused[0])


def test_crlf_buffers_remote_false_and_clushell_names():
    task = exec_task()
    task.set_default("backend", "ssh")  # remote=False must not use it
    worker = task.shell("printf 'a\\r\\nb\\r\\n'; echo %h", nodes="n[1-2],n1", remote=False)
    timer = task.timer(0.01, EventHandler())
    task.resume()
    assert dict(task.iter_buffers()) == {b"a\nb\nn1": ["n1", "n1#2"], b"a\nb\nn2": ["n2"]}
    assert str(worker.nodes) == "n[1-2]" and worker.eh is worker.handler
    assert timer.fire_delay == 0.01
