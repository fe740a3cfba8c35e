"""The Task's event loop: one thread, one ``selectors`` loop, every slot's pipes and ends.

The thread that calls ``Task.resume()`` runs ``Engine.run``; it alone starts processes,
reads and writes their pipes, fires timers and calls the handlers (design rule 3). The
decisions live in pure objects: ``NodeState`` (what an event means for a slot),
``FanoutWindow`` (who may start), ``StdinFeed`` (what to write), ``Results`` (what is
kept). Hot per-slot state is in plain dicts keyed by slot key.

This module starts slots, ends them (exit, timeout, abort of the run or of one worker)
and runs the timers; moving a
running slot's bytes, its output in and its stdin out, is ``slotio.py``'s (the
``SlotIO`` mixin): fairness between nodes, sinks and mailboxes are drawn there. A sink
commits or discards each started slot exactly once, as the slot ends (a write or a
commit broken off by Ctrl-C: its slot is aborted, never committed, and the discard
removes what it wrote).

A handler may end slots under the engine's feet (``Worker.abort`` ends its worker's
slots at once, from inside the handler): every place that calls a handler and then goes
on with a slot checks that the slot is still running (``key in self.running``) or not
final.
"""

from __future__ import annotations

import heapq
import selectors
import time
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from .backends import EXIT, HOSTKEY, UNREACHABLE, Command, failed_message
from .nodestate import CLOSE, KILL, PENDING, PICKUP_CLOSE
from .port import Port, deliver_all
from .results import Results
from .slotio import EXITED, MAIL, OUT, STDIN, Running, SlotIO
from .slotio import LINE_MAX as LINE_MAX  # (these three re-exported: engine.Hooks & co.)
from .slotio import SOURCE as SOURCE
from .slotio import Hooks as Hooks
from .suspension import Suspension
from .wakeup import Wakeup
from .window import FanoutWindow
from .worker import Timer, Worker

POLL_INTERVAL = 0.05  # s between exit checks where there is no pidfd


def current(entry: Tuple[float, int, Timer]) -> bool:
    """A timer heap entry that is the timer's schedule in force."""
    return entry[2].valid and entry[2].seq == entry[1]


class Engine(SlotIO):
    """One run of a Task: ``run(deadline)`` returns when nothing is left to do."""

    def __init__(self, task: Hooks, results: Results, window: FanoutWindow) -> None:
        self.task = task
        self.results = results
        self.window = window
        self.sel: Optional[selectors.BaseSelector] = None
        self.wake: Optional[Wakeup] = None  # while running: poke() ends the loop's wait
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
        self.holders: Set[Worker] = set()  # workers that keep the run going (not autoclose)
        self.ports: List[Port] = []  # the Task's message ports (``port.py``; its own list)
        self.suspension = Suspension()  # the Task's (``suspension.py``); this one stays off

    # -- scheduling (also called from handlers while running) ------------------------

    def add_worker(self, worker: Worker) -> None:
        for key in worker.keys:
            self.slot_worker[key] = worker
            self.window.add(key)
        worker.open = len(worker.keys)
        if not worker.autoclose and worker.keys:
            self.holders.add(worker)

    def add_timer(self, timer: Timer, delay: float) -> None:
        self.timer_seq += 1
        timer.seq = self.timer_seq
        heapq.heappush(self.timers, (time.monotonic() + delay, self.timer_seq, timer))

    def aborted(self) -> bool:
        return bool(self.task.aborting)

    def held(self) -> bool:
        """A timer or a port keeps the run going (asked only once no worker does)."""
        return self.live_timers() or any(p.holds for p in self.ports)

    def live_timers(self) -> bool:
        return any(t.valid and not t.autoclose and t.seq == n for _, n, t in self.timers)

    # -- the loop --------------------------------------------------------------------

    def run(self, deadline: Optional[float]) -> bool:
        """Run until every slot is done and no timer is left (True), or ``deadline``
        passes (False: what still ran was killed as timed out, ``end_all``). Slots of
        ``autoclose`` workers do not keep it running: when only they are left (and
        ``autoclose`` timers), their workers are aborted and it returns True. A port
        that is not autoclose keeps it running, waiting for messages (``port.py``)."""
        self.sel = selectors.DefaultSelector()
        wake = self.wake = Wakeup.arm(self.sel, (WAKE,))
        try:
            while True:
                self.suspension.checkpoint()  # (task.suspend(): parks here, or after a handler)
                if self.ports:
                    deliver_all(self.ports, self.aborted, self.suspension.checkpoint)
                if self.task.aborting:
                    self.end_all(timed_out=False)
                    return True
                self.start_slots()
                idle = not self.running and not len(self.window)
                if (idle or not self.holders) and not self.held():
                    if idle:
                        return True
                    # only autoclose work is left: it ends with the run, unless the
                    # ev_close of its end schedules more (that runs, in this run)
                    scheduled = len(self.slot_worker)
                    self.end_all(timed_out=False)
                    if len(self.slot_worker) == scheduled and not self.live_timers():
                        return True
                    continue  # (to start what was scheduled before waiting)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self.end_all(timed_out=True)
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
            self.suspension.end()  # (settle's handlers must not park)
            self.settle()
            raise
        finally:
            self.suspension.end()  # (the run's last events must not park either)
            self.wake = None
            wake.disarm(self.sel)
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
        if kind == WAKE:
            Wakeup.drain(fd)  # (a signal's handler runs as this returns; an abort is seen)
        elif kind == OUT:
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
        if slot.state.final:  # (taken with others, then aborted by a handler)
            return
        if not worker.started:
            worker.started = True
            self.task.emit(worker, "ev_start", worker)
            worker.open_stdin = False  # (what ev_start wrote made the feed: now it is set)
            if slot.state.final:  # (the handler aborted its worker)
                return
        try:
            cmd = worker.backend.start(
                slot.node, slot.rank, worker.command, worker.feed is not None, worker.stderr
            )
        except OSError as e:
            expect(slot.state.spawn_error(), PICKUP_CLOSE, key)
            sname = "stderr" if worker.stderr else "stdout"  # (merged as its stderr is)
            text = failed_message(e)
            slot.keep(sname, text, self.task.buffer_max, True)
            self.window.done(key)
            self.task.emit(worker, "ev_pickup", worker, key)
            self.tell(worker, key, sname, text)
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

    # -- ends ------------------------------------------------------------------------

    def maybe_finish(self, run: Running) -> None:
        """A slot is done when its process ended and its output was read to the end."""
        if self.running.get(run.slot.key) is not run:  # (ended by a handler meanwhile)
            return
        if run.open or run.cmd.poll() is None or run.in_sink:
            return  # (in_sink: a Ctrl-C broke a write or its commit off; cleanup() aborts it)
        slot, worker, cmd = run.slot, run.worker, run.cmd
        rc = cmd.rc if cmd.rc is not None else 0
        verdict = worker.backend.verdict(rc, slot.tail, run.spoke)
        if worker.sink is not None:
            if verdict == EXIT and rc == 0:
                run.in_sink = True
                said = len(slot.stderr)
                rc = worker.sink.commit(slot)
                self.tell(worker, slot.key, "stderr", bytes(slot.stderr[said:]))
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

    def tell(self, worker: Worker, key: str, sname: str, text: bytes) -> None:
        """Give the handler, through ``ev_read``, what we wrote in a slot's buffer about
        it (why it failed here: its command could not start, its fetched copy could not
        be written), as if the slot had printed it."""
        if text and worker.wants_lines:
            for line in text.rstrip(b"\n").split(b"\n"):
                self.task.emit(worker, "ev_read", worker, key, sname, line)

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
            for name in list(run.partial):  # (what it began of a line: a prompt, say)
                self.flush(run, name)
            if self.running.get(key) is not run:  # (a handler ended it meanwhile)
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
        self.holders.discard(worker)
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
                self.suspension.checkpoint()

    # -- ending early, and cleanup ---------------------------------------------------

    def end_slots(self, keys: Iterable[str], timed_out: bool) -> None:
        """End these slots now: a waiting one never starts (``aborted``), a running one is
        killed (``timeout``, counted in its worker's timeouts, if ``timed_out``; else
        ``aborted``); ended ones are left as they are. Then each of their workers that
        started and is not closed gets ``ev_timeout`` (if any of its slots timed out) and
        ``ev_close``: ``Task.emit`` lets only ``ev_close`` through after an abort. A
        worker that never started gets no event."""
        workers: Dict[Worker, None] = {}  # (each once, in order)
        waiting = []
        for key in keys:
            slot = self.results.slot(key)
            run = self.running.get(key)
            if run is not None:
                if timed_out:
                    expect(slot.state.timeout(), KILL, key)
                    run.worker.timeouts += 1
                else:
                    slot.state.abort()
                self.kill(run)
            elif slot.state.state == PENDING:
                slot.state.abort()
                waiting.append(key)
            else:
                continue
            workers[self.slot_worker[key]] = None
        self.window.forget(waiting)
        for worker in workers:
            if worker.started:
                self.close_worker(worker)
            else:
                self.holders.discard(worker)

    def end_all(self, timed_out: bool) -> None:
        """End the run (``Task.abort``, autoclose, or the run's ``timeout`` when
        ``timed_out``, as ClusterShell counts it: what runs is timed out, what waits never
        started): every slot not ended (``end_slots``), and the timers."""
        for timer in (t for _, _, t in self.timers):
            timer.valid = False
        self.timers.clear()
        self.end_slots(list(self.slot_worker), timed_out)

    def abort_worker(self, worker: Worker) -> None:
        """End ``worker``'s slots now (``Worker.abort``, on this thread): the others of the
        run go on. Its handler gets ``ev_close`` (if it started) before this returns."""
        if any(self.slot_worker.get(k) is worker for k in worker.keys):
            self.end_slots(worker.keys, timed_out=False)

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
        # Every command is killed before any is waited for: a backend whose command may
        # take a grace period to end (rpc.py: a kill acknowledged by the node, or not)
        # counts it from the kill, so all of them are waited for together, not in turn.
        for cmd in self.reaping:
            cmd.kill()
        for cmd in self.reaping:
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


WAKE = -1  # the selector data kind of the wakeup pipe
