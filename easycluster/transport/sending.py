"""``Sending``: the sending half of a ``Channel`` (``channel.py``): frames written whole
and in sequence from any thread, small bodies through the outbox (``outbox.py``), the
writer thread that sends the bursts nobody flushes.

The class holds no state of its own: ``Channel.__init__`` makes the socket, the session,
the two locks, the condition and the outbox these methods share with the reading half.
"""

from __future__ import annotations

import _socket  # (the C module: socket.py's enums cost a remote server ~1.4 ms of start-up)
import threading
from time import monotonic as _monotonic

from ..errors import ConnectionLost
from ..protocol import frames
from .outbox import ALONE, NOTHING, NOTIFY, POST_MAX, START, WAIT, WRITE, Outbox

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Tuple, Union

    from .pipes import Stream

_IOV_MAX = 512
_MSG_DONTWAIT = _socket.MSG_DONTWAIT


class Sending:
    """A channel's writes (see ``Channel`` for the locking rules they follow)."""

    sock: Stream
    session: frames.Session
    _lock: threading.Lock  # guards the outbox, held for a moment
    _write_lock: threading.Lock  # held while frames are numbered and written
    _wake: threading.Condition  # on ``_lock``: the writer thread sleeps on it
    _box: Outbox
    _send_now: bool  # ``sock`` is a socket: ``post_later`` may try a non-blocking send

    def send(
        self,
        ftype: int,
        main: Union[frames.Bytes, Sequence[frames.Buffer]],
        buffers: Sequence[frames.Buffer] = (),
        wait: Optional[float] = None,
    ) -> bool:
        """Send one frame, whole, after anything posted before it; blocks until written.
        With ``wait``, only if no other thread holds the writes longer than that (one
        blocked on a peer that stopped reading): False, nothing sent, if one does.

        Raises ConnectionLost if the connection is gone, FrameTooLarge if the peer's
        limit is exceeded (nothing sent).
        """
        lock = self._write_lock
        if not lock.acquire(True, -1 if wait is None else wait):
            return False
        try:
            try:
                self._write_outbox()  # (raises ConnectionLost once closed)
                groups = self.session.pack_chunks(ftype, main, buffers)
                started = False
                try:
                    for group in groups:  # a large frame is hashed a chunk at a time
                        started = True
                        self._write(group)
                except ConnectionLost:
                    raise
                except BaseException as e:  # (Ctrl-C in a write): the frame may be cut short
                    if started:
                        self._broken(f"sending failed part-way through a frame: {e!r}")
                    raise
            finally:
                lock.release()
        except Exception:
            self._look_again()  # (FrameTooLarge: ours is refused, theirs must still leave)
            raise
        self._look_again()  # our frame is out; the next send or read reports a loss
        return True

    def post(self, ftype: int, body: bytes, flush: bool) -> None:
        """Queue a small frame body; with ``flush``, see that it leaves now.

        Even without ``flush`` a body leaves at once unless it is part of a burst (the
        previous post was less than ``outbox.BURST_GAP`` seconds ago): waking the writer
        thread costs more than a send, so only bursts are worth batching. What leaves
        at once is written by this thread unless another one is writing (see the class
        notes). Raises ConnectionLost once the connection is gone and FrameTooLarge for
        a body above the peer's limit.
        """
        write_lock = self._write_lock
        box = self._box
        if not box.items and write_lock.acquire(False):
            # The usual case (every blocking call, every lone reply, a fan-out's one call
            # on each connection): nothing queued and nobody writing, so the outbox has
            # nothing to decide (``post`` on EMPTY, flushed or not part of a burst, is
            # ALONE). Looked at without ``_lock``: a body another thread queues
            # meanwhile is sent after ours by the look below, as on the ALONE path.
            if flush or box.lone(_monotonic()):
                try:
                    try:
                        if box.closed or len(body) > box.max_body:
                            box.post(ftype, body, True, 0.0)  # (raises what it must)
                        self._write(self.session.pack(ftype, body))
                    finally:
                        write_lock.release()
                except Exception:
                    self._look_again()
                    raise
                if box.items:
                    self._kick(False)
                return
            write_lock.release()  # part of a burst: the outbox decides, below
        alone = False
        try:
            try:  # (entered before the lock is taken, so that an interrupt cannot strand it)
                with self._lock:
                    action = box.post(ftype, body, flush, _monotonic())
                    if action == ALONE:
                        # Only a try-acquire here: the usual order is the write lock first.
                        alone = write_lock.acquire(False)
                        if not alone:
                            action = box.post_behind(ftype, body)
                    elif action != WRITE:
                        self._wake_writer(action)
                        return
                if alone:
                    self._write(self.session.pack(ftype, body))
            finally:
                if alone:
                    write_lock.release()
        except Exception:
            if alone:  # (as in ``send``: bodies posted meanwhile were left to us)
                self._look_again()
            raise
        if box.items:
            self._kick(False)  # (after a lone write: posted meanwhile, left to us)

    def post_later(self, ftype: int, body: bytes) -> None:
        """Send a small body without ever blocking the calling thread: at once if nothing
        waits to be written before it and the socket takes it now, else by the writer
        thread.

        For the thread that owns the reads (answering a ping, a control request): a
        reader that blocked on a full socket would stop reading, and a peer that is
        itself blocked writing to us would never drain it. The usual such body (a
        hello's answer, a pong) leaves in one non-blocking send: starting the writer
        thread for it would cost more than the send (a thread, its stack, and its exit
        with the process: each local server answers a hello this way).
        """
        if (
            self._send_now
            and not self._box.items
            and self._write_lock.acquire(False)
            and self._send_or_hand_over(ftype, body)
        ):
            return
        with self._lock:
            self._wake_writer(self._box.later(ftype, body))

    def _send_or_hand_over(self, ftype: int, body: bytes) -> bool:
        """``post_later``'s attempt, the write lock held (it is released here, or handed
        over). False: nothing was sent nor numbered (bodies wait already, or the outbox
        refuses this one), for the writer thread's way. True: the frame is out, or
        begun, its rest left to a thread of its own that holds the write lock until the
        frame is whole (a socket that takes none or part of it now)."""
        box = self._box
        handed = False
        try:
            if box.items or box.closed or len(body) > box.max_body:
                return False  # (``later`` queues it behind the others, or raises)
            parts = self.session.pack(ftype, body)  # (numbered: it must leave now, whole)
            data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)  # (no copy: bytes)
            try:  # (a socket: ``_send_now``)
                sent = self.sock.send(data, _MSG_DONTWAIT)  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as e:
                raise self._send_failed(e)
            except BaseException as e:  # (Ctrl-C) numbered, not sent: nothing may follow
                self._broken(f"sending failed: {e!r}")
                raise
            if sent < len(data):
                finisher = threading.Thread(
                    target=self._finish_frame,
                    args=(memoryview(data)[sent:],),
                    daemon=True,
                    name="easycluster-writer",
                )
                try:
                    finisher.start()
                except BaseException as e:  # (no thread to be had): the frame stays cut
                    self._broken(f"sending failed: {e!r}")
                    raise
                handed = True
        finally:
            if not handed:
                self._write_lock.release()
        if box.items and not handed:  # posted meanwhile and left to us: not to wait on
            self.flush_later()
        return True

    def _finish_frame(self, rest: memoryview) -> None:
        """The rest of a frame ``post_later`` began, sent with the write lock it holds
        for it; then what was posted meanwhile."""
        try:
            self._write([rest])
        except ConnectionLost:
            return
        finally:
            self._write_lock.release()
        try:
            self._kick(True)
        except ConnectionLost:
            pass

    def flush_later(self) -> None:
        """Have the writer thread send the outbox; never writes in the calling thread
        (see ``post_later``)."""
        with self._lock:
            self._wake_writer(self._box.flush_later())

    def _wake_writer(self, action: int) -> None:
        """Start the writer thread, or wake it, as the outbox answered (``_lock`` held)."""
        if action == START:
            threading.Thread(
                target=self._write_loop, daemon=True, name="easycluster-writer"
            ).start()
        elif action == NOTIFY:
            self._wake.notify()

    def hold(self, ftype: int, body: bytes) -> None:
        """``post`` for a caller that will ``flush()`` soon (a server running a batch):
        the body waits in the outbox, and only a full outbox is sent at once."""
        with self._lock:
            if self._box.hold(ftype, body) == NOTHING:
                return
        self._kick(False)

    def send_message(
        self,
        ftype: int,
        head: bytes,
        main: bytes,
        buffers: Sequence[frames.Buffer],
        flush: bool = False,
        hold: bool = False,
        later: bool = False,
    ) -> None:
        """Send ``head + main`` (+ buffers): the one send-or-queue decision. A message with
        buffers, or a large one, is a frame of its own (``send``); a small one is posted
        (``post``, leaving at once if ``flush``), held (``hold``) or left to the writer
        thread (``later``, for the reading thread)."""
        if buffers or len(main) > POST_MAX:
            self.send(ftype, [head, main], buffers)
        elif later:
            self.post_later(ftype, head + main)
        elif hold:
            self.hold(ftype, head + main)
        else:
            self.post(ftype, head + main, flush)

    def flush(self) -> None:
        """See that the outbox leaves now: written here, or by the thread writing."""
        if self._box.flush() == WRITE:
            self._kick(False)

    def _look_again(self) -> None:
        """After this thread let go of the write lock, on any way out: bodies other
        threads posted while it held the lock were left to it (the class notes), even
        when its own write raised. Sent now, unless the connection is gone (the next
        send or read reports that)."""
        if self._box.items:
            try:
                self._kick(False)
            except ConnectionLost:
                pass

    def _kick(self, wait: bool) -> None:
        """Write the outbox unless another thread is writing (it sends it after its own
        write: it looks at the outbox again after letting go of the lock)."""
        lock = self._write_lock
        box = self._box
        while box.items:
            if not wait and lock.locked():
                return  # (cheaper than a failed acquire, and as safe: see above)
            if not lock.acquire(wait):
                return
            try:
                self._write_outbox()
            finally:
                lock.release()

    def _write_loop(self) -> None:
        box = self._box
        while True:
            with self._lock:
                step = box.writer_next()
                while step == WAIT:
                    self._wake.wait()
                    step = box.writer_next()
            if step != WRITE:
                return  # (EXIT: closed)
            try:
                self._kick(True)
            except ConnectionLost:
                return
            except Exception as e:  # the stream is unusable: say so to everyone
                self._broken(f"sending failed: {e}")
                return

    def _write_outbox(self) -> None:
        """Send what the outbox holds as batches within the peer's limit (write lock held).
        Raises ConnectionLost once closed."""
        box = self._box
        with self._lock:
            items, nbytes = box.take()
        if not items:
            return
        for batch in box.batches(items, nbytes):
            self._write_batch(batch)

    def _write_batch(self, items: Sequence[Tuple[int, bytes]]) -> None:
        if len(items) == 1:
            self._write(self.session.pack(items[0][0], items[0][1]))
        else:
            self._write(self.session.pack(frames.FT_BATCH, frames.pack_batch(items)))

    def _write(self, parts: List[frames.Buffer]) -> None:
        try:
            if len(parts) == 1:
                self.sock.sendall(parts[0])
            else:
                self._sendmsg_all(parts)
        except OSError as e:  # part of a frame may have left: nothing more can follow it
            raise self._send_failed(e)

    def _send_failed(self, e: OSError) -> ConnectionLost:
        """A write failed: the channel is broken (see ``_broken``); the error to raise."""
        reason = f"connection lost while sending: {e.strerror or e}"
        self._broken(reason)
        return ConnectionLost(reason)

    def _broken(self, reason: str) -> None:
        """Mark the channel dead and wake its reader and writer."""
        with self._lock:
            if not self._box.close(reason):
                return
            self._wake.notify_all()
        try:
            self.sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass

    def _sendmsg_all(self, parts: List[frames.Buffer]) -> None:
        views = [memoryview(p).cast("B") for p in parts]
        while views:
            sent = self.sock.sendmsg(views[:_IOV_MAX])
            while sent and views:
                n = len(views[0])
                if sent >= n:
                    sent -= n
                    views.pop(0)
                else:
                    views[0] = views[0][sent:]
                    sent = 0
