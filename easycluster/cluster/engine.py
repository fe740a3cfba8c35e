"""The Task's event loop: one thread, one ``selectors`` loop, every slot's pipes and ends.

The thread that calls ``Task.resume()`` runs ``Engine.run``; it alone starts processes,
reads and writes their pipes, fires timers and calls the handlers (design rule 3). The
decisions live in pure objects: ``NodeState`` (what an event means for a slot),
``FanoutWindow`` (who may start), ``StdinFeed`` (what to write), ``Results`` (what is
kept). Hot per-slot state is in plain dicts keyed by slot key.

Fairness: each ready descriptor gets one read of ``CHUNK`` bytes per turn of the loop,
so a node that floods output shares the loop with the others; what it sends beyond the
result buffers' limit is counted and dropped at once (see ``results.py``). A worker
with a ``sink`` (``worker.Sink``: rcopy's raw data) has its stdout handed to the sink
as it comes, neither kept nor split into lines; the sink commits or discards each
started slot exactly once, as the slot ends. A command with a ``mailbox``
(``backends.Mailbox``: the RPC backend's) has no pipes: its output and end are taken
from the mailbox, one descriptor for all such commands, registered once per run.
"""

from __future__ import annotations

import heapq
import os
import selectors
import time
from typing import Any, Dict, List, Optional, Protocol, Set, Tuple

from .backends import EXIT, HOSTKEY, UNREACHABLE, Command, Mailbox, failed_message
from .feed import CHUNK
from .nodestate import CLOSE, KILL, PICKUP_CLOSE
from .results import Results, SlotResult
from .window import FanoutWindow
from .worker import Timer, Worker


class Hooks(Protocol):
    """What the engine needs of its Task (``task.Task``)."""

    aborting: bool  # abort() was called: stop at the next turn, call no more handlers

    @property
    def buffer_max(self) -> Optional[int]: ...

    def emit(self, worker: Worker, event: str, *args: Any) -> None: ...


LINE_MAX = 1 << 16  # bytes: a longer line goes to ev_read in pieces this long
POLL_INTERVAL = 0.05  # s between exit checks where there is no pidfd

# What a registered descriptor is, in the selector's ``data``.
OUT = 0  # a slot's stdout or stderr
EXITED = 1  # a slot's pidfd
STDIN = 2  # a slot's stdin
SOURCE = 3  # a worker's stdin source
MAIL = 4  # a mailbox


def current(entry: Tuple[float, int, Timer]) -> bool:
    """A timer heap entry that is the timer's schedule in force."""
    return entry[2].valid and entry[2].seq == entry[1]


class Running:
    """A started slot's live state: its process, open streams, partial lines, deadline
    and how far its stdin has been written."""

    __slots__ = ("slot", "worker", "cmd", "open", "partial", "pos", "writing", "deadline")

    def __init__(self, slot: SlotResult, worker: Worker, cmd: Command) -> None:
        self.slot = slot
        self.worker = worker
        self.cmd = cmd
        self.open = 0  # output streams not at EOF yet
        self.partial: Dict[str, bytes] = {}  # sname -> the start of a line not ended yet
        self.pos = 0  # bytes of the worker's stdin feed written
        self.writing = False  # stdin registered for writing
        self.deadline: Optional[float] = None


class Engine:
    """One run of a Task: ``run(deadline)`` returns when nothing is left to do."""

    def __init__(self, task: Hooks, results: Results, window: FanoutWindow) -> None:
        self.task = task
        self.results = results
        self.window = window
        self.sel: Optional[selectors.BaseSelector] = None
        self.running: Dict[str, Running] = {}
        self.slot_worker: Dict[str, Worker] = {}
        self.deadlines: List[Tuple[float, str]] = []  # heap; stale entries skipped
        self.timers: List[Tuple[float, int, Timer]] = []  # heap
        self.timer_seq = 0
        self.reaping: List[Command] = []  # killed, not reaped yet
        self.polled: List[str] = []  # running slots without a pidfd
        self.to_pump: Set[Worker] = set()  # workers whose stdin source may be read next
        self.mailed: Dict[Any, Running] = {}  # running slots by command, for their mailbox
        self.mailboxes: Set[int] = set()  # mailbox descriptors registered in this run

    # -- scheduling (also called from handlers while running) ------------------------

    def add_worker(self, worker: Worker) -> None:
        for key in worker.keys:
            self.slot_worker[key] = worker
            self.window.add(key)
        worker.open = len(worker.keys)

    def add_timer(self, timer: Timer, delay: float) -> None:
        self.timer_seq += 1
        timer.seq = self.timer_seq
        heapq.heappush(self.timers, (time.monotonic() + delay, self.timer_seq, timer))

    def live_timers(self) -> bool:
        return any(t.valid and not t.autoclose and t.seq == n for _, n, t in self.timers)

    # -- the loop --------------------------------------------------------------------

    def run(self, deadline: Optional[float]) -> bool:
        """Run until every slot is done and no timer is left (True), or ``deadline``
        passes (False: everything still running was aborted)."""
        self.sel = selectors.DefaultSelector()
        try:
            while True:
                if self.task.aborting:
                    self.abort_all()
                    return True
                self.start_slots()
                if not self.running and not len(self.window) and not self.live_timers():
                    return True
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self.abort_all()
                    return False
                while self.to_pump:  # (once per turn: the check looks at every writer)
                    self.pump_source(self.to_pump.pop())
                for key, _ in self.sel.select(self.wait_time(now, deadline)):
                    if self.task.aborting:
                        break
                    self.ready(key.fileobj, key.data)  # type: ignore[arg-type]
                if self.polled:
                    self.poll_exits()
                self.expire(time.monotonic())
                self.fire_timers(time.monotonic())
                self.reaping = [c for c in self.reaping if not c.reap()]
        except KeyboardInterrupt:
            self.settle()
            raise
        finally:
            self.cleanup()

    def settle(self, budget: float = 0.2) -> None:
        """On Ctrl-C, take in what already happened before everything is killed: output
        already written and commands already ended are read and closed, so a node that
        finished is reported as finished, not interrupted. Never waits for anything
        (a zero-timeout poll), and gives up after ``budget`` seconds of a chatty node."""
        if self.sel is None:
            return
        stop = time.monotonic() + budget
        while time.monotonic() < stop:
            events = self.sel.select(0)
            if not events:
                break
            for key, _ in events:
                self.ready(key.fileobj, key.data)  # type: ignore[arg-type]
        for run in list(self.running.values()):
            self.maybe_finish(run)

    def wait_time(self, now: float, deadline: Optional[float]) -> Optional[float]:
        ends = [deadline] if deadline is not None else []
        while self.deadlines and self.deadlines[0][1] not in self.running:
            heapq.heappop(self.deadlines)
        if self.deadlines:
            ends.append(self.deadlines[0][0])
        while self.timers and not current(self.timers[0]):
            heapq.heappop(self.timers)
        if self.timers:
            ends.append(self.timers[0][0])
        if self.polled or self.reaping:
            ends.append(now + POLL_INTERVAL)
        if self.to_pump:
            ends.append(now)
        return max(0.0, min(ends) - now) if ends else None

    def ready(self, fd: int, data: Tuple[Any, ...]) -> None:
        kind = data[0]
        if kind == OUT:
            self.read(fd, data[1], data[2])
        elif kind == EXITED:
            run = self.running.get(data[1])
            if run is not None and run.cmd.poll() is not None:
                self.unregister(fd)
                self.maybe_finish(run)
        elif kind == STDIN:
            self.write(data[1])
        elif kind == MAIL:
            self.take_mail(data[1])
        else:
            self.read_source(data[1])

    # -- starting --------------------------------------------------------------------

    def start_slots(self) -> None:
        for key in self.window.take():
            self.start(str(key))

    def start(self, key: str) -> None:
        worker = self.slot_worker[key]
        slot = self.results.slot(key)
        if not worker.started:
            worker.started = True
            self.task.emit(worker, "ev_start", worker)
        try:
            cmd = worker.backend.start(
                slot.node, slot.rank, worker.command, worker.feed is not None, worker.stderr
            )
        except OSError as e:
            expect(slot.state.spawn_error(), PICKUP_CLOSE, key)
            slot.stderr += failed_message(slot.node, e)
            self.window.done(key)
            self.task.emit(worker, "ev_pickup", worker, key)
            self.task.emit(worker, "ev_hup", worker, key, slot.rc)
            self.worker_slot_done(worker)
            return
        slot.state.start()
        run = Running(slot, worker, cmd)
        self.running[key] = run
        sel = self.selector()
        box = cmd.mailbox
        if box is not None:
            self.mailed[cmd] = run
            run.open = 1  # (until its end is taken from the mailbox)
            if box.fd not in self.mailboxes:
                sel.register(box.fd, selectors.EVENT_READ, (MAIL, box))
                self.mailboxes.add(box.fd)
        else:
            sel.register(cmd.stdout, selectors.EVENT_READ, (OUT, key, "stdout"))
            run.open = 1
        if cmd.stderr is not None:
            sel.register(cmd.stderr, selectors.EVENT_READ, (OUT, key, "stderr"))
            run.open = 2
        if cmd.pidfd is not None:
            sel.register(cmd.pidfd, selectors.EVENT_READ, (EXITED, key))
        elif box is None:
            self.polled.append(key)
        if worker.timeout:
            run.deadline = time.monotonic() + worker.timeout
            heapq.heappush(self.deadlines, (run.deadline, key))
        if worker.feed is not None:
            self.arm_stdin(run)
        self.task.emit(worker, "ev_pickup", worker, key)

    # -- output ----------------------------------------------------------------------

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
        worker = run.worker
        if sname == "stdout" and worker.sink is not None:
            worker.sink.write(run.slot, data)
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
                if len(buf) - start < LINE_MAX:
                    break
                end = start + LINE_MAX
                self.task.emit(worker, "ev_read", worker, key, sname, buf[start:end])
                start = end
                continue
            line = buf[start : end - 1] if end > start and buf[end - 1] == 13 else buf[start:end]
            self.task.emit(worker, "ev_read", worker, key, sname, line)
            start = end + 1
        if start < len(buf):
            run.partial[sname] = buf[start:]

    # -- stdin -----------------------------------------------------------------------

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

    # -- ends ------------------------------------------------------------------------

    def maybe_finish(self, run: Running) -> None:
        """A slot is done when its process ended and its output was read to the end."""
        if run.open or run.cmd.poll() is None:
            return
        slot, worker, cmd = run.slot, run.worker, run.cmd
        rc = cmd.rc if cmd.rc is not None else 0
        verdict = worker.backend.classify(rc, slot.tail)
        if worker.sink is not None:
            if verdict == EXIT and rc == 0:
                rc = worker.sink.commit(slot)
            else:
                worker.sink.discard(slot)
        if verdict == UNREACHABLE:
            answer = slot.state.unreachable(rc)
        elif verdict == HOSTKEY:
            answer = slot.state.hostkey(rc)
        else:
            answer = slot.state.exit(rc)
        expect(answer, CLOSE, slot.key)
        self.release(run)
        self.task.emit(worker, "ev_hup", worker, slot.key, rc)
        self.worker_slot_done(worker)

    def release(self, run: Running) -> None:
        """Forget a slot: unregister and close its descriptors, free its window place."""
        key = run.slot.key
        del self.running[key]
        self.mailed.pop(run.cmd, None)
        if key in self.polled:
            self.polled.remove(key)
        cmd = run.cmd
        for fd in (cmd.stdout, cmd.stderr, cmd.pidfd, cmd.stdin):
            if fd is not None and fd >= 0:
                try:
                    self.unregister(fd)
                except KeyError:
                    pass
        cmd.close()
        if not cmd.reap():  # (killed and not dead yet: reaped on a later turn)
            self.reaping.append(cmd)
        self.window.done(key)

    def kill(self, run: Running) -> None:
        run.cmd.kill()
        if run.worker.sink is not None:
            run.worker.sink.discard(run.slot)
        self.release(run)

    def expire(self, now: float) -> None:
        while self.deadlines and self.deadlines[0][0] <= now:
            _, key = heapq.heappop(self.deadlines)
            run = self.running.get(key)
            if run is None or run.deadline is None or run.deadline > now:
                continue
            expect(run.slot.state.timeout(), KILL, key)
            run.worker.timeouts += 1
            self.kill(run)
            self.worker_slot_done(run.worker)

    def poll_exits(self) -> None:
        for key in list(self.polled):
            run = self.running.get(key)
            if run is not None and run.cmd.poll() is not None:
                self.polled.remove(key)
                self.maybe_finish(run)

    def worker_slot_done(self, worker: Worker) -> None:
        worker.open -= 1
        if worker.open == 0:
            self.close_worker(worker)

    def close_worker(self, worker: Worker) -> None:
        if worker.closed:
            return
        worker.closed = True
        if worker.timeouts:
            self.task.emit(worker, "ev_timeout", worker)
        self.task.emit(worker, "ev_close", worker, worker.timeouts > 0)

    def fire_timers(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now and not self.task.aborting:
            entry = heapq.heappop(self.timers)
            timer = entry[2]
            if not current(entry):
                continue
            if timer.interval > 0:
                self.add_timer(timer, timer.interval)
            else:
                timer.valid = False
            handler = timer.handler
            if handler is not None and hasattr(handler, "ev_timer"):
                handler.ev_timer(timer)

    # -- abort and cleanup -----------------------------------------------------------

    def abort_all(self) -> None:
        """End everything: running slots are killed, waiting ones never start."""
        workers = []
        for key in self.window.drop():
            self.results.slot(str(key)).state.abort()
            workers.append(self.slot_worker[str(key)])
        for run in list(self.running.values()):
            run.slot.state.abort()
            self.kill(run)
            workers.append(run.worker)
        for timer in (t for _, _, t in self.timers):
            timer.valid = False
        self.timers.clear()
        for worker in dict.fromkeys(workers):  # (each once, in order)
            if worker.started and not worker.closed:
                worker.closed = True
                self.task.emit(worker, "ev_close", worker, worker.timeouts > 0)

    def cleanup(self) -> None:
        """Whatever happened (a handler raised, the thread was interrupted): no process
        is left running or unreaped, no descriptor open, every worker of the run
        released (``Worker.release``)."""
        for run in list(self.running.values()):
            if not run.slot.state.final:
                run.slot.state.abort()
            self.kill(run)
        for key in self.window.drop():
            self.results.slot(str(key)).state.abort()
        for worker in dict.fromkeys(self.slot_worker.values()):
            worker.release()
        for cmd in self.reaping:
            cmd.kill()
            cmd.wait()
        self.reaping.clear()
        self.mailed.clear()
        self.mailboxes.clear()
        if self.sel is not None:
            self.sel.close()
            self.sel = None

    def unregister(self, fd: int) -> None:
        self.selector().unregister(fd)

    def selector(self) -> selectors.BaseSelector:
        """The selector of the run in progress (RuntimeError outside ``run``)."""
        if self.sel is None:
            raise RuntimeError("the engine is not running")
        return self.sel


def expect(answer: Any, wanted: Any, key: str) -> None:
    """A node-state transition must answer ``wanted`` here; anything else is a bug in the
    engine, named (an explicit check: it must not vanish under ``python -O``)."""
    if answer != wanted:
        raise RuntimeError(f"engine: slot {key}: state machine answered {answer!r}, not {wanted!r}")


__all__ = ["Engine", "Running", "POLL_INTERVAL"]
