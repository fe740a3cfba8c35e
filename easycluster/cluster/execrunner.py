"""A runner: the thread that serves one server of a ``ClusterExecutor``.

It connects the server (or takes the client it was given), asks the scheduler for
items (``assign(queued=True)``), sends them as pipelined calls on one server thread
(``WORK_THREAD``: the server's reader, which runs them inline), registering a ``map``
function once, reads the replies in order
(the head of the pipeline is the call running there, so an item's deadline starts
when the call before it returns), pings the server (``CONTROL`` thread, answered even
while calls run) when nothing came for half a heartbeat, and declares it lost when a
ping is unanswered for a heartbeat. How many calls are in flight adapts: about
``PIPELINE_WINDOW`` seconds of work, at least one, at most ``pipeline``.

A lost server: its items are reported (``Scheduler.lost``), its client closed (a
local process killed first: a frozen one would not exit). A server another thread
condemns (``Server.condemned``: SLURM took its node out of service) is lost the same
way as soon as its runner sees it. A stuck item: the items
behind it are released, the server is replaced (``connect`` again, or the client's
``reconnect()``), or retired when that fails.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from ..client.client import Client
from ..errors import ConnectionLost, RemoteException
from ..protocol.messages import CONTROL
from .execpool import Work, WorkPool, unwrap
from .scheduler import Attempt

__all__ = ["APPLY", "WORK_THREAD", "PIPELINE_WINDOW", "Sent", "Server", "Runner"]

APPLY = "easycluster.remote.verbs.apply"  # the remote helper that calls a shipped callable
# The server thread executor calls run on: 0, the one the server's reader runs inline
# (no queue and thread switch per call there). A call that runs long is no harm: the
# server's standby reader takes the reads over (remote/handoff.py), so pings are still
# answered and a stuck item is still seen. Thread 0 is never stopped (``_close``).
WORK_THREAD = 0
PIPELINE_WINDOW = 0.005  # seconds of work a runner keeps queued on its server


class Sent:
    """A call in flight on a server: an item's attempt, or a function registration."""

    __slots__ = ("attempt", "resp", "token")

    def __init__(self, attempt: Optional[Attempt], resp: Any, token: Optional[str]) -> None:
        self.attempt = attempt
        self.resp = resp
        self.token = token


class Server:
    """One server: its client, how to (re)connect it, and its runner's state."""

    def __init__(
        self,
        name: str,
        client: Optional[Client],
        connect: Optional[Callable[[], Client]],
    ) -> None:
        self.name = name
        self.client = client
        self.connect = connect  # None: a client passed in (reconnect() or nothing)
        self.inflight: Deque[Sent] = deque()
        self.tokens: Set[str] = set()  # functions registered on the current server
        self.bad_tokens: Dict[str, BaseException] = {}
        self.service = 0.0  # smoothed seconds per item (0: not measured yet)
        self.thread: Optional[threading.Thread] = None
        # set (once, by another thread) when the server must be treated as lost though
        # it still answers, e.g. SLURM drained its node: its runner loses it at once
        self.condemned: Optional[str] = None


class Runner:
    """The runners of one executor (one thread per server runs ``serve``)."""

    def __init__(self, pool: WorkPool, heartbeat: float, pipeline: int) -> None:
        self.pool = pool
        self.heartbeat = heartbeat
        self.pipeline = pipeline

    def serve(self, h: Server) -> None:
        try:
            if h.client is None and not self._connect(h):
                return
            with self.pool.lock:
                self.pool.sched.opened(h.name, time.monotonic())
            self._run(h)
        except BaseException as e:  # a bug must not strand the items: they move on
            self._lose(h, f"runner failed: {type(e).__name__}: {e}")
            raise

    def _connect(self, h: Server) -> bool:
        if h.connect is None:
            raise RuntimeError(f"{h.name}: no way to connect it")
        try:
            h.client = h.connect()
            return True
        except Exception as e:
            with self.pool.lock:
                self.pool.why[h.name] = f"unreachable ({type(e).__name__}: {e})"
                self.pool.sched.unreachable(h.name, time.monotonic())
                settled = self.pool.take_settled()
                self.pool.wake.notify_all()
            self.pool.finish(settled)
            return False

    def _run(self, h: Server) -> None:
        sched = self.pool.sched
        client = h.client
        last_life = time.monotonic()
        ping: Any = None
        ping_sent = 0.0
        while True:
            if h.condemned is not None:  # (see Server.condemned; the waits below are short)
                self._lose(h, h.condemned)
                return
            with self.pool.lock:
                if not sched.hosts[h.name].alive:
                    return
                room = self._depth(h) - len(h.inflight)  # (registrations count too)
                now = time.monotonic()
                new = sched.assign(now, host=h.name, queued=True, limit=room) if room > 0 else []
                if not new and not h.inflight:
                    if self.pool.closing and sched.finished:
                        break
                    self.pool.idle += 1
                    self.pool.wake.wait(self.heartbeat)
                    self.pool.idle -= 1
                    continue
                works = [self.pool.work[a.job] for a in new]
            if new:
                if not self._send(h, new, works):
                    return
                client = h.client
            if not h.inflight:
                continue
            head = h.inflight[0]
            if head.attempt is not None and head.attempt.started is None:
                with self.pool.lock:
                    sched.started(head.attempt, time.monotonic())
            wait = self.heartbeat / 4
            deadline = head.attempt.deadline if head.attempt is not None else None
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.0))
            try:
                head.resp.exception(wait)
            except concurrent.futures.TimeoutError:
                pass
            now = time.monotonic()
            if head.resp.done():
                last_life = now
                if not self._collect(h, now):
                    return
            if ping is not None and ping.done():
                last_life = max(last_life, now)
                ping = None
            if now - last_life >= self.heartbeat / 2 and ping is None and client is not None:
                try:
                    ping = client.send_request(
                        0, "ping", (), nonblocking=True, threadid=CONTROL, origexc="quiet"
                    )
                except ConnectionLost as e:
                    self._lose(h, f"lost ({e})")
                    return
                ping_sent = now
            elif ping is not None and now - ping_sent >= self.heartbeat:
                self._lose(h, f"lost (no answer to a ping within {self.heartbeat:g} s)")
                return
            # (only for the head waited on: once collected, the next one has its own
            # deadline, looked at in the next turn; else a healthy server was reconnected)
            if deadline is not None and now >= deadline and h.inflight and h.inflight[0] is head:
                if not self._stuck(h, now):
                    return
                client = h.client
                ping = None
                last_life = time.monotonic()
        self._close(h, owned_only=True)

    def _depth(self, h: Server) -> int:
        """How many items to keep in flight on ``h``: about PIPELINE_WINDOW seconds of
        work, one when an item takes longer (so long items spread over servers)."""
        if not h.service:
            return 1
        return max(1, min(self.pipeline, int(PIPELINE_WINDOW / h.service)))

    def _send(self, h: Server, new: List[Attempt], works: List[Work]) -> bool:
        """Send the new attempts (registering functions first); False if the server was
        lost meanwhile (the runner ends)."""
        client = h.client
        if client is None:
            raise RuntimeError(f"{h.name}: not connected")
        dropped: List[Attempt] = []
        broken: List[Tuple[Attempt, BaseException]] = []
        for a, w in zip(new, works):
            fut = w.future
            if not fut.running() and not fut.set_running_or_notify_cancel():
                dropped.append(a)  # cancelled by its owner before it left
                continue
            try:
                if w.token is not None:
                    if w.token not in h.tokens:
                        reg = client.send_request(
                            0,
                            "set_global",
                            (w.token, w.fn),
                            nonblocking=True,
                            threadid=WORK_THREAD,
                            origexc="quiet",
                        )
                        h.tokens.add(w.token)
                        h.inflight.append(Sent(None, reg, w.token))
                    call: Tuple[Any, ...] = (w.token, w.args, w.kwargs)
                else:
                    call = (APPLY, (w.fn,) + w.args, w.kwargs)
                resp = client.send_request(
                    0, "call", call, nonblocking=True, threadid=WORK_THREAD, origexc="quiet"
                )
            except ConnectionLost as e:
                with self.pool.lock:
                    for x in new[new.index(a) :]:
                        self.pool.sched.release(x)
                self._lose(h, f"lost ({e})")
                return False
            except Exception as e:  # e.g. arguments that cannot be pickled: the item's
                broken.append((a, e))
                continue
            h.inflight.append(Sent(a, resp, None))
        if dropped or broken:
            with self.pool.lock:
                now = time.monotonic()
                for a in dropped:
                    self.pool.sched.release(a)
                    self.pool.sched.cancel(a.job)
                for a, err in broken:
                    self.pool.work[a.job].error = err
                    self.pool.sched.started(a, now)
                    self.pool.sched.failed(a, now, None)
                settled = self.pool.take_settled()
            self.pool.finish(settled)
        return True

    def _collect(self, h: Server, now: float) -> bool:
        """Settle every finished call at the head of ``h``'s pipeline; False if the
        server was lost (the runner ends)."""
        done: List[Sent] = []
        inflight = h.inflight
        while inflight and inflight[0].resp.done():
            done.append(inflight.popleft())
        lost: Optional[BaseException] = None
        results: List[Tuple[Attempt, bool]] = []
        for s in done:
            err = s.resp.exception(0)
            if err is not None and not isinstance(err, RemoteException):
                lost = err  # the connection failed: every call on it did
                break
            if s.attempt is None:  # a registration
                if err is not None and s.token is not None:
                    h.bad_tokens[s.token] = unwrap(err)
                continue
            w = self.pool.work.get(s.attempt.job)
            if w is None:
                continue
            if err is None:
                w.value = s.resp.result(0)
                results.append((s.attempt, True))
            else:
                w.error = h.bad_tokens.get(w.token or "") or unwrap(err)
                results.append((s.attempt, False))
        if results:
            started = results[0][0].started
            if started is not None:
                per = max(now - started, 1e-7) / len(results)
                h.service = per if not h.service else 0.8 * h.service + 0.2 * per
        with self.pool.lock:
            for a, ok in results:
                if ok:
                    self.pool.sched.succeeded(a, now)
                else:
                    self.pool.sched.failed(a, now, None)
            nxt = next((s.attempt for s in inflight if s.attempt is not None), None)
            if nxt is not None and lost is None:
                self.pool.sched.started(nxt, now)
            settled = self.pool.take_settled()
            if self.pool.idle and (results or settled):
                self.pool.wake.notify_all()
        self.pool.finish(settled)
        if lost is not None:
            self._lose(h, f"lost ({lost})")
            return False
        return True

    def _stuck(self, h: Server, now: float) -> bool:
        """The head item passed its deadline: requeue it and the items behind it, and
        get a fresh server (the stuck call ends with the old one). False if that failed
        (the server is retired; the runner ends)."""
        with self.pool.lock:
            self.pool.sched.expire(now, host=h.name)
            for s in h.inflight:
                if s.attempt is not None:
                    self.pool.sched.release(s.attempt)
            self.pool.sched.pause(h.name)
            settled = self.pool.take_settled()
            self.pool.wake.notify_all()
        self.pool.finish(settled)
        h.inflight.clear()
        h.tokens.clear()
        h.bad_tokens.clear()
        try:
            if h.connect is not None:
                self._close(h, owned_only=True)
                h.client = h.connect()
            else:
                if h.client is None:
                    raise RuntimeError(f"{h.name}: nothing to reconnect")
                h.client.reconnect()
        except Exception as e:
            with self.pool.lock:
                self.pool.why[h.name] = f"retired after a stuck item (no reconnect: {e})"
                self.pool.sched.retire(h.name, "stuck")
                settled = self.pool.take_settled()
                self.pool.wake.notify_all()
            self.pool.finish(settled)
            return False
        with self.pool.lock:
            self.pool.sched.resume(h.name)
        return True

    def _lose(self, h: Server, why: str) -> None:
        """``h`` is lost: its items move on, and its client is closed."""
        with self.pool.lock:
            self.pool.why[h.name] = why
            if self.pool.sched.hosts[h.name].alive:
                self.pool.sched.lost(h.name, time.monotonic())
            settled = self.pool.take_settled()
            self.pool.wake.notify_all()
        self.pool.finish(settled)
        h.inflight.clear()
        # (not getattr: a Client answers any unknown name with a proxy of a remote global,
        # and calling it would be a round trip to the very server just declared lost)
        process = vars(h.client).get("process") if h.client is not None else None
        if h.connect is not None and process is not None:
            try:
                process.kill()  # a frozen local server would not exit by itself
            except OSError:
                pass
        self._close(h, owned_only=False)

    def _close(self, h: Server, owned_only: bool) -> None:
        client = h.client
        if client is None:
            return
        if h.connect is not None or not owned_only:
            h.client = None
            try:
                client.close()
            except Exception:
                pass
        elif WORK_THREAD:  # a client passed in stays open: only our server thread ends
            try:
                client.send_request(0, "stop_thread", (WORK_THREAD,), threadid=CONTROL)
            except Exception:
                pass
