"""Many servers at once: ``call_multi`` & co. and ``ClientGroup``.

The ``*_multi`` functions send to every server first and collect afterwards, so the time
taken is close to the slowest server's, not the sum. Results come back in input order.
By default the first error (in input order) is raised once every call has finished, as
in EasyCluster; with ``return_exceptions=True`` each failing server's exception takes
its place in the list instead, so one dead host never hides the others' results.
"""

from __future__ import annotations

import selectors
import time
from typing import Any, Callable, Iterable, List, Optional, Sequence

from .threaded import ThreadedClient


def _fan_out(
    targets: Sequence[Any], send: Callable[[Any], Any], return_exceptions: bool, origexc: Any
) -> List[Any]:
    started: List[Any] = []
    for t in targets:
        try:
            started.append(send(t))
        except Exception as e:  # e.g. one host's arguments fail to pickle: others go on
            started.append(e)
    results: List[Any] = []
    first_error: Optional[BaseException] = None
    for t, r in zip(targets, started):
        if isinstance(r, BaseException):
            exc: BaseException = r
        else:
            try:
                results.append(r.wait(origexc=origexc if origexc is not None else "quiet"))
                continue
            except BaseException as e:  # the remote exception, as origexc asks
                exc = e
        _name_host(exc, t)
        results.append(exc)
        if first_error is None:
            first_error = exc
    if first_error is not None and not return_exceptions:
        raise first_error
    return results


def _name_host(exc: BaseException, target: Any) -> None:
    """Say which server an error came from (as a note, where Python has notes)."""
    client = getattr(target, "proxy_connection", target)
    host = getattr(client, "peername", None)
    if host and hasattr(exc, "add_note") and not getattr(exc, "_easycluster_noted", False):
        exc.add_note(f"(from {host})")
        try:
            # a mark on someone else's exception object: deliberately dynamic
            exc._easycluster_noted = True  # type: ignore[attr-defined]
        except AttributeError:
            pass


def _pop_opts(kw: dict) -> tuple:
    return kw.pop("return_exceptions", False), kw.pop("origexc", None)


def call_multi(_connections: Iterable[Any], _func: str, *a: Any, **kw: Any) -> List[Any]:
    """Call ``_func(*a, **kw)`` on every connection in parallel; results in input order.

    ``return_exceptions=True`` (taken out of ``kw``) puts each failure in the list.
    """
    return_exceptions, origexc = _pop_opts(kw)
    conns = list(_connections)
    return _fan_out(
        conns, lambda c: c.raw_call(_func, a, kw, nonblocking=True), return_exceptions, origexc
    )


def eval_multi(
    connections: Iterable[Any], code: str, return_exceptions: bool = False, origexc: Any = None
) -> List[Any]:
    """Evaluate ``code`` on every connection in parallel; results in input order."""
    conns = list(connections)
    return _fan_out(conns, lambda c: c.eval(code, nonblocking=True), return_exceptions, origexc)


def execblock_multi(
    connections: Iterable[Any], code: str, return_exceptions: bool = False, origexc: Any = None
) -> List[Any]:
    """Run ``code`` with ``execblock`` on every connection; ``exec_return`` values in order."""
    conns = list(connections)
    return _fan_out(
        conns, lambda c: c.execblock(code, nonblocking=True), return_exceptions, origexc
    )


def call_method_multi(_objects: Iterable[Any], _method: str, *a: Any, **kw: Any) -> List[Any]:
    """Call ``_method(*a, **kw)`` on every proxy in parallel; results in input order."""
    return_exceptions, origexc = _pop_opts(kw)
    objs = list(_objects)
    return _fan_out(
        objs,
        lambda o: o.raw_call_method(_method, a, kw, nonblocking=True),
        return_exceptions,
        origexc,
    )


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
