"""Tasks and threads, as ClusterShell scripts use them: message ports (``task.port()``,
``ev_port_start``/``ev_msg`` on the Task's thread), ``task_wait``, ``task_terminate``
and ``task_cleanup``. Real ``sh`` processes (exec backend); none is left behind."""

from __future__ import annotations

import threading
import time

import pytest

from easycluster.cluster import (
    EventHandler,
    Task,
    task_cleanup,
    task_self,
    task_terminate,
    task_wait,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leftover_children")]


class Recorder(EventHandler):
    """Records port events with the thread they ran on."""

    def __init__(self):
        self.seen = []
        self.threads = set()

    def ev_port_start(self, port):
        self.seen.append("start")
        self.threads.add(threading.current_thread())

    def ev_msg(self, port, msg):
        self.seen.append(msg)
        self.threads.add(threading.current_thread())


def send_later(port, msgs, close=True, delay=0.05):
    def go():
        time.sleep(delay)
        for m in msgs:
            port.msg_send(m)
        if close:
            port.close()

    t = threading.Thread(target=go)
    t.start()
    return t


def test_a_port_keeps_the_run_going_until_closed_and_delivers_in_order():
    task = Task()
    h = Recorder()
    port = task.port(handler=h)
    sender = send_later(port, list(range(200)), delay=0.2)
    t0 = time.monotonic()
    task.resume()  # nothing else scheduled: the port alone keeps it running
    sender.join()
    assert time.monotonic() - t0 >= 0.2
    assert h.seen == ["start", *range(200)]
    assert h.threads == {threading.current_thread()}
    assert task.ports == []  # closed and drained: gone
    assert port.msg_send("late") is False  # closed: refused, as ClusterShell's


class Dispatcher(EventHandler):
    """Each message names nodes to run a command on (clush's interactive loop)."""

    def __init__(self):
        self.read = []

    def ev_msg(self, port, msg):
        if msg is None:
            port.close()
        else:
            port.task.shell("echo hi %h", nodes=msg, handler=self, backend="exec")

    def ev_read(self, worker, node, sname, line):
        self.read.append((node, line))


def test_messages_from_another_thread_schedule_work_on_the_task_thread():
    task = Task()
    h = Dispatcher()
    port = task.port(handler=h)
    sender = send_later(port, ["a,b", "c", None])
    task.resume()
    sender.join()
    assert sorted(h.read) == [("a", b"hi a"), ("b", b"hi b"), ("c", b"hi c")]
    assert dict(task.iter_retcodes()) == {0: ["a", "b", "c"]}


def test_an_autoclose_port_does_not_hold_the_run_and_its_messages_wait():
    task = Task()
    task.set_default("backend", "exec")
    h = Recorder()
    port = task.port(handler=h, autoclose=True)
    task.shell("sleep 0.1", nodes="n1")
    task.resume()  # ends with the worker, although the port is open
    assert h.seen == ["start"]
    port.msg_send("between runs")  # no run: queued
    assert h.seen == ["start"]
    task.run("true", nodes="n1")
    assert h.seen == ["start", "between runs"]


class Aborter(Recorder):
    def ev_msg(self, port, msg):
        super().ev_msg(port, msg)
        if msg == "stop":
            port.task.abort()


def test_abort_from_ev_msg_keeps_the_rest_queued():
    task = Task()
    task.set_default("backend", "exec")
    h = Aborter()
    port = task.port(handler=h, autoclose=True)
    for m in ("one", "stop", "three"):
        port.msg_send(m)
    task.shell("sleep 5", nodes="n1")
    t0 = time.monotonic()
    task.resume()
    assert time.monotonic() - t0 < 4  # the sleep was killed
    assert h.seen == ["start", "one", "stop"]
    assert [msg for msg, _ in port.queue] == ["three"]
    assert task.node_status("n1") == "aborted"


class Opener(EventHandler):
    def __init__(self, inner):
        self.inner = inner
        self.port = None

    def ev_start(self, worker):
        self.port = worker.task.port(handler=self.inner)
        self.port.msg_send("from a handler")
        self.port.close()


def test_a_port_made_in_a_handler_during_the_run():
    task = Task()
    inner = Recorder()
    task.shell("true", nodes="n1", handler=Opener(inner), backend="exec")
    task.resume()
    assert inner.seen == ["start", "from a handler"]
    assert task.ports == []


def test_task_wait_waits_for_the_runs_of_other_threads():
    tasks = {}

    def work(name):
        task = tasks[name] = task_self()
        task.run(f"sleep 0.3; echo {name}", nodes=name, backend="exec")

    threads = [threading.Thread(target=work, args=(n,)) for n in ("x", "y")]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while sum(t.engine is not None for t in _running_tasks(threads)) < 2:
        assert time.monotonic() < deadline, "the threads' runs never started"
        time.sleep(0.01)
    task_wait()
    # both runs had ended when task_wait returned
    assert [(n, t.engine, t.node_buffer(n)) for n, t in sorted(tasks.items())] == [
        ("x", None, b"x"),
        ("y", None, b"y"),
    ]
    for t in threads:
        t.join()


def _running_tasks(threads):
    from easycluster.cluster.taskthreads import alive

    return [t for t in alive() if t.thread in threads]


def test_task_terminate_gives_the_thread_a_new_task():
    first = task_self()
    first.set_info("USER_mark", 1)
    task_terminate()
    second = task_self()
    assert second is not first and second.info("USER_mark") is None


def test_task_cleanup_aborts_the_runs_of_other_threads():
    ended = threading.Event()

    def work():
        try:
            task_self().run("sleep 30", nodes="n[1-3]", backend="exec")
        finally:
            ended.set()

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 5
    while not any(t.engine is not None for t in _running_tasks([thread])):
        assert time.monotonic() < deadline, "the thread's run never started"
        time.sleep(0.01)
    t0 = time.monotonic()
    task_cleanup()
    assert ended.is_set() and time.monotonic() - t0 < 5
    thread.join()


# -- found by an audit of the first version ----------------------------------------------


def test_messages_sent_before_close_are_delivered_before_the_run_ends():
    task = Task()
    seen = []

    class First(EventHandler):
        def ev_msg(self, port, msg):
            seen.append(msg)

    first = task.port(handler=First())

    class Closer(EventHandler):
        def ev_msg(self, port, msg):
            for i in range(5):
                first.msg_send(i)
            first.close()  # (sent, then closed: all five still arrive)
            port.close()

    closer = task.port(handler=Closer())
    closer.msg_send("go")
    task.resume()
    assert seen == [0, 1, 2, 3, 4]
    assert task.ports == []
    assert first.msg_send("late") is False  # closed: refused, as ClusterShell's


def test_msg_waits_until_the_task_takes_the_message():
    task = Task()
    h = Recorder()
    port = task.port(handler=h)
    returned = []

    def sender():
        port.msg("sync")  # no run yet: waits for one to take it
        returned.append(time.monotonic())
        port.close()

    thread = threading.Thread(target=sender)
    thread.start()
    time.sleep(0.3)
    assert returned == []  # still waiting: nothing took the message
    started = time.monotonic()
    task.resume()
    thread.join()
    assert returned and returned[0] >= started
    assert h.seen == ["start", "sync"]


def test_abort_kill_unbinds_the_task_from_its_thread():
    first = task_self()
    first.abort(kill=True)
    assert task_self() is not first


def test_a_bad_timeout_leaves_the_task_usable():
    task = Task()
    task.set_default("backend", "exec")
    task.shell("echo hi", nodes="n1")
    with pytest.raises(TypeError):
        task.resume(timeout="5")
    assert not task.running() and task.join(0)
    task.resume()
    assert task.node_buffer("n1") == b"hi"


def test_work_scheduled_by_the_last_autoclose_ev_close_runs_in_that_run():
    task = Task()
    task.set_default("backend", "exec")
    log = []

    class Next(EventHandler):
        def ev_hup(self, worker, node, rc):
            log.append(("next hup", node, rc))

    class Then(EventHandler):
        def ev_close(self, worker, timedout):
            log.append("autoclose closed")
            task.shell("echo next", nodes="m1", handler=Next())

    task.shell("sleep 10", nodes="n1", handler=Then(), autoclose=True)
    task.shell("sleep 0.1", nodes="n2")  # the only holder: when it ends, n1 is aborted
    task.resume()
    assert log == ["autoclose closed", ("next hup", "m1", 0)]
    assert task.node_status("n1") == "aborted" and task.node_buffer("m1") == b"next"


def test_task_wait_while_other_threads_make_tasks():
    stop = threading.Event()
    errors = []

    def maker():
        while not stop.is_set():
            Task()

    threads = [threading.Thread(target=maker) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                task_wait()
            except RuntimeError as e:  # (set changed size during iteration)
                errors.append(e)
                break
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
