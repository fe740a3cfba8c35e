"""What a call returns: ``Response`` (a ``concurrent.futures.Future``) and its helpers.

``Response`` is EasyCluster's non-blocking response and a standard Future, built with
``Future``'s public interface only. It does no reading itself: it asks its connection's
reader (``reader.py``) to read until it is done, to ``watch`` when someone waits on it
without reading, and to ``forget`` it when cancelled. ``Slot`` is the lighter landing
place of a blocking call's reply when the calling thread reads it itself (in
``outcome.py``, with the other helpers a blocking call needs: this module loads
``concurrent.futures``, about 5 ms with ``logging``, which ``client.py`` loads only when
a call first needs a Response).
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

from ..errors import RemoteException
from .outcome import raise_reply, timeout_error

if TYPE_CHECKING:
    from .outcome import Callback


def plain_mirror(resp: Response) -> concurrent.futures.Future:
    """A plain Future completed (with None) when ``resp`` is: asyncio must not call our
    result()/exception() (they raise the remote error per ``origexc``; ``acall`` does
    that itself)."""
    mirror: concurrent.futures.Future = concurrent.futures.Future()
    resp.add_done_callback(lambda _r: mirror.set_result(None))
    return mirror


_Future = concurrent.futures.Future
_BASE_LOCK = threading.Lock()  # orders Response._base against a racing completion


def _set(fut: concurrent.futures.Future, value: Any, error: Optional[BaseException]) -> None:
    if error is None:
        _Future.set_result(fut, value)
    else:
        _Future.set_exception(fut, error)


class Response(concurrent.futures.Future):
    """The reply to one call: EasyCluster's non-blocking response and a standard Future.

    ``wait()``/``result()`` return the value or raise as the call's ``origexc`` says;
    ``have_response`` tells whether the reply is in. Works with
    ``concurrent.futures.wait`` and ``as_completed`` and done-callbacks (on a plain
    Client the reader's standby thread reads for them).

    The Future part is made on first use. Most responses are created, completed and
    read without anyone touching Future's machinery, and ``Future.__init__`` (a
    ``Condition``: an ``RLock``, bound methods, a deque; and garbage the collector walks
    while thousands are pending) cost more than the call itself. So a Response keeps
    its outcome in ``finished``/``value``/``error``, and the first use of anything of
    Future's that is not overridden here (``concurrent.futures.wait`` reading its state,
    ``add_done_callback``, ``cancel``, ``running()``...) runs ``Future.__init__`` and
    replays an outcome already in through the public ``set_result``/``set_exception``
    (``_base``). Only ``Future``'s public methods are called; an attribute Future looks
    for and does not find yet is what triggers the set-up (``_Unset``, below the class).
    A lock shared by all responses orders that set-up against a completion racing with
    it; the common path takes no lock at all.
    """

    pins: Any = None  # proxies the request carries, kept alive until its reply
    finished = False  # the outcome is in: ``value``, or ``error`` when not None
    value: Any = None
    error: Optional[BaseException] = None
    _base_ready = False  # Future.__init__ has run (see the class docstring)
    _delivered = False  # the Future part has been given its outcome, or cancelled

    def __init__(
        self, client: Any, reader: Any, request_id: int, origexc: Any = True, thread: int = 0
    ):
        # Future.__init__ is deliberately not called here: see _base
        self.thread = thread  # the server thread it runs on (for messages)
        self.client = client
        self.reader = reader
        self.request_id = request_id
        self.origexc = origexc

    def _base(self) -> None:
        """Set up the Future part now, replaying an outcome already in."""
        with _BASE_LOCK:
            if self._base_ready:
                return
            _Future.__init__(self)
            self._base_ready = True
            replay = self.finished and not self._delivered
            self._delivered = self._delivered or replay
        if replay:  # outside the lock: done-callbacks run here, and may make calls
            _set(self, self.value, self.error)

    @property
    def have_response(self) -> bool:
        return self.finished or self.done()

    def done(self) -> bool:
        return self.finished or (self._base_ready and _Future.done(self))

    def set_result(self, result: Any) -> None:
        self._complete(result, None)

    def set_exception(self, exception: Optional[BaseException]) -> None:
        self._complete(None, exception)

    def _complete(self, value: Any, error: Optional[BaseException]) -> None:
        """Record the outcome (InvalidStateError if there is one already, or the
        response was cancelled), and tell Future's machinery if it is in use.

        The outcome is stored before Future's machinery hears of it, so a done-callback
        (``acall``'s among them) always finds it. Exactly one of this, ``_base`` and
        ``cancel`` hands an outcome to the Future part (``_delivered``, decided under
        the lock); the hand-over runs outside the lock because it runs done-callbacks,
        which may start calls of their own. Either this sees ``_base_ready`` set or
        ``_base`` sees ``finished`` set (each is written before the other is read).
        """
        if self._base_ready:
            with _BASE_LOCK:
                if self._delivered:
                    raise concurrent.futures.InvalidStateError(f"{self!r}: already settled")
                self.value, self.error, self.finished = value, error, True
                self._delivered = True
            _set(self, value, error)
            return
        if self.finished:
            raise concurrent.futures.InvalidStateError(f"{self!r}: the outcome is in already")
        self.value, self.error, self.finished = value, error, True
        if self._base_ready:  # set up by another thread meanwhile
            with _BASE_LOCK:
                if self._delivered:
                    if _Future.cancelled(self):  # cancel won: the reply is dropped
                        self.finished = False
                    return
                self._delivered = True
            _set(self, value, error)

    def wait(self, timeout: Optional[float] = None, origexc: Any = None) -> Any:
        """Wait for the reply; return its value or raise (``CallTimeout`` on timeout;
        ``timeout=None`` is the client's ``call_timeout``, None: wait as long as it
        takes)."""
        if not self.finished:
            if timeout is None:
                timeout = self.client.call_timeout
            self.reader.wait_for(self, timeout)
            if not self.done():
                raise timeout_error(self.client, self.request_id, "", timeout, self.thread)
            if not self.finished:  # cancelled
                _Future.result(self, 0)  # raises CancelledError
        exc = self.error
        if exc is None:
            return self.value
        raise_reply(self.client, exc, self.origexc if origexc is None else origexc)

    def result(self, timeout: Optional[float] = None) -> Any:
        return self.wait(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if not self.done():
            self.reader.wait_for(self, timeout)
        if self.finished:
            return self.error
        return _Future.exception(self, 0)  # TimeoutError, or CancelledError

    def cancel(self) -> bool:
        """Stop waiting for the reply (False if it is already in). The call itself may
        still run remotely: the outcome is unknown, and a late reply is dropped."""
        self._base()
        with _BASE_LOCK:
            if self._delivered or self.finished:
                return _Future.cancelled(self)
            self._delivered = True  # the outcome is "cancelled": a late reply is refused
        _Future.cancel(self)  # outside the lock: it runs done-callbacks
        # No executor runs this future: do its step, which tells concurrent.futures
        # waiters about the cancellation.
        self.set_running_or_notify_cancel()
        self.reader.forget(self.request_id)
        return True

    def add_done_callback(self, fn: Callable[[Any], Any]) -> None:
        """As Future's; on a plain Client someone must read, so the reader watches."""
        self._base()
        _Future.add_done_callback(self, fn)
        if not self.done():
            self.reader.watch()

    def read_response(self, block: bool = True) -> None:
        self.reader.read_response(block)

    def set_response(self, val: Any) -> None:
        self.set_result(val)

    def fileno(self) -> int:
        return self.client.fileno()


class _Unset:
    """Future's own state on a Response whose Future part is not set up yet.

    One per attribute ``Future.__init__`` sets, on the class: it answers only while the
    instance has no value of that name (it defines no ``__set__``, so the instance's
    own, once ``Future.__init__`` has run, is found first and this is never asked
    again), by setting the Future part up and returning the instance's value. Not a
    ``__getattr__`` on the class: a class with one keeps CPython from specializing any
    attribute read on its instances, and a non-blocking call reads about a dozen
    (``wait``, ``done``, ``_complete``).
    """

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        if obj is None:
            return self
        obj._base()
        try:
            return obj.__dict__[self.name]
        except KeyError:  # (deleted since: absent, as on a plain Future)
            raise AttributeError(self.name) from None


for _name in vars(_Future()):  # (the names this Python's Future.__init__ sets)
    setattr(Response, _name, _Unset(_name))
del _name


NonblockingResponse = Response  # EasyCluster 0.22's name


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
            exc = _Future.exception(resp, 0)
        except concurrent.futures.CancelledError as e:  # cancelled here: an error too
            exc = e
        try:
            if exc is None:
                if ok_fn is not None:
                    ok_fn(_Future.result(resp, 0), *ok_args)
            elif err_fn is not None:
                err = exc if isinstance(exc, RemoteException) else RemoteException(exc, [])
                err_fn(err, *err_args)
        except Exception:
            import traceback

            sys.stderr.write("exception in an oncomplete/onerror callback:\n")
            traceback.print_exc()

    return run
