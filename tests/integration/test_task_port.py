"""What a ClusterShell script ported by changing its imports relies on (found by
running such scripts against both libraries): buffers that answer ``message()`` and
iterate by line, a node's results over several ``shell()`` calls of one run, and slot
keys handed back to ``shell()`` from a handler. Real ``sh`` processes (exec backend)."""

from __future__ import annotations

import pytest

from easycluster.cluster import EventHandler, Task
from easycluster.nodeset import NodeSet

pytestmark = pytest.mark.timeout(60)


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
