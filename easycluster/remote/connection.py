"""The server end of a connection: dispatch, server threads, the usual reply.

Other replies go out through ``reply.py``; the verbs are in ``verbs.py``.

One ``ServerConnection`` serves one authenticated connection in its own process. Its
reader thread (the caller of ``serve``) owns the reads; each request runs on the server
thread its ``threadid`` names (0 by default, created on first use; ``SINGLE`` gets a
one-off thread), which sends the reply itself. When the client goes away the process
ends at once, even if calls are still running: nobody is left to receive their results.
The message bodies are drawn in ``protocol``'s docstring (``protocol/messages.py``).
"""

from __future__ import annotations

import _queue as queue  # (the C module: queue.py costs a server's start-up heapq & co.)
import _thread
import os
import threading
import time

from ..errors import ConnectionLost, ProtocolError
from ..objects import definitions, serialize
from ..protocol import frames
from ..protocol.messages import CONTROL, RELEASE_ITEM, REPLY_HEAD, REQUEST_HEAD, SINGLE
from ..transport.channel import Channel
from ..transport.outbox import POST_MAX
from ..transport.threads import ReusedThreads
from . import commands
from .failures import missing_module, remote_exception
from .handoff import (
    DRAINED,
    END,
    EXIT,
    MAIN,
    RUN_BACKLOG,
    RUNNING,
    SLEEP,
    WAIT,
    WATCH,
    ReaderHandoff,
)
from .objtable import ObjectTable
from .output import Forwarding, flush_output
from .reply import send_reply
from .serverlog import log as log
from .verbs import RootObject

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

    Request = Tuple[int, memoryview, Sequence[memoryview]]  # request id, body, oob buffers
    # (rid, tid, oid, method, args, kwargs, the callable the request names) -> its value
    RequestHook = Callable[[int, int, int, str, Any, Any, Callable[..., Any]], Any]

FT_REQUEST, FT_RESPONSE = frames.FT_REQUEST, frames.FT_RESPONSE
_HEAD_SIZE = REQUEST_HEAD.size
_unpack_request_head = REQUEST_HEAD.unpack_from
_pack_reply_head = REPLY_HEAD.pack
_SCALARS, _PROTOCOL = serialize.SCALARS, serialize.PROTOCOL
_loads_here, _dumps_scalar = serialize.loads_here, serialize.dumps_scalar
_VERB_NAMES = tuple(n for n in dir(RootObject) if n.startswith("verb_"))  # (dir() is slow)


class ServerThread(threading.Thread):
    """A persistent server thread: runs the requests queued for one thread id in order."""

    def __init__(self, conn: ServerConnection, tid: int):
        super().__init__(name=f"easycluster-thread-{tid}", daemon=True)
        self.conn = conn
        self.tid = tid
        self.queue: queue.SimpleQueue[Optional[Request]] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            self.conn.run_request(*item, more=self.queue.qsize)


class ServerConnection:
    """Serves one connection: call ``serve()`` on the thread that runs thread 0's calls.

    The serving thread (the process's main thread) both reads and runs thread 0's calls
    itself, so a plain call costs no thread switch. While it runs a call, a standby
    thread watches; if the call is still running after ``STANDBY_DELAY`` seconds the
    standby takes over the reads (other threads' requests, pings and the end of the
    connection are then seen at once) and hands them back when the main thread is free.
    Exactly one thread reads at any time. Who reads, and when the reads change hands, is
    decided by ``handoff`` (a ``ReaderHandoff``, where the states are drawn), consulted
    and updated under ``_lock``; this class keeps the threads and the I/O.
    """

    STANDBY_DELAY = 0.02
    # While nothing runs, the standby looks this often whether a batch began (then it
    # watches it for STANDBY_DELAY): a call outliving that is taken over within
    # STANDBY_POLL + STANDBY_DELAY. Every server that answered a call in the last
    # STANDBY_IDLE seconds wakes this often: with a thousand of them, each wake counts
    # (a round of one call on each of 1,000 local servers, 2 cores: 0.1 s -> 0.25 s cut
    # the machine's CPU per call by ~17%; a reply to a ping waits 0.27 s at most then,
    # where keep-alives wait a second before the first ping).
    STANDBY_POLL = 0.25
    STANDBY_IDLE = 1.0  # after this long without calls the standby sleeps until notified
    FINISH_TIMEOUT = 2.0  # a drained connection waits this long for the client to close

    def __init__(
        self,
        channel: Channel,
        peer: str = "local",
        verbosity: int = 0,
        on_end: Optional[Callable[[str], None]] = None,
        request_hook: Optional[RequestHook] = None,
        standby: bool = True,
    ):
        self.channel = channel
        # False: no standby thread (a long call then holds up the reads until it ends;
        # for a rehearsal, ``rehearsal.py``, after which a fork must find no thread)
        self._with_standby = standby
        # EasyCluster 0.22's Server.report_request/run_request overrides (server.py):
        # when set, every call goes through it; None (always, but for such a subclass)
        # keeps the hot path to one test
        self.request_hook = request_hook
        self.peer = peer
        self.verbosity = verbosity
        self.context = definitions.definitions_module(definitions.DEFAULT_MODULE)
        self.root = RootObject(self)
        self.table = ObjectTable(self.root)
        self._verbs = {name[5:]: getattr(self.root, name) for name in _VERB_NAMES}
        self.objects = self.table.objects
        self.threads: Dict[int, ServerThread] = {}
        # SINGLE requests: each on a thread of its own, idle ones kept for the next
        self.singles = ReusedThreads("easycluster-single")
        self._on_end = on_end
        self._lock = threading.RLock()  # taken bare on the hot paths; _cond to wait on it
        self._cond = threading.Condition(self._lock)
        self.handoff = ReaderHandoff(self.STANDBY_IDLE)  # (under _lock but call and drain)
        # the identities of the two threads that may read (set as each starts)
        self._main_ident = 0
        self._standby_ident = 0
        self.output: Optional[Forwarding] = None  # remote print, once the hello asks

    def serve(self) -> str:
        """Read and dispatch until the client goes away; return why the connection ended.
        Remote print, if the client asked for it, ends with the connection."""
        try:
            return self._serve()
        finally:
            if self.output is not None:
                self.output.uninstall()

    def _serve(self) -> str:
        self._main_ident = threading.get_ident()
        # A bare thread: ``threading.Thread.start`` waits until the new thread runs, a
        # switch that would delay the first reply (a local server's start-up); nothing
        # ever joins or names this one, and the process ends with os._exit.
        if self._with_standby:
            _thread.start_new_thread(self._standby, ())
        cond, lock, handoff = self._cond, self._lock, self.handoff
        batch: Optional[List[Request]] = None
        # This thread unpickles for this connection only: its references resolve in our
        # table for as long as it serves (``loads`` then has nothing to swap per call).
        saved_refs = serialize.use_refs(self.table)
        try:
            while True:
                with lock:
                    if batch is None:
                        step = handoff.main_next()
                    else:  # the one just run is answered
                        step = handoff.main_done(len(batch))
                        batch = None
                        if step == DRAINED:
                            break
                    while step == WAIT:  # the standby reads; nothing waits to run
                        cond.wait()
                        step = handoff.main_next()
                    if step == END:
                        return handoff.ended or "ended"
                    if step == RUN_BACKLOG:
                        batch = handoff.begin()
                        if handoff.standby_idle:
                            cond.notify_all()
                if batch is None:
                    local = self._read_some()
                    if not local:
                        continue
                    with lock:  # (``begin`` counts them: none is counted before)
                        batch = handoff.begin(local)
                        if handoff.standby_idle:  # (it sleeps until a batch begins)
                            cond.notify_all()
                    if not batch:
                        batch = None  # (draining: what was read is dropped)
                        continue
                if len(batch) == 1:  # a lone call (the usual case): nothing to hold, and
                    self._run_request(*batch[0])  # ``begin`` counted it
                else:
                    self._run_batch(batch)
        except ProtocolError as e:
            self._protocol_error(e)
        except ConnectionLost as e:
            self._end(str(e))
        else:
            self._exit_drained()
        finally:
            serialize.use_refs(saved_refs)
        return handoff.ended or "ended"

    def _read_some(self) -> Optional[List[Request]]:
        """Read once and dispatch what came; return thread 0's requests (for the caller to
        count and queue), or None once the client said goodbye."""
        local: List[Request] = []
        for frame in self.channel.recv_frames():
            # (unpacked: ``Frame``'s named fields are properties, which 3.11 does not
            # specialize; a tuple's unpacking it does)
            ftype, flags, payload, _ = frame
            if ftype == FT_REQUEST and not flags:  # (``_dispatch`` written out for
                main = memoryview(payload)  # thread 0's calls: every call comes here)
                if len(main) >= _HEAD_SIZE:
                    rid, tid = _unpack_request_head(main)
                    if tid == 0:  # (counted by whoever queues or runs it: ``handoff``)
                        local.append((rid, main, ()))
                        continue
            if ftype == frames.FT_BATCH:
                for ftype, body in frames.batch_items(frame):
                    if not self._dispatch(ftype, body, [], local):
                        self._end("client closed the connection")
                        return None
            else:
                main, bufs = frame.parts() if flags else (memoryview(payload), ())
                if not self._dispatch(ftype, main, bufs, local):
                    self._end("client closed the connection")
                    return None
        return local

    def _run_batch(self, batch: List[Request]) -> None:
        """Run thread 0's requests in order on this thread; their small replies are held
        and leave together at the end (the standby flushes them if a call runs long)."""
        handoff = self.handoff
        saved = serialize.use_refs(self.table)
        try:
            last = len(batch) - 1
            for i, (rid, main, bufs) in enumerate(batch):
                # Hold only while the standby watches: once it reads (a call ran long),
                # nobody would flush held replies until the batch ends. If it took over
                # during this call (its flush came too early for this reply), flush here:
                # this thread is not the reader then, so it may write.
                held = handoff.call(i < last)  # (counted: the standby spots a long call)
                self._run_request(rid, main, bufs, hold=held)
                if held and handoff.state != RUNNING:
                    self.channel.flush()
        finally:
            serialize.use_refs(saved)
            try:
                self.channel.flush()
            except ConnectionLost:
                pass

    def _standby(self) -> None:
        self._standby_ident = threading.get_ident()  # (before it can ever hold the reads)
        cond, handoff, delay = self._cond, self.handoff, self.STANDBY_DELAY
        poll = self.STANDBY_POLL
        while True:
            with cond:
                while True:
                    step = handoff.standby_poll(time.monotonic())
                    if step == EXIT:
                        return
                    if step == WATCH:
                        cond.wait(delay)
                        if handoff.standby_check():
                            break  # the same call for a whole delay: the reads are ours
                    elif step == SLEEP:  # quiet: until the main thread begins a batch
                        cond.wait()
                    else:  # (POLL: nothing runs; a batch begun meanwhile is watched late)
                        cond.wait(poll)
            try:
                self.channel.flush_later()  # replies held behind the long call leave now
                while True:
                    local = self._read_some()
                    if local is None:
                        return
                    with cond:
                        give_back = handoff.standby_read(local)
                        cond.notify_all()
                    if give_back:
                        break
            except ProtocolError as e:
                self._protocol_error(e)
                return
            except ConnectionLost as e:
                self._end(str(e))
                return

    def drain(self) -> None:
        """Finish the calls received so far, then end the process (idle: at once).

        Requests arriving after this are not run: the client sees the connection end
        (outcome unknown, as for any lost connection; in fact they did not run).

        Safe to call from a signal handler: it takes no lock (the interrupted thread may
        hold one) and leaves the exit to a new bare thread; a racy read of the counter
        only means the last request to finish ends the process instead.
        """
        if self.handoff.drain():
            _thread.start_new_thread(self._exit_if_idle, ())

    def _exit_if_idle(self) -> None:
        with self._lock:  # a request counted meanwhile: its end will exit instead
            if self.handoff.requests:
                return
        self._exit_drained()

    def _exit_drained(self) -> None:
        """Every counted request is answered: send the replies, then end the process
        once the client has them (or after FINISH_TIMEOUT).

        Exiting with unread input would reset the connection and throw away replies
        still on their way, so the input is read out until the client closes: by this
        thread if it is the reader, else by the reader (it drops requests while
        draining, and its end of stream ends the process).
        """
        handoff = self.handoff
        with self._lock:
            who = handoff.finish()  # from now on pings go unanswered (nothing may follow)
            if who is None:
                return  # another thread is at it
            reader = self._main_ident if who == MAIN else self._standby_ident
            reading_elsewhere = reader != threading.get_ident()
        self.channel.finish(self.FINISH_TIMEOUT, read_out=not reading_elsewhere)
        if reading_elsewhere:
            with self._lock:
                self._cond.wait_for(lambda: handoff.ended is not None, self.FINISH_TIMEOUT)
        log.info("%s: drained, exiting", self.peer)
        commands.kill_all()
        if self.output is not None:
            self.output.uninstall()  # (anything printed from here on is the process's own)
        flush_output()
        os._exit(0)

    def _protocol_error(self, e: ProtocolError) -> None:
        log.warning("%s: protocol error: %s; closing", self.peer, e)
        try:
            self.channel.send(frames.FT_ERROR, str(e).encode("utf-8", "replace"))
        except ConnectionLost:
            pass
        self._end(f"protocol error: {e}")

    def _end(self, reason: str) -> None:
        with self._lock:
            if not self.handoff.end(reason):
                return
            self._cond.notify_all()
        self.channel.close(reason)
        if self.verbosity:
            log.info("%s: disconnected (%s)", self.peer, reason)
        if self._on_end is not None:
            self._on_end(reason)

    def _dispatch(
        self, ftype: int, main: memoryview, bufs: Sequence[memoryview], local: List[Request]
    ) -> bool:
        """Route one message; thread 0's requests are appended to ``local``. False at goodbye."""
        if ftype == frames.FT_REQUEST:
            if len(main) < REQUEST_HEAD.size:
                raise ProtocolError("request too short")
            rid, tid = REQUEST_HEAD.unpack_from(main)
            item = (rid, main, bufs)
            if tid == 0:  # (counted where a batch begins, or the standby queues it)
                local.append(item)
                return True
            with self._lock:  # received counts from here until its reply is sent
                if not self.handoff.receive():  # draining (see _exit_if_idle): dropped
                    return True
            if tid == CONTROL:
                self.run_request(*item, from_reader=True)
            elif tid == SINGLE:
                self.singles.run(self.run_request, *item)
            else:
                self._thread(tid).queue.put(item)
            return True
        if ftype == frames.FT_RELEASE:
            if len(main) % RELEASE_ITEM.size:
                raise ProtocolError("malformed release frame")
            self.table.release(RELEASE_ITEM.iter_unpack(main))
            return True
        if ftype == frames.FT_PING:  # a reader must never wait on a blocked write
            if not self.handoff.finishing:  # (then the sending side is shut: nothing may follow)
                self.channel.post_later(frames.FT_PONG, bytes(main))
            return True
        if ftype == frames.FT_CLOSE:
            return False
        raise ProtocolError(f"unexpected frame type {ftype} from the client")

    def _thread(self, tid: int) -> ServerThread:
        t = self.threads.get(tid)
        if t is None:
            t = self.threads[tid] = ServerThread(self, tid)
            t.start()
        return t

    def stop_thread(self, tid: int) -> None:
        """Stop server thread ``tid`` after its queued calls (thread 0 is never stopped)."""
        t = self.threads.pop(tid, None)
        if t is not None:
            t.queue.put(None)

    def run_request(
        self,
        rid: int,
        main: memoryview,
        bufs: Sequence[memoryview],
        more: Callable[[], int] = lambda: 0,
        from_reader: bool = False,
    ) -> None:
        """Run one request and send its reply; never raises (the reply carries errors).

        ``more()`` tells how many requests wait behind this one; while there are some,
        small replies are batched instead of sent one by one. ``from_reader``: the
        reading thread runs it (a control request), so a small reply goes through the
        writer thread (``Channel.post_later``).
        """
        try:
            self._run_request(rid, main, bufs, more=more, later=from_reader)
        finally:
            with self._lock:
                done = self.handoff.answered(1)
            if done:
                self._exit_drained()

    def _run_request(
        self,
        rid: int,
        main: memoryview,
        bufs: Sequence[memoryview],
        hold: bool = False,
        more: Optional[Callable[[], int]] = None,
        later: bool = False,
    ) -> None:
        status, value, request = 0, None, None
        try:
            try:
                if serialize.current.refs is self.table:  # (the serving thread's case)
                    request = _loads_here(main[_HEAD_SIZE:], buffers=bufs)
                else:
                    request = serialize.loads(main[_HEAD_SIZE:], bufs, self.table)
            except ModuleNotFoundError as e:  # (a function of a module this host lacks)
                raise missing_module(e) from None
            oid, method, args, kwargs = request
            if self.verbosity > 1:
                log.info("%s: request %d: %s.%s", self.peer, rid, oid, method)
            if oid == 0:
                fn = self._verbs.get(method)
                if fn is None:
                    raise AttributeError(f"no remote verb {method!r}")
            else:
                fn = getattr(self.table.get(oid), method)
            hook = self.request_hook
            if hook is None:
                value = fn(*args, **kwargs)
            else:
                tid = REQUEST_HEAD.unpack_from(main)[1]
                value = hook(rid, tid, oid, method, args, kwargs, fn)
        except BaseException as e:  # SystemExit and KeyboardInterrupt are replies too
            status, value = 1, remote_exception(e)
        else:
            fwd = self.output  # (a partial line printed by the call goes first: send_reply)
            if (
                type(value) in _SCALARS
                and not (hold or more or later)
                and (fwd is None or not (fwd.out.pending or fwd.err.pending))
            ):
                # A number or None answering a lone call (``send_reply``'s usual way,
                # written out: C's pickler needs no sink for these)
                body = _dumps_scalar((value,), _PROTOCOL)
                if len(body) <= POST_MAX:
                    try:
                        self.channel.post(FT_RESPONSE, _pack_reply_head(rid, 0) + body, True)
                    except ConnectionLost:
                        pass  # the client is gone; the reader thread ends the process
                    return
        send_reply(self, rid, status, value, hold, more, later, request)


def warm_up(channel: Channel, module: Optional[str] = None) -> None:
    """Build a connection on ``channel`` and send one reply through it, nothing else (no
    thread, no read): for a forked process that will serve a real connection soon (the
    zygote's spare, the TCP listener's), so that the pages this touches are its own before
    the real one needs them. With ``module``, that reply answers a ``hello`` naming that
    definitions module (no blocks), run as a client's first request runs. The caller
    closes ``channel``'s socket."""
    conn = ServerConnection(channel, "warm-up")
    if module is None:
        send_reply(conn, 1, 0, None)
        return
    request: Any = (0, "hello", (module, [], False), {})
    main = REQUEST_HEAD.pack(1, 0) + serialize.dumps(request, conn.table)[0]
    conn._run_request(1, memoryview(main), ())
