"""``Task.copy`` through the tree: a file or directory pushed to many nodes through
gateways, streamed in raw chunks, seen by the Task exactly as a flat copy.

A push is a shell command with a stream on its stdin: every node runs ``copy.RECEIVER``
(the same command line a flat ssh copy runs, from ``SshBackend.push_command``) and reads
the file's bytes, or a directory's tar stream, on its stdin. So a tree copy is a tree
shell (``treeworker.TreeWorker``) whose stdin is the source, spooled at every level
(``treespool.py``)::

    admin: the source file (or the tar of a directory, packed once) ─┐ SpoolStream.over
      │ one feeder thread per first-hop gateway: gateway_feed(token, 1 MiB, last)
      │ (raw bytes in an authenticated frame: no base64, never the whole file)
    gateway: appends each chunk to its spool file as it comes, and at once
      ├─ pumps the spool into the pipe its engine broadcasts to its own nodes
      │  (ssh node RECEIVER; each node's writes read back from the spool)
      └─ feeds the gateways below it the same way
    node: RECEIVER writes .NAME.ectmp.PID, renames it onto the target only once
          exactly SIZE bytes arrived (copy.py); anything else leaves nothing

Memory per level is a few chunks per consumer, whatever the file size and the number of
nodes; each gateway holds one copy of the stream on its disk for the run (a share
rerouted after its gateway died starts again from the first byte, read back from the
admin's source or the parent's spool).

Results and events are flat's: per node the receiver's return code (0, or 1 with
``easycluster copy: ...`` on its stderr), ``unreachable`` rc 255 for a node its gateway
cannot reach, and for a gateway lost mid-copy its nodes failed over to another gateway
of their line (the copy runs there from the start) or ``unreachable`` rc 255 with
``gateway GW lost: ...`` in their error buffer (their receivers, cut short, remove
their temporaries).

``Task.rcopy`` through the tree (``tree_rcopy``) is the other way: every node runs
``copy.SENDER`` (a header line, then the data) and its stdout is sent up raw, as it
comes (``treerun.options(raw=True)``: not split into lines, at most ``RAW_LIMIT`` bytes
pending per host, which holds the nodes back), to the admin's ``PullSink``, which
writes each node's stream to a temporary in the destination and renames it only when
the node's end (rc 0) arrives, as flat. A node rerouted after its gateway died sends
its stream again from the start: what came before is dropped first (``RESET``).
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

from .copyio import open_push
from .taskcopy import pull_paths, pull_sink
from .treespool import SpoolStream
from .treeworker import TreeWorker
from .worker import Worker


def tree_copy(
    task: Any,
    source: str,
    dest: str,
    names: List[str],
    handler: Any,
    timeout: Optional[float],
    preserve: bool,
) -> Worker:
    """Schedule the push of the local ``source`` to ``dest`` on ``names`` through the
    gateways of ``task``'s topology and return its worker (``Task.copy``'s contract;
    each node once). The source is opened (a directory packed) here, before anything
    is scheduled: FileNotFoundError / ValueError as for a flat copy. The worker owns it
    and releases it when the Task's run ends."""
    push = open_push(os.fspath(source))
    feed = push.feed
    try:
        command = task.backend("ssh").push_command(
            os.fspath(dest), push.name, feed.total, push.mode, push.kind, preserve, push.mtime
        )
        if feed.file is None:
            raise ValueError("copy: the source was closed before the copy started")
        stream = SpoolStream.over(feed.file, feed.total, feed.close)
        worker: Worker = task.tree_shell(command, names, handler, timeout, True, stream)
        return worker
    except BaseException:
        feed.close()
        raise


def tree_rcopy(
    task: Any,
    source: str,
    dest: str,
    names: List[str],
    handler: Any,
    timeout: Optional[float],
    preserve: bool,
) -> Worker:
    """Schedule the pull of ``source`` from ``names`` into the local directory ``dest``
    through the gateways of ``task``'s topology (``Task.rcopy``'s contract, each node
    once: ``dest/NAME.NODE``) and return its worker. NotADirectoryError / ValueError
    before anything is scheduled, as flat."""
    source, dest, name = pull_paths(source, dest)
    if task.topology is None:
        raise ValueError("tree mode needs a topology: call load_topology() first")
    command = task.backend("ssh").pull_command(source)
    keys = task.new_keys(list(dict.fromkeys(names)))
    sink = pull_sink(task, dest, name, keys, preserve)
    timeout = task.command_timeout(timeout)
    worker = TreeWorker(task, command, keys, handler, timeout, True, task.topology, None, sink)
    task.tree_workers.append(worker)
    worker.arm()
    return worker
