"""``task.suspend()``: a Task's loop parked on a condition, resumed from another thread.

``Suspension`` (its docstring draws it) is the state a Task's runs share between the
Task's own thread (the loop, ``engine.py``, and ``Task.emit``) and the threads that call
``suspend()``, ``resume()`` and ``abort()``. The loop takes a wanted suspension at its
checkpoints: at the top of every turn, and right after each handler it calls
(``Task.emit``, a timer's ``ev_timer``, a port's ``ev_port_start`` and ``ev_msg``), so a
handler's own ``suspend()`` takes effect as that handler returns, before any other event.
Suspensions do not nest: one ``resume()`` ends the suspension however many ``suspend()``
calls asked for it (as ClusterShell's).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

OFF = "OFF"
RUNNING = "RUNNING"
WANTED = "WANTED"
SUSPENDED = "SUSPENDED"


class Suspension:
    """One Task's suspension state. Each event, under the condition's lock, in each state:
    the next state (when it changes) and the answer::

                    OFF        RUNNING       WANTED           SUSPENDED
        begin       RUNNING -  illegal       illegal          illegal
        ask         False      WANTED waits  waits            True
        ask own     False      WANTED True   True             True
        checkpoint  -          -             SUSPENDED parks  -
        withdraw    False      False         RUNNING True     RUNNING True
        end         -          OFF -         OFF -            OFF -

    ``begin``: a run starts (``resume()``); ``illegal`` raises RuntimeError. ``ask``:
    ``suspend()`` from another thread; ``waits``: it pokes the loop and waits on the
    condition until the state leaves WANTED, then answers True if the loop parked
    meanwhile, else False (withdrawn, or the run ended first). ``ask own``: ``suspend()``
    from the Task's thread (a handler: the loop parks at its next checkpoint, as the
    handler returns). ``checkpoint``: the loop between events; ``parks``: its thread waits
    on the condition until the state leaves SUSPENDED (an exception while it waits, a
    Ctrl-C, makes it OFF and goes on up: it ends the run). ``withdraw``: ``resume()``
    during a run. ``end``: ``abort()``, or the run's end; waiters are woken.
    """

    __slots__ = ("cond", "state", "parks")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.state = OFF
        self.parks = 0  # times the loop parked (a request tells its own park from none)

    def __repr__(self) -> str:
        return f"<Suspension {self.state}>"

    def begin(self) -> None:
        """A run starts: suspensions may be asked for."""
        with self.cond:
            if self.state is not OFF:
                raise RuntimeError(f"suspension: begin in state {self.state}")
            self.state = RUNNING

    def end(self) -> None:
        """The run ends or is aborted: a parked loop goes on, waiting requests get False,
        later ones too until the next ``begin``."""
        with self.cond:
            self.state = OFF
            self.cond.notify_all()

    def request(self, own_thread: bool, poke: Callable[[], None]) -> bool:
        """``suspend()`` (``ask``, ``ask own``); ``poke`` wakes the loop's wait."""
        with self.cond:
            if self.state is OFF:
                return False
            if self.state is SUSPENDED:
                return True
            self.state = WANTED
            if own_thread:
                return True
            seen = self.parks
            poke()
            while self.state is WANTED:
                self.cond.wait()
            return self.parks != seen

    def withdraw(self) -> bool:
        """``resume()`` during a run: a suspension wanted or in force ends (True); with
        none, nothing happens (False)."""
        with self.cond:
            if self.state is not WANTED and self.state is not SUSPENDED:
                return False
            self.state = RUNNING
            self.cond.notify_all()
            return True

    def checkpoint(self) -> None:
        """On the Task's thread, between events: park while a suspension is in force."""
        if self.state is not WANTED:  # (unlocked: the common case costs one comparison)
            return
        with self.cond:
            if self.state is not WANTED:
                return
            self.state = SUSPENDED
            self.parks += 1
            self.cond.notify_all()
            try:
                while self.state is SUSPENDED:
                    self.cond.wait()
            except BaseException:  # (Ctrl-C while parked: it ends the run)
                self.state = OFF
                self.cond.notify_all()
                raise

    @property
    def suspended(self) -> bool:
        """The loop is parked now."""
        return self.state is SUSPENDED


class TaskSuspend:
    """``Task.suspend()`` (a mixin; the Task sets the attributes below)."""

    suspension: Suspension
    engine: Any  # the Engine of the run in progress, else None
    thread: Optional[threading.Thread]  # the thread running it
    poke: Callable[[], None]  # wakes the run's loop (``TaskPorts.poke``)

    def suspend(self) -> bool:
        """Suspend the run in progress; safe from any thread. False if the Task is not
        running (nothing is left behind: its next run is not suspended). From another
        thread, True once the Task is suspended (False if the run ended, was aborted or
        was resumed before it could be). From one of the Task's handlers, True at once:
        the Task suspends as that handler returns, before any other event.

        While suspended, the Task's loop waits on a condition (no CPU) and handles no
        event: no handler is called, no command is started (the fan-out window does not
        move), timers do not fire, ports do not deliver (messages queue; ``port.msg()``
        waits). Commands already running go on running on their nodes: their output
        waits in their pipes (a command that fills its pipe waits too), nothing is lost.
        Time still passes: a command whose ``timeout`` passes meanwhile is timed out at
        once when the Task resumes, a timer due meanwhile fires then, and so does the
        whole run's ``resume(timeout)``. ``running()`` stays True.

        ``resume()`` from another thread ends the suspension and returns at once (it does
        not run a second loop); ``abort()`` from another thread ends the run as it does a
        running one; ``join()`` and ``task_wait()`` wait until one of them ends it. One
        ``resume()`` ends a suspension however many ``suspend()`` calls asked for it.

        Where ClusterShell 1.10 differs (checked against it, not copied): its
        ``suspend()`` of a Task not running returns False but leaves the suspension
        queued, so the next run stops until someone resumes it; from a handler, its
        ``suspend()`` waits inside the handler until another thread resumes it, then
        returns False; its ``abort()`` of a suspended Task from another thread waits
        for ever; a second ``suspend()`` while suspended waits until the run ends; a
        ``resume()`` from another thread while nothing is suspended makes the next
        ``suspend()`` a no-op (here it does nothing at all)."""
        own = self.engine is not None and threading.current_thread() is self.thread
        return self.suspension.request(own, self.poke)
