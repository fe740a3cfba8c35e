"""What a blocking call needs of its outcome, without ``concurrent.futures``: ``Slot``
(where the reply lands when the calling thread reads it itself), the ``origexc`` default
and rule (``raise_reply``), and the timeout's error. ``response.py`` (``Response``, the
Future) builds on these; ``client.py`` loads it only when a call first needs a Response,
so a script that only makes blocking calls on a plain client never imports
``concurrent.futures`` (about 5 ms with ``logging``: a fifth of the master's start-up).
"""

from __future__ import annotations

from ..errors import CallTimeout, RemoteException

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple, Union

    Callback = Union[Callable[..., Any], Tuple[Any, ...], None]

ORIGEXC_VALUES = (True, False, "quiet")


class _ClientOrigexc:
    """``send_request``'s default ``origexc``: the client's own (``Client(origexc=...)``),
    which is True unless set there. It compares equal to True, 0.22's default, so code
    that reads the signature (ours checks it against 0.22's) sees that default."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return other is True or other is self

    def __hash__(self) -> int:
        return hash(True)

    def __repr__(self) -> str:
        return "<the client's origexc>"


CLIENT_ORIGEXC: Any = _ClientOrigexc()


class Slot:
    """Where a blocking call's reply lands when the calling thread reads it itself."""

    __slots__ = ("value", "exc", "finished", "pins")

    def __init__(self) -> None:
        self.pins: Any = None
        self.value: Any = None
        self.exc: Optional[BaseException] = None
        self.finished = False

    def done(self) -> bool:
        return self.finished

    def set_result(self, value: Any) -> None:
        self.value, self.finished = value, True

    def set_exception(self, exc: BaseException) -> None:
        self.exc, self.finished = exc, True


def raise_reply(client: Any, exc: BaseException, origexc: Any) -> None:
    """Raise a call's error as its ``origexc`` asks: the remote exception itself (after
    ``client.report_exception``, unless ``"quiet"``), or with ``origexc=False`` the
    ``RemoteException`` wrapping it."""
    raise reply_error(client, exc, origexc)


def reply_error(client: Any, exc: BaseException, origexc: Any) -> BaseException:
    """The error ``raise_reply`` raises (reporting it as that does)."""
    if isinstance(exc, RemoteException) and origexc is not False and exc.orig is not None:
        if origexc != "quiet":
            client.report_exception(exc)
        return exc.orig
    return exc


def timeout_error(
    client: Any, rid: int, what: str, timeout: Optional[float], thread: Optional[int] = None
) -> CallTimeout:
    """The error of a call whose reply did not come in time: what happened, and what to
    do about the call that may still be running (docs/timeouts.md)."""
    call = f"{what} (request {rid})" if what else f"request {rid}"
    on = "the same server thread" if thread is None else f"server thread {thread}"
    return CallTimeout(
        f"no reply to {call} from {client.peername} within {timeout:g} s; the "
        f"outcome is unknown: the call may still be running there, and later calls on "
        f"{on} wait until it ends. To go on at once, call with another threadid= "
        "(or run long calls with their own threadid from the start), or close this "
        "client and connect again (which ends the server's calls)"
    )


def invalid_state() -> Any:
    """``concurrent.futures.InvalidStateError``, looked up when an exception is matched
    against it (only a Response raises it, so its module is loaded already)."""
    import concurrent.futures

    return concurrent.futures.InvalidStateError


def settle(setter: Callable[[Any], None], value: Any) -> None:
    """Complete a reply once: a close racing with the reader must not raise in either."""
    try:
        setter(value)
    except invalid_state():
        pass
