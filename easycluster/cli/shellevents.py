"""``ShellHandler``: the ``easycluster shell`` side of a Task's events (live output,
``-bL`` rows, ``--outdir`` files, the progress line)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..cluster.events import EventHandler
from ..cluster.gather import LineWriter
from ..cluster.progress import Progress
from .shellfiles import OutputFiles

if TYPE_CHECKING:  # annotations only: the Task and its backends load once a run starts
    from ..cluster.worker import Worker


class ShellHandler(EventHandler):
    """Live output and progress: the shell's side of a Task's events."""

    def __init__(
        self,
        out: Optional[LineWriter],
        err: Optional[LineWriter],
        progress: Progress,
        files: Optional[OutputFiles] = None,
    ) -> None:
        self.out = out  # None: stdout is gathered at the end
        self.err = err  # None: stderr is gathered with stdout
        self.progress = progress
        self.files = files  # --outdir/--errdir
        self.done = 0
        self.failed = 0

    def ev_pickup(self, worker: Worker, node: str) -> None:
        if self.files is not None:
            self.files.start(node)

    def ev_read(self, worker: Worker, node: str, sname: str, msg: bytes) -> None:
        writer = self.out if sname == "stdout" else self.err
        if writer is not None:
            with self.progress.paused():
                writer.write(node, msg)
        if self.files is not None:
            self.files.write(node, sname, msg)

    def ev_hup(self, worker: Worker, node: str, rc: int) -> None:
        if self.out is not None:  # (-bL: the rows wait for this node no more)
            with self.progress.paused():
                self.out.end((node,))
        self.done += 1
        if rc != 0 or worker.node_status(node) != "hup":
            self.failed += 1
        self.progress.update(self.done, self.failed)
        if self.files is not None:
            self.files.finish((node,))

    def ev_close(self, worker: Worker, timedout: bool) -> None:
        for writer in (self.out, self.err):
            if writer is not None:  # (a line some node left unfinished: killed mid-line)
                with self.progress.paused():
                    writer.end(worker.keys)
        self.progress.clear()
        if self.files is not None:
            self.files.finish(worker.keys)
