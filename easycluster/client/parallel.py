"""Many servers at once: ``call_multi`` & co. and ``ClientGroup``.

The ``*_multi`` functions send to every server first and collect afterwards, so the time
taken is close to the slowest server's, not the sum. Results come back in input order.
By default the first error (in input order) is raised once every call has finished, as
in EasyCluster; with ``return_exceptions=True`` each failing server's exception takes
its place in the list instead, so one dead host never hides the others' results.

Two more options, taken out of the keywords like ``return_exceptions`` (so a remote
function cannot receive keywords of these names through ``call_multi``):

* ``call_timeout=SECONDS`` bounds the whole fan-out: a server whose reply has not come
  by then gets a ``CallTimeout`` in its place (raised, as the first error, after the
  others were collected, unless ``return_exceptions``). The call may still be running
  there: see ``CallTimeout``. Replies that came in time are never lost to a slow
  server collected before them.
* ``on_result=callable`` is called as ``on_result(host, value_or_exception)`` for each
  server as its result is collected (in input order, on the calling thread), to show
  progress over many hosts. An exception it raises propagates at once.
"""

from __future__ import annotations

import selectors
import time

from ..errors import CallTimeout
from .client import Client
from .outcome import reply_error
from .posting import prepare
from .reader import Claim
from .threaded import ThreadedClient

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

    OnResult = Optional[Callable[[str, Any], Any]]


class _Options:
    """The fan-out's own keywords, taken out of the remote call's."""

    __slots__ = ("return_exceptions", "origexc", "call_timeout", "on_result")

    def __init__(
        self,
        return_exceptions: bool = False,
        origexc: Any = None,
        call_timeout: Optional[float] = None,
        on_result: OnResult = None,
    ):
        if call_timeout is not None and not call_timeout >= 0:
            raise ValueError(f"call_timeout must be a number of seconds >= 0, not {call_timeout!r}")
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be callable, not {type(on_result).__name__}")
        self.return_exceptions = return_exceptions
        self.origexc = origexc
        self.call_timeout = call_timeout
        self.on_result = on_result


def _give_up(r: Any) -> None:
    """A reply that did not come in time: nobody will wait for it again, so its entry in
    the reader's table goes (a ``Posted`` forgets its own; a Response is cancelled)."""
    cancel = getattr(r, "cancel", None)
    if cancel is not None:
        cancel()


def _fan_out(
    targets: Sequence[Any],
    send: Callable[[Any], Any],
    opts: _Options,
    raised: Optional[List[bool]] = None,
) -> List[Any]:
    """Each target's result, or the exception in its place; ``raised`` (if given) gets,
    per target, whether its call raised (an exception *returned* is a value)."""
    deadline = None if opts.call_timeout is None else time.monotonic() + opts.call_timeout
    started: List[Any] = []
    # this thread reads each reply in turn: the standby thread need not (``Claim``)
    claim = Claim() if len(targets) > 1 else None
    for t in targets:
        try:
            r = send(t)
        except Exception as e:  # e.g. one host's arguments fail to pickle: others go on
            started.append(e)
        else:
            started.append(r)
            if claim is not None:
                claim.take(r)
    results: List[Any] = []
    first_error: Optional[BaseException] = None
    for t, r in zip(targets, started):
        if isinstance(r, BaseException):
            exc: BaseException = r
        else:
            try:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                try:
                    # (a remote error comes as the RemoteException: how it is raised is
                    # decided below, only then, as origexc asks)
                    value = r.wait(left, origexc=False)
                finally:
                    if claim is not None:
                        claim.drop(r)
                        claim.progress()
            except BaseException as e:
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    # Ctrl-C here while waiting (even once the reply was in): the caller's,
                    # not this host's (a remote one comes as a RemoteException: origexc=False)
                    raise
                exc = reply_error(_client(t), e, _origexc(t, opts.origexc))
                if isinstance(e, CallTimeout) and not r.done():
                    _give_up(r)
                    if deadline is not None:
                        exc = _late(t, opts.call_timeout)
            else:
                results.append(value)
                if raised is not None:
                    raised.append(False)
                if opts.on_result is not None:
                    opts.on_result(_host(t), value)
                continue
        _name_host(exc, t)
        results.append(exc)
        if raised is not None:
            raised.append(True)
        if first_error is None:
            first_error = exc
        if opts.on_result is not None:
            opts.on_result(_host(t), exc)
    if first_error is not None and not opts.return_exceptions:
        raise first_error
    return results


def _posting(
    send: Callable[[Any], Any],
    verb: str,
    oid: int,
    meth: str,
    args: tuple,
    threadid: Optional[int] = None,
) -> Callable[[Any], Any]:
    """How a fan-out sends to each target: ``send`` (the target's ``verb`` method, which
    makes ``send_request(oid, meth, args)``), or, for a ``Client`` whose class leaves that
    path as ``Client`` has it, the request pickled once and posted (``posting.py``)."""
    main = prepare(oid, meth, args)
    if main is None:
        return send
    direct: Dict[type, bool] = {}  # per class of target: may it be posted to?

    def post(target: Any) -> Any:
        cls = target.__class__
        ok = direct.get(cls)
        if ok is None:
            ok = direct[cls] = issubclass(cls, Client) and all(
                getattr(cls, name) is getattr(Client, name)
                for name in (verb, "send_request", "post_prepared", "_thread_for_call")
            )
        if ok:
            return target.post_prepared(main, oid, meth, args, threadid)
        return send(target)

    return post


def _origexc(target: Any, given: Any) -> Any:
    """How a fan-out raises a remote exception: as ``origexc=`` given to it says, else
    as the target's client does (``Client(origexc=...)``), but never printing each
    host's traceback (the first error is raised, and notes name the hosts)."""
    if given is not None:
        return given
    return False if getattr(_client(target), "origexc", True) is False else "quiet"


def _late(target: Any, call_timeout: Optional[float]) -> CallTimeout:
    return CallTimeout(
        f"no reply from {_host(target)} within call_timeout={call_timeout:g} s; the outcome "
        "is unknown: the call may still be running there, and later calls on the same "
        "server thread wait behind it (use another threadid, or close this client)"
    )


def _client(target: Any) -> Any:
    """The client of a target: itself, or a proxy's connection. (Not getattr on a Client:
    its unknown attributes are the server's globals.)"""
    return target if isinstance(target, Client) else getattr(target, "proxy_connection", target)


def _host(target: Any) -> str:
    """The server a target (a client, or a proxy) talks to, as a name."""
    client = _client(target)
    return str(getattr(client, "peername", None) or client)


def _name_host(exc: BaseException, target: Any) -> None:
    """Say which server an error came from (as a note, where Python has notes)."""
    host = _host(target)
    if host and hasattr(exc, "add_note") and not getattr(exc, "_easycluster_noted", False):
        exc.add_note(f"(from {host})")
        try:
            # a mark on someone else's exception object: deliberately dynamic
            exc._easycluster_noted = True  # type: ignore[attr-defined]
        except AttributeError:
            pass


def _pop_opts(kw: dict) -> _Options:
    return _Options(
        kw.pop("return_exceptions", False),
        kw.pop("origexc", None),
        kw.pop("call_timeout", None),
        kw.pop("on_result", None),
    )


def call_multi(_connections: Iterable[Any], _func: str, *a: Any, **kw: Any) -> List[Any]:
    """Call ``_func(*a, **kw)`` on every connection in parallel; results in input order.

    ``return_exceptions``, ``origexc``, ``call_timeout`` and ``on_result`` are taken out
    of ``kw`` (module doc).
    """
    opts = _pop_opts(kw)
    conns = list(_connections)
    send = lambda c: c.raw_call(_func, a, kw, nonblocking=True)  # noqa: E731
    return _fan_out(conns, _posting(send, "raw_call", 0, "call", (_func, a, kw)), opts)


def call_each(
    connections: Iterable[Any],
    func: str,
    args: Sequence[Any],
    kwargs: Dict[str, Any],
    call_timeout: Optional[float] = None,
    threadid: Optional[int] = None,
) -> List[Tuple[bool, Any]]:
    """``func(*args, **kwargs)`` on every connection in parallel, in input order: per
    connection ``(True, value)`` when the call returned (an exception object returned is
    a value too), ``(False, exception)`` when it raised or never ran (the connection
    lost, ``call_timeout`` passed). Unlike ``call_multi`` no keyword is taken out of
    ``kwargs`` (all are the remote function's); ``call_timeout`` bounds the whole
    fan-out; ``threadid`` is each call's server thread (``messages.SINGLE``: one of its
    own, so a call stuck there holds up no later one). Ctrl-C while waiting raises."""
    opts = _Options(True, "quiet", call_timeout, None)
    extra = {} if threadid is None else {"threadid": threadid}
    send = lambda c: c.raw_call(func, args, kwargs, nonblocking=True, **extra)  # noqa: E731
    request = (func, tuple(args), kwargs or {})
    raised: List[bool] = []
    got = _fan_out(
        list(connections), _posting(send, "raw_call", 0, "call", request, threadid), opts, raised
    )
    return [(not r, value) for r, value in zip(raised, got)]


def eval_multi(
    connections: Iterable[Any],
    code: str,
    return_exceptions: bool = False,
    origexc: Any = None,
    call_timeout: Optional[float] = None,
    on_result: OnResult = None,
) -> List[Any]:
    """Evaluate ``code`` on every connection in parallel; results in input order."""
    opts = _Options(return_exceptions, origexc, call_timeout, on_result)
    return _code_multi("eval", "eval", connections, code, opts)


def execblock_multi(
    connections: Iterable[Any],
    code: str,
    return_exceptions: bool = False,
    origexc: Any = None,
    call_timeout: Optional[float] = None,
    on_result: OnResult = None,
) -> List[Any]:
    """Run ``code`` with ``execblock`` on every connection; ``exec_return`` values in order."""
    opts = _Options(return_exceptions, origexc, call_timeout, on_result)
    return _code_multi("execblock", "exec", connections, code, opts)


def _code_multi(
    verb: str, mode: str, connections: Iterable[Any], code: str, opts: _Options
) -> List[Any]:
    """``eval_multi``'s and ``execblock_multi``'s fan-out: the client method ``verb``
    (``eval`` or ``execblock``), which asks the server's ``eval`` in ``mode``."""
    send = lambda c: getattr(c, verb)(code, nonblocking=True)  # noqa: E731
    return _fan_out(list(connections), _posting(send, verb, 0, "eval", (code, mode)), opts)


def call_method_multi(_objects: Iterable[Any], _method: str, *a: Any, **kw: Any) -> List[Any]:
    """Call ``_method(*a, **kw)`` on every proxy in parallel; results in input order
    (the fan-out's own keywords as in ``call_multi``)."""
    opts = _pop_opts(kw)
    objs = list(_objects)
    return _fan_out(objs, lambda o: o.raw_call_method(_method, a, kw, nonblocking=True), opts)


class ClientGroup:
    """Reads replies for many plain Clients from one thread (``selectors``).

    ``read_responses`` runs completion callbacks and completes responses of whichever
    clients have data; it is how a single-threaded master waits on many servers.
    """

    def __init__(self, clients: Iterable[Any] = ()):
        self.clients: List[Any] = []
        for c in clients:
            self.add_client(c)

    def add_client(self, client: Any) -> None:
        if isinstance(client, ThreadedClient):
            raise TypeError(
                "ClientGroup works with plain Clients; a ThreadedClient reads replies by itself"
            )
        if client not in self.clients:
            self.clients.append(client)

    def remove_client(self, client: Any) -> None:
        if client in self.clients:
            self.clients.remove(client)

    def read_responses(self, timeout: Optional[float] = None, max: int = -1) -> int:
        """Wait until some client has data (or ``timeout``), read it; return how many
        clients were read. ``max`` > 0 caps that number."""
        live = [c for c in self.clients if c.connected]
        if not live:
            return 0
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            for c in live:
                sel.register(c.fileno(), selectors.EVENT_READ, c)
            left = None if deadline is None else deadline - time.monotonic()
            ready = sel.select(left)  # a negative timeout polls
        n = 0
        for key, _ in ready:
            if 0 < max <= n:
                break
            key.data.read_response(block=False)
            n += 1
        return n
