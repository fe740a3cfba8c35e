"""What a call returns: ``Response`` (a ``concurrent.futures.Future``) and its helpers.

``Response`` is EasyCluster's non-blocking response and a standard Future. The client it
belongs to does the reading: a plain Client's waiting thread reads (``client._wait_for``),
a ThreadedClient's reader thread completes it. ``_Slot`` is the lighter landing place of
a blocking call's reply when the calling thread reads it itself.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from typing import Any, Callable, Optional, Tuple, Union

from ..errors import CallTimeout, RemoteException

Callback = Union[Callable[..., Any], Tuple[Any, ...], None]


class _Waiters(list):
    """Future._waiters for a plain Client: ``concurrent.futures.wait``/``as_completed``
    install a waiter here, and then nobody would read the socket; appending one starts a
    short-lived reader for the client instead."""

    def __init__(self, client: Any):
        super().__init__()
        self.client = client

    def append(self, waiter: Any) -> None:
        super().append(waiter)
        self.client._ensure_pump()


class _Slot:
    """Where a blocking call's reply lands when the calling thread reads it itself."""

    __slots__ = ("value", "exc", "_done", "pins")

    def __init__(self) -> None:
        self.pins: Any = None
        self.value: Any = None
        self.exc: Optional[BaseException] = None
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        self.value, self._done = value, True

    def set_exception(self, exc: BaseException) -> None:
        self.exc, self._done = exc, True


def _mirror(resp: Response) -> concurrent.futures.Future:
    """A plain Future mirroring ``resp``: asyncio must not call our result()/exception()
    (they raise the remote error per ``origexc``; ``acall`` does that itself)."""
    mirror: concurrent.futures.Future = concurrent.futures.Future()
    resp.add_done_callback(lambda _r: mirror.set_result(None))
    return mirror


_ENDED = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED))


class Response(concurrent.futures.Future):
    """The reply to one call: EasyCluster's non-blocking response and a standard Future.

    ``wait()``/``result()`` return the value or raise as the call's ``origexc`` says;
    ``have_response`` tells whether the reply is in. Works with
    ``concurrent.futures.wait`` and ``as_completed``.
    """

    pins: Any = None  # proxies the request carries, kept alive until its reply
    # Made on first use (see the properties below); class defaults, not instance
    # dictionary lookups, so that instances keep CPython's compact attribute storage.
    _w: Optional[list] = None
    _cb: Optional[list] = None

    def __init__(self, client: Any, request_id: int, origexc: Any = True):
        # Future.__init__ is not called: it makes a Condition per future, which costs
        # more than a small call. A plain client's responses share one (nobody sleeps
        # on it: the waiting thread reads the socket itself); a ThreadedClient's get
        # their own, since callers sleep on them until the reader completes them.
        shared = client._futures_cond
        self._notify = shared is None
        if shared is None:
            self._mutex = threading.RLock()  # the Condition's lock, used bare when it can be
            self._condition = threading.Condition(self._mutex)
        else:
            self._mutex, self._condition = client._futures_lock, shared
        self._state = PENDING
        self._result: Any = None
        self._exception: Optional[BaseException] = None
        self.client = client
        self.request_id = request_id
        self.origexc = origexc

    @property
    def _waiters(self) -> list:
        """Future's list of ``concurrent.futures.wait`` waiters, made on first use (under
        ``_condition``, as Future's helpers and ``_finish`` use it): most responses never
        see one."""
        w = self._w
        if w is None:
            w = self._w = _Waiters(self.client) if self.client._reads_inline else []
        return w

    @property
    def _done_callbacks(self) -> list:
        """Future's callback list, made on first use (few responses get callbacks)."""
        cbs = self._cb
        if cbs is None:
            cbs = self._cb = []
        return cbs

    @property
    def have_response(self) -> bool:
        return self._state in _ENDED

    def done(self) -> bool:
        return self._state in _ENDED

    def wait(self, timeout: Optional[float] = None, origexc: Any = None) -> Any:
        """Wait for the reply; return its value or raise (``CallTimeout`` on timeout)."""
        if self._state not in _ENDED:
            self.client._wait_for(self, timeout)
            if self._state not in _ENDED:
                raise timeout_error(self.client, self.request_id, "", timeout)
        if self._state is not FINISHED:
            raise concurrent.futures.CancelledError()
        exc = self._exception
        if exc is None:
            return self._result
        self.client._raise(exc, self.origexc if origexc is None else origexc)

    def result(self, timeout: Optional[float] = None) -> Any:
        return self.wait(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if self._state not in _ENDED:
            self.client._wait_for(self, timeout)
        return concurrent.futures.Future.exception(self, 0)

    def set_result(self, result: Any) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException) -> None:
        self._finish(None, exception)

    def _finish(self, result: Any, exc: Optional[BaseException]) -> None:
        with self._mutex:
            if self._state in _ENDED:
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            self._result, self._exception, self._state = result, exc, FINISHED
            for waiter in self._w or ():
                if exc is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            if self._notify:
                self._condition.notify_all()
        if self._cb:
            self._invoke_callbacks()

    def cancel(self) -> bool:
        """Stop waiting for the reply (False if it is already in). The call itself may
        still run remotely: the outcome is unknown, and a late reply is dropped."""
        with self._mutex:
            if self._state is FINISHED:
                return False
            if self._state in _ENDED:
                return True
            # Straight to "cancelled and notified": no executor will do that step here.
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._w or ():
                waiter.add_cancelled(self)
            if self._notify:
                self._condition.notify_all()
        self.client._pending.pop(self.request_id, None)  # a late reply is dropped
        if self._cb:
            self._invoke_callbacks()
        return True

    def add_done_callback(self, fn: Callable[[Any], Any]) -> None:
        """As Future's; on a plain Client someone must read, so a reader is started."""
        super().add_done_callback(fn)
        if self.client._reads_inline and self._state not in _ENDED:
            self.client._ensure_pump()

    def read_response(self, block: bool = True) -> None:
        self.client.read_response(block)

    def set_response(self, val: Any) -> None:
        self.set_result(val)

    def fileno(self) -> int:
        return self.client.fileno()


NonblockingResponse = Response  # EasyCluster 0.22's name


def timeout_error(client: Any, rid: int, what: str, timeout: Optional[float]) -> CallTimeout:
    call = f"{what} (request {rid})" if what else f"request {rid}"
    return CallTimeout(f"no reply to {call} from {client.peername} within {timeout:g} s; the "
                       "outcome is unknown: the call may still be running there")


def callback_runner(oncomplete: Callback, onerror: Callback) -> Callable[[Response], None]:
    def split(cb: Callback) -> Tuple[Optional[Callable[..., Any]], Tuple[Any, ...]]:
        if cb is None:
            return None, ()
        if isinstance(cb, tuple):
            return cb[0], tuple(cb[1:])
        return cb, ()

    ok_fn, ok_args = split(oncomplete)
    err_fn, err_args = split(onerror) if onerror is not None else (ok_fn, ok_args)

    def run(resp: Response) -> None:
        try:
            exc = concurrent.futures.Future.exception(resp, 0)
        except concurrent.futures.CancelledError as e:  # cancelled here: an error too
            exc = e
        try:
            if exc is None:
                if ok_fn is not None:
                    ok_fn(concurrent.futures.Future.result(resp, 0), *ok_args)
            elif err_fn is not None:
                err = exc if isinstance(exc, RemoteException) else RemoteException(exc, [])
                err_fn(err, *err_args)
        except Exception:
            import traceback

            sys.stderr.write("exception in an oncomplete/onerror callback:\n")
            traceback.print_exc()

    return run
