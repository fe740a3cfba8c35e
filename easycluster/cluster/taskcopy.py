"""The flat ``Task.copy`` and ``Task.rcopy``: the worker that pushes a file or directory
to every node, and the one that pulls one from every node (the contracts are the Task
methods' docstrings; the node's side is ``copy.py``, the local side ``copyio.py``).

Loaded only when a Task copies (``tarfile`` & co. come with ``copyio``).
"""

from __future__ import annotations

import errno
import os
from typing import Any, List, Optional, Tuple

from .backends import Backend
from .copy import base_name, pull_names
from .copyio import PullSink, open_push
from .events import EventHandler
from .worker import Worker


def push_worker(
    task: Any,
    source: str,
    dest: str,
    names: List[str],
    chosen: Backend,
    handler: Optional[EventHandler],
    timeout: Optional[float],
    preserve: bool,
) -> Worker:
    """The worker of a flat copy of ``source`` to ``dest`` on ``names`` (not scheduled)."""
    push = open_push(os.fspath(source))
    try:
        command = chosen.push_command(
            os.fspath(dest), push.name, push.feed.total, push.mode, push.kind, preserve, push.mtime
        )
        keys = task.new_keys(names)
        return Worker(
            task, command, keys, handler, task.command_timeout(timeout), chosen, True, push.feed
        )
    except BaseException:
        push.feed.close()
        raise


def pull_worker(
    task: Any,
    source: str,
    dest: str,
    names: List[str],
    chosen: Backend,
    handler: Optional[EventHandler],
    timeout: Optional[float],
    preserve: bool,
) -> Worker:
    """The worker of a flat rcopy of ``source`` from ``names`` into the local directory
    ``dest`` (not scheduled); raises before anything is made for a bad ``dest``/``source``."""
    source, dest, name = pull_paths(source, dest)
    keys = task.new_keys(names)
    sink = pull_sink(task, dest, name, keys, preserve)
    return Worker(
        task,
        chosen.pull_command(source),
        keys,
        handler,
        task.command_timeout(timeout),
        chosen,
        True,
        None,
        sink,
    )


def pull_paths(source: str, dest: str) -> Tuple[str, str, str]:
    """``(source, dest, base name of source)`` for an rcopy; raises NotADirectoryError
    unless ``dest`` is an existing directory, ValueError if ``source`` has no base name."""
    source, dest = os.fspath(source), os.fspath(dest)
    name = base_name(source)
    if not os.path.isdir(dest):
        raise NotADirectoryError(
            errno.ENOTDIR, "rcopy: the destination must be an existing directory", dest
        )
    return source, dest, name


def pull_sink(task: Any, dest: str, name: str, keys: List[str], preserve: bool) -> PullSink:
    """Where an rcopy's slots ``keys`` write: ``dest/NAME.NODE`` (``copy.pull_names``)."""
    hosts = [task.slot(k).node for k in keys]
    return PullSink(dest, pull_names(name, keys, hosts), preserve)
