"""How a failed call is reported to the client: the remote traceback, a return value
that cannot be pickled, and a request naming a module this host lacks.

A remote traceback starts at the user's code: the frames of our dispatch (the
connection, the verbs) come first in every traceback and say nothing about the user's
error, so they are dropped. The source lines of ``define_common`` blocks, ``execblock``
and ``eval`` show because their texts are given to ``linecache`` where they run
(``definitions.run_block``, ``verbs.RootObject``, by way of ``objects/sources.py``).
"""

from __future__ import annotations

from types import FrameType, TracebackType

from ..errors import RemoteException, UnpicklableError
from ..objects import serialize

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional


def _ours(frame: FrameType) -> bool:
    """True for a frame of EasyCluster's own code. Definitions modules are named
    ``easycluster.*`` too (``easycluster.remote_code``) but hold the user's code, and
    so does what ``execblock`` and ``eval`` run in their namespace."""
    g = frame.f_globals
    if g.get("_easycluster_definitions"):
        return False
    name = g.get("__name__") or ""
    return name == "easycluster" or name.startswith("easycluster.")


def user_traceback(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    """``tb`` from its first frame of user code on; None when every frame is ours (the
    error was raised by our dispatch itself, say for a name that does not exist: its
    message says it all, and our frames would only hide that)."""
    while tb is not None and _ours(tb.tb_frame):
        tb = tb.tb_next
    return tb


def remote_exception(e: BaseException) -> RemoteException:
    """What the client gets for an exception raised by a call: the exception and its
    traceback lines, from the user's code on (see the module docstring)."""
    import traceback  # (on the first failure: a server that has none never loads it)

    text = traceback.format_exception(type(e), e, user_traceback(e.__traceback__))
    return RemoteException(e, text)


def missing_module(e: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error for a request naming a module this server cannot import: a function
    (or class) of a module other than the master's ``__main__`` is pickled by reference,
    its module's name and its own, and the server imports that module to rebuild it."""
    name = e.name or str(e)
    return ModuleNotFoundError(
        f"No module named {name!r} on this server: the call's function (or an argument) "
        f"comes from module {name!r}, which is sent by reference (only __main__'s "
        "functions travel by value) and is not importable here; define the function "
        "with define_common(), install or ship the module to this host, or have it sent "
        f"by value (cloudpickle.register_pickle_by_value({name.split('.')[0]}) on the master)",
        name=e.name,
    )


def call_name(request: Any, table: Any) -> str:
    """A request as the user wrote the call: ``func()`` for a call by name,
    ``Class.method()`` for a method of a server object, else the verb."""
    try:
        oid, method, args, _kwargs = request
        if oid == 0:
            if method == "call" and args and isinstance(args[0], str):
                return f"{args[0]}()"
            if method == "eval" and len(args) > 1:
                return "execblock()" if args[1] == "exec" else "eval()"
            if method == "getattr" and len(args) > 1:
                return f"{type(args[0]).__qualname__}.{args[1]}"
            return f"{method}()"
        return f"{type(table.get(oid)).__qualname__}.{method}()"
    except Exception:  # (an object released meanwhile): a vaguer name will do
        return "the call"


def unpicklable_return(
    request: Any, value: Any, error: BaseException, table: Any
) -> RemoteException:
    """The reply for a call whose return ``value`` failed to pickle with ``error``: an
    ``UnpicklableError`` naming the call, the part of the value that failed and its
    type (the client adds its name for the server). ``table`` is the connection's
    object table; its dry hooks let server objects inside the value count as sendable,
    as they are, without touching their reference counts."""
    found = serialize.find_unpicklable(value, table.dry_refs())
    path, part, reason = found if found is not None else ("", value, error)
    err = UnpicklableError.of(call_name(request, table), "the return value", part, reason, path)
    # No frames: the failure is in our pickling, after the user's code returned.
    import traceback

    return RemoteException(err, traceback.format_exception_only(type(err), err))


def unsendable_exception(value: Any, err: BaseException) -> RemoteException:
    """A RuntimeError that describes ``value`` (an exception, or a ``RemoteException``),
    for when ``value`` itself could not be pickled (``err``)."""
    orig = value.orig if isinstance(value, RemoteException) else value
    text = value.text if isinstance(value, RemoteException) else []
    desc = f"{type(orig).__module__}.{type(orig).__qualname__}: {orig}"
    return RemoteException(
        RuntimeError(
            f"{desc} (the remote exception could not be sent: {type(err).__name__}: {err})"
        ),
        text,
    )
