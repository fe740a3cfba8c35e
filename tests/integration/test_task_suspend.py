"""``task.suspend()`` (``suspension.py``): from another thread and from a handler, then
``resume()`` from another thread; ``abort()`` while suspended; nothing left behind by a
``suspend()`` of a Task not running; timers and ports held while suspended. Real ``sh``
processes (exec backend) on a Task run by a thread of the test; none is left behind.

A command that should not end on its own waits for a file the test may never make
(``gate``), a bounded wait: if the code under test is wrong, it still ends."""

from __future__ import annotations

import threading

import pytest
from helpers import wait_until

from easycluster.cluster import EventHandler, Task

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leftover_children")]


def gate(path) -> str:
    """Shell words that wait (at most ~20 s) until ``path`` exists."""
    return f"for i in $(seq 2000); do [ -e {path} ] && break; sleep 0.01; done"


def within(call, timeout=10):
    """``call()`` on a helper thread: its result, or a failure if it has not returned
    within ``timeout`` s (a ``suspend()`` or ``resume()`` that hangs fails the test)."""
    out = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert out, f"{call} did not return within {timeout} s"
    return out[0]


class Log(EventHandler):
    """Every worker event, in order, as tuples."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def add(self, *event):
        with self.lock:
            self.events.append(event)

    def names(self, start=0):
        with self.lock:
            return [e[:2] for e in self.events[start:]]

    def ev_start(self, worker):
        self.add("start")

    def ev_pickup(self, worker, node):
        self.add("pickup", node)

    def ev_read(self, worker, node, sname, msg):
        self.add("read", node, msg)

    def ev_hup(self, worker, node, rc):
        self.add("hup", node, rc)

    def ev_timeout(self, worker):
        self.add("timeout")

    def ev_close(self, worker, timedout):
        self.add("close", timedout)


class Runner:
    """``task.resume()`` on a thread of its own; ``stop()`` ends it whatever happened."""

    def __init__(self, task):
        self.task = task
        self.error = None
        self.thread = threading.Thread(target=self.run, daemon=True)  # (never holds pytest)
        self.thread.start()

    def run(self):
        try:
            self.task.resume()
        except BaseException as e:  # (reported by the test)
            self.error = e

    def stop(self):
        if self.thread.is_alive():
            self.task.abort()
        self.thread.join(20)
        assert not self.thread.is_alive(), "the Task's thread did not end"


def exec_task(fanout=None):
    task = Task()
    task.set_default("backend", "exec")
    if fanout:
        task.set_info("fanout", fanout)
    return task


def test_suspend_from_another_thread_holds_every_event_until_resume(tmp_path):
    task = exec_task(fanout=2)
    log = Log()
    go, done = tmp_path / "go", tmp_path / "done"
    done.mkdir()
    task.shell(
        f"{gate(go)}; echo one %h; echo two %h; touch {done}/%h", nodes="n[1-3]", handler=log
    )
    runner = Runner(task)
    try:
        assert wait_until(lambda: len(log.names()) == 3)  # start, and the window's 2 pickups
        assert within(task.suspend) is True
        held = len(log.events)
        assert task.running() is True
        go.touch()  # n1 and n2 print and end, on their own, while the Task is suspended
        assert wait_until(lambda: sorted(p.name for p in done.iterdir()) == ["n1", "n2"])
        assert log.names(held) == []  # nothing handled: output and ends wait in the pipes
        assert not (done / "n3").exists()  # the window did not move
        assert within(task.resume) is None  # returns at once: the Task's own thread goes on
        runner.thread.join(20)
        assert not runner.thread.is_alive() and runner.error is None
    finally:
        runner.stop()
    names = log.names()
    assert names[:3] == [("start",), ("pickup", "n1"), ("pickup", "n2")]
    assert names[-1] == ("close", False) and names.count(("close", False)) == 1
    for node in ("n1", "n2", "n3"):
        mine = [e for e in log.events if len(e) > 1 and e[1] == node]
        assert mine == [
            ("pickup", node),
            ("read", node, f"one {node}".encode()),
            ("read", node, f"two {node}".encode()),
            ("hup", node, 0),
        ]
    assert names.index(("pickup", "n3")) > min(names.index(("hup", n)) for n in ("n1", "n2"))
    assert task.node_buffer("n3") == b"one n3\ntwo n3"


class SuspendAtPickup(Log):
    """Suspends the Task from its own thread at the first pickup."""

    def __init__(self):
        super().__init__()
        self.answer = None

    def ev_pickup(self, worker, node):
        super().ev_pickup(worker, node)
        if self.answer is None:
            self.answer = worker.task.suspend()
            self.add("suspend asked")


def test_suspend_from_a_handler_takes_effect_as_it_returns(tmp_path):
    task = exec_task(fanout=1)
    log = SuspendAtPickup()
    task.shell("echo x %h", nodes="n[1-2]", handler=log)
    runner = Runner(task)
    try:
        assert wait_until(lambda: task.suspension.suspended)
        assert log.answer is True
        # n1's echo may be over, but nothing more was handled
        assert log.names() == [("start",), ("pickup", "n1"), ("suspend asked",)]
        assert within(task.suspend) is True  # (already suspended: at once)
        within(task.resume)
        runner.thread.join(20)
        assert not runner.thread.is_alive() and runner.error is None
    finally:
        runner.stop()
    assert log.names()[3:] == [
        ("read", "n1"),
        ("hup", "n1"),
        ("pickup", "n2"),
        ("read", "n2"),
        ("hup", "n2"),
        ("close", False),
    ]


def test_resume_from_the_handler_cancels_its_own_suspend():
    task = exec_task()

    class Both(Log):
        def ev_start(self, worker):
            super().ev_start(worker)
            assert worker.task.suspend() is True
            worker.task.resume()  # (cancelled before it took effect: no one else resumes)

    log = Both()
    task.shell("echo x", nodes="n1", handler=log)
    runner = Runner(task)  # ends on its own: no one else resumes it
    try:
        runner.thread.join(20)
        assert not runner.thread.is_alive() and runner.error is None
    finally:
        runner.stop()
    assert log.names() == [
        ("start",),
        ("pickup", "n1"),
        ("read", "n1"),
        ("hup", "n1"),
        ("close", False),
    ]


def test_abort_ends_a_suspended_task(tmp_path):
    task = exec_task(fanout=2)
    log = Log()
    task.shell(f"{gate(tmp_path / 'never')}; echo late", nodes="n[1-3]", handler=log)
    runner = Runner(task)
    try:
        assert wait_until(lambda: len(log.names()) == 3)
        assert within(task.suspend) is True
        assert task.join(0.05) is False  # a suspended run is in progress
        task.abort()
        assert task.join(20) is True
        runner.thread.join(20)
        assert not runner.thread.is_alive() and runner.error is None
    finally:
        runner.stop()
    assert task.running() is False
    assert log.names()[3:] == [("close", False)]  # after an abort: only ev_close
    assert {n: task.node_status(n) for n in ("n1", "n2", "n3")} == dict.fromkeys(
        ("n1", "n2", "n3"), "aborted"
    )
    assert within(task.suspend) is False  # over: nothing to suspend


def test_suspend_of_a_task_not_running_returns_false_and_leaves_nothing():
    task = exec_task()
    assert within(task.suspend) is False
    task.shell("echo x", nodes="n1")
    runner = Runner(task)  # a suspension left behind would hold this run for ever
    try:
        runner.thread.join(20)
        assert not runner.thread.is_alive() and runner.error is None
    finally:
        runner.stop()
    assert task.node_buffer("n1") == b"x"
    assert within(task.suspend) is False


def test_resume_while_nothing_is_suspended_does_nothing_and_suspend_still_works(tmp_path):
    task = exec_task()
    log = Log()
    go = tmp_path / "go"
    task.shell(f"{gate(go)}; echo x", nodes="n1", handler=log)
    runner = Runner(task)
    try:
        assert wait_until(lambda: len(log.names()) == 2)
        assert within(task.resume) is None  # another thread, a run on, nothing suspended: no-op
        assert within(task.suspend) is True  # (ClusterShell's would now not suspend)
        go.touch()
        assert runner.thread.is_alive()
        within(task.resume)
        runner.thread.join(20)
        assert not runner.thread.is_alive() and runner.error is None
    finally:
        runner.stop()
    assert task.node_buffer("n1") == b"x"


class Timers(EventHandler):
    """Two timers due at once; the first to fire suspends the Task."""

    def __init__(self):
        self.fired = []

    def ev_timer(self, timer):
        self.fired.append(timer)
        if len(self.fired) == 1:
            assert timer.task.suspend() is True


def test_a_timer_does_not_fire_while_suspended():
    task = Task()
    timers = Timers()
    task.timer(0, handler=timers)
    task.timer(0, handler=timers)
    runner = Runner(task)  # (the timers alone keep the run going until they fire)
    try:
        assert wait_until(lambda: task.suspension.suspended)
        # the second timer is due; it must not fire until resumed (a bounded look)
        assert not wait_until(lambda: len(timers.fired) > 1, timeout=0.3)
        within(task.resume)
        runner.thread.join(20)
        assert not runner.thread.is_alive() and runner.error is None
    finally:
        runner.stop()
    assert len(timers.fired) == 2


class Messages(EventHandler):
    """Records messages; ``"wait"`` suspends the Task from ``ev_msg``."""

    def __init__(self):
        self.seen = []
        self.started = threading.Event()

    def ev_port_start(self, port):
        self.started.set()

    def ev_msg(self, port, msg):
        self.seen.append(msg)
        if msg == "wait":
            assert port.task.suspend() is True


def test_a_port_message_sent_while_suspended_is_delivered_after_resume():
    task = Task()
    messages = Messages()
    port = task.port(handler=messages)  # (not autoclose: keeps the run going)
    runner = Runner(task)
    try:
        assert messages.started.wait(10)
        assert within(task.suspend) is True
        sender = threading.Thread(target=port.msg, args=("hello",))  # waits until taken
        sender.start()
        sender.join(0.3)
        assert sender.is_alive() and messages.seen == []
        within(task.resume)
        sender.join(20)
        assert not sender.is_alive() and messages.seen == ["hello"]
        port.close()
        runner.thread.join(20)
        assert not runner.thread.is_alive() and runner.error is None
    finally:
        port.close()
        runner.stop()


def test_suspend_from_ev_msg_holds_the_rest_of_the_queue():
    task = Task()
    messages = Messages()
    port = task.port(handler=messages)
    for msg in ("one", "wait", "three"):
        port.msg_send(msg)
    port.close()  # (delivered first, then the port goes and the run ends)
    runner = Runner(task)
    try:
        assert wait_until(lambda: task.suspension.suspended)
        assert messages.seen == ["one", "wait"]
        within(task.resume)
        runner.thread.join(20)
        assert not runner.thread.is_alive() and runner.error is None
    finally:
        runner.stop()
    assert messages.seen == ["one", "wait", "three"]


def test_a_command_timeout_passed_while_suspended_is_acted_on_at_resume(tmp_path):
    task = exec_task()
    log = SuspendAtPickup()  # (suspended as its command starts: before its timeout)
    task.shell(gate(tmp_path / "never"), nodes="n1", handler=log, timeout=0.2)
    runner = Runner(task)
    try:
        assert wait_until(lambda: task.suspension.suspended)
        threading.Event().wait(0.4)  # (the command's timeout passes meanwhile)
        assert log.names() == [("start",), ("pickup", "n1"), ("suspend asked",)]
        assert task.node_status("n1") == "started"
        within(task.resume)
        runner.thread.join(20)
        assert not runner.thread.is_alive() and runner.error is None
    finally:
        runner.stop()
    assert log.names()[3:] == [("timeout",), ("close", True)]
    assert task.node_status("n1") == "timeout"
