"""The cluster layer: run commands on many nodes at once, ClusterShell's way.

A ``Task`` (one per thread: ``task_self()``) collects work (``task.shell(cmd,
nodes=...)``, ``task.timer(...)``) and runs it on the calling thread
(``task.resume()``, or ``task.run(cmd, nodes=...)`` for both at once). The thread
that runs it owns all its I/O: one ``selectors`` loop starts each node's command within
the fan-out window, reads its output and calls the ``EventHandler`` events in the order
drawn in ``events.py``. Results are kept per slot (a node listed twice runs twice,
``node`` and ``node#2``) with bounded buffers, and read with ClusterShell's getters
(``iter_buffers``, ``iter_retcodes``, ``node_buffer``, ``max_retcode``, ...). Each node
ends in one state of ``nodestate.py`` (``hup`` with its return code, ``timeout``,
``unreachable``, ``hostkey``, ``failed``, ``aborted``).

The modules: ``task`` (Task, task_self; its settings in ``tasksettings``, its
getters in ``taskresults``, ``task_wait`` & co. in ``taskthreads``, message ports from
other threads in ``port``), ``worker`` (Worker, Timer), ``engine`` (the loop; a slot's
output and stdin in ``slotio``), ``events`` (EventHandler and the event order),
``nodestate`` (the per-node state machine), ``window`` (the fan-out window), ``feed``
(stdin broadcast: what ``shell()``'s ``stdin`` becomes), ``results``
(bounded per-slot buffers and getters), ``backends`` (how a command runs: local exec
with ``%h``/``%n``, plain ``ssh host cmd``), ``copy`` and ``copyio`` (``task.copy``
and ``task.rcopy``: the node's side as ``sh`` commands, and the local side).
``gather``, ``summary`` and ``progress`` display results and are light: importing this
package loads none of the engine; each name below loads its module on first use.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: a CLI's --help imports this package, not typing)
    from typing import Any, Dict, List

_EXPORTS: Dict[str, str] = {
    "Task": "easycluster.cluster.task",
    "Cluster": "easycluster.cluster.session",
    "NodeResults": "easycluster.cluster.session",
    "CommandResult": "easycluster.cluster.session",
    "Worker": "easycluster.cluster.task",
    "Timer": "easycluster.cluster.task",
    "task_self": "easycluster.cluster.task",
    "task_wait": "easycluster.cluster.taskthreads",
    "task_terminate": "easycluster.cluster.taskthreads",
    "task_cleanup": "easycluster.cluster.taskthreads",
    "Port": "easycluster.cluster.port",
    "TaskTimeout": "easycluster.errors",
    "EventHandler": "easycluster.cluster.events",
    "Piece": "easycluster.cluster.events",
    "Backend": "easycluster.cluster.backends",
    "ExecBackend": "easycluster.cluster.backends",
    "SshBackend": "easycluster.cluster.sshexec",
    "NodeState": "easycluster.cluster.nodestate",
    "FanoutWindow": "easycluster.cluster.window",
    "ClusterExecutor": "easycluster.cluster.executor",
    "Scheduler": "easycluster.cluster.scheduler",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'easycluster.cluster' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))
