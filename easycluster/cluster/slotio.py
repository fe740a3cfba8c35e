"""A running slot's I/O, for the engine (``engine.py``): its output in, its stdin out.

``SlotIO`` is a mixin of ``Engine``; its methods run on the engine's thread, called from
the loop when a descriptor is ready, and move bytes only: when a slot starts or ends is
the engine's business (``start``, ``maybe_finish``, ``release``). ``Running`` is a
started slot's live state, ``Hooks`` what the engine needs of its Task.

Output: each ready descriptor gets one read of ``CHUNK`` bytes per turn of the loop, so
a node that floods output shares the loop with the others; what it sends beyond the
result buffers' limit is counted and dropped at once (see ``results.py``). When the
handler listens (``Worker.wants_lines``), lines go to ``ev_read`` whole, a longer one in
pieces of ``LINE_MAX`` bytes (``events.Piece`` but the last), the last unfinished one when
its stream ends. A worker
with a ``sink`` (``worker.Sink``: rcopy's raw data) has its stdout handed to the sink as
it comes, neither kept nor split into lines. A command with a ``mailbox``
(``backends.Mailbox``: the RPC backend's) has no pipes: its output and end are taken
from the mailbox, one descriptor for all such commands.

Stdin: a slot's stdin is registered for writing while its worker's feed
(``feed.StdinFeed``) holds bytes it has not written, and closed at the feed's end. The
feed's source is read only when every slot written to has caught up; the chunks no slot
needs any more (started or still waiting) are dropped then.
"""

from __future__ import annotations

import os
import selectors
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Set

from .backends import Command, Mailbox
from .events import Piece
from .feed import CHUNK
from .results import Results, SlotResult
from .worker import Worker

__all__ = ["Hooks", "Running", "SlotIO", "LINE_MAX", "OUT", "EXITED", "STDIN", "SOURCE", "MAIL"]


class Hooks(Protocol):
    """What the engine needs of its Task (``task.Task``)."""

    aborting: bool  # abort() was called: stop at the next turn, call no more handlers

    @property
    def buffer_max(self) -> Optional[int]: ...

    def emit(self, worker: Worker, event: str, *args: Any) -> None: ...


LINE_MAX = 1 << 16  # bytes: a longer line goes to ev_read in pieces this long

# What a registered descriptor is, in the selector's ``data``.
OUT = 0  # a slot's stdout or stderr
EXITED = 1  # a slot's pidfd
STDIN = 2  # a slot's stdin
SOURCE = 3  # a worker's stdin source
MAIL = 4  # a mailbox


class Running:
    """A started slot's live state: its process, open streams, partial lines, deadline
    and how far its stdin has been written."""

    __slots__ = (
        "slot",
        "worker",
        "cmd",
        "open",
        "partial",
        "pos",
        "writing",
        "deadline",
        "spoke",
        "in_sink",
    )

    def __init__(self, slot: SlotResult, worker: Worker, cmd: Command) -> None:
        self.slot = slot
        self.worker = worker
        self.cmd = cmd
        self.open = 0  # output streams not at EOF yet
        self.partial: Dict[str, bytes] = {}  # sname -> the start of a line not ended yet
        self.pos = 0  # bytes of the worker's stdin feed written
        self.writing = False  # stdin registered for writing
        self.deadline: Optional[float] = None
        self.spoke = False  # stdout (not carrying stderr) sent a byte: the command ran
        # in a call of its sink (a write, or the commit): still set once the loop goes on,
        # a Ctrl-C broke that call off, and the slot is never committed (cleanup() aborts it)
        self.in_sink = False


class SlotIO:
    """``Engine``'s I/O methods: reading a running slot's output (``read``, ``take_mail``),
    then writing its stdin (``arm_stdin``, ``write``, ``feed_changed``, ``pump_source``)."""

    # (set by Engine; declared here for the type checker)
    task: Hooks
    results: Results
    running: Dict[str, Running]
    mailed: Dict[Any, Running]
    to_pump: Set[Worker]

    if TYPE_CHECKING:

        def selector(self) -> selectors.BaseSelector: ...

        def unregister(self, fd: int) -> None: ...

        def maybe_finish(self, run: Running) -> None: ...

    def read(self, fd: int, key: str, sname: str) -> None:
        run = self.running.get(key)
        if run is None:
            return
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.output(run, sname, data, sname == "stderr" or run.cmd.stderr is None)
            return
        self.unregister(fd)
        os.close(fd)
        if sname == "stdout":
            run.cmd.stdout = -1
        else:
            run.cmd.stderr = None
        self.flush(run, sname)
        run.open -= 1
        self.maybe_finish(run)

    def output(self, run: Running, sname: str, data: bytes, carries_stderr: bool) -> None:
        """``data`` came on a slot's stream ``sname``."""
        run.slot.state.read()
        if not carries_stderr:
            run.spoke = True
        worker = run.worker
        if sname == "stdout" and worker.sink is not None:
            # (a write broken off by Ctrl-C lost part of the stream: Engine.settle then
            # must not commit what the node sends after it, nor call it "sent no data")
            if run.in_sink:
                return  # (broken off before: the rest of the stream is not kept either)
            run.in_sink = True
            worker.sink.write(run.slot, data)
            run.in_sink = False
            return
        run.slot.keep(sname, data, self.task.buffer_max, carries_stderr)
        if worker.wants_lines:
            self.lines(run, sname, data)

    def flush(self, run: Running, sname: str) -> None:
        """A slot's stream ``sname`` ended: its unfinished last line goes to ev_read."""
        rest = run.partial.pop(sname, b"")
        if rest:
            self.task.emit(run.worker, "ev_read", run.worker, run.slot.key, sname, rest)

    def take_mail(self, box: Mailbox) -> None:
        """Output and ends of mailbox commands (a slot released since: dropped)."""
        for cmd, sname, data in box.take():
            if self.task.aborting:  # (as the loop stops at the next descriptor: all killed)
                break
            run = self.mailed.get(cmd)
            if run is None or run.slot.key not in self.running:
                continue
            if sname is not None:
                self.output(run, sname, data, sname == "stderr" or not run.worker.stderr)
                continue
            if run.partial:  # (unfinished last lines, for a handler that wants lines)
                for name in ("stdout", "stderr"):
                    if run.slot.key in self.running:  # (a handler may have aborted)
                        self.flush(run, name)
            run.open = 0
            if run.slot.key in self.running:
                self.maybe_finish(run)

    def lines(self, run: Running, sname: str, data: bytes) -> None:
        """Call ev_read for each complete line; keep the rest (at most LINE_MAX bytes)."""
        worker, key = run.worker, run.slot.key
        buf = run.partial.pop(sname, b"") + data
        start = 0
        while key in self.running:  # (a handler may abort: stop delivering then)
            # (only within one piece's reach: a newline further on must not let a longer
            # line through whole)
            end = buf.find(b"\n", start, start + LINE_MAX + 1)
            if end < 0:
                if len(buf) - start <= LINE_MAX:
                    break  # (a piece goes only once a byte after it is known: a Piece
                    # always has a continuation, even when the stream ends there)
                end = start + LINE_MAX
                self.task.emit(worker, "ev_read", worker, key, sname, Piece(buf[start:end]))
                start = end
                continue
            line = buf[start : end - 1] if end > start and buf[end - 1] == 13 else buf[start:end]
            self.task.emit(worker, "ev_read", worker, key, sname, line)
            start = end + 1
        if start < len(buf):
            run.partial[sname] = buf[start:]

    def arm_stdin(self, run: Running) -> None:
        """Register the slot's stdin for writing if there is something to write, close
        it at the end of the feed, or ask the source for more."""
        feed = run.worker.feed
        fd = run.cmd.stdin
        if feed is None or fd is None:
            return
        if run.pos < feed.total:
            if not run.writing:
                self.selector().register(fd, selectors.EVENT_WRITE, (STDIN, run.slot.key))
                run.writing = True
            return
        if run.writing:
            self.unregister(fd)
            run.writing = False
        if feed.eof:
            run.cmd.close_stdin()
        else:
            self.to_pump.add(run.worker)

    def write(self, key: str) -> None:
        run = self.running.get(key)
        if run is None or run.worker.feed is None or run.cmd.stdin is None:
            return
        view = run.worker.feed.view(run.pos)[:CHUNK]
        try:
            n = os.write(run.cmd.stdin, view)
        except BlockingIOError:
            return
        except OSError:  # the command closed its stdin or ended: write no more to it
            self.unregister(run.cmd.stdin)
            run.writing = False
            run.cmd.close_stdin()
            return
        run.pos += n
        if run.worker.wants_written:
            self.task.emit(run.worker, "ev_written", run.worker, key, "stdin", n)
        if key in self.running:
            self.arm_stdin(run)

    def writers(self, worker: Worker) -> List[Running]:
        return [r for r in self.running.values() if r.worker is worker and r.cmd.stdin is not None]

    def feed_changed(self, worker: Worker) -> None:
        """New bytes (or EOF) in ``worker``'s feed: arm every node it writes to."""
        if worker.feed is not None:
            worker.feed.dirty = False
        for run in self.writers(worker):
            self.arm_stdin(run)

    def pump_source(self, worker: Worker) -> None:
        """Read the next chunk of the source when every node written to has caught up."""
        feed = worker.feed
        if feed is None or feed.source is None or feed.eof:
            return
        if any(r.pos < feed.total for r in self.writers(worker)):
            return
        try:
            self.selector().register(feed.source, selectors.EVENT_READ, (SOURCE, worker))
        except KeyError:
            pass  # already waiting for it
        except OSError:  # a regular file (epoll refuses it): it never blocks, read it now
            self.read_source(worker)

    def read_source(self, worker: Worker) -> None:
        feed = worker.feed
        if feed is None or feed.source is None:
            return
        try:
            data = os.read(feed.source, CHUNK)
        except BlockingIOError:
            return
        try:
            self.unregister(feed.source)
        except KeyError:
            pass
        needed = [r.pos for r in self.writers(worker)]
        needed += [0] * sum(1 for k in worker.keys if self.results.slot(k).status == "pending")
        feed.trim(min(needed, default=feed.total))
        if data:
            feed.append(data)
        else:
            feed.end()
        self.feed_changed(worker)
