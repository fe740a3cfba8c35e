"""What the client says when a call cannot be sent: which call, which argument, and
what to do (the server's side of it, a return value, is ``remote/failures.py``)."""

from __future__ import annotations

from ..errors import EasyClusterError, UnpicklableError
from ..objects import serialize

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple


def _named_parts(
    oid: int, meth: str, args: Sequence[Any], kwargs: Dict[str, Any], target: Any
) -> Tuple[str, List[Tuple[str, Any]]]:
    """The call as the user wrote it, and its arguments with their names: the request's
    own layout differs by verb (a call by name carries the function's arguments inside
    its own)."""

    def listed(a: Sequence[Any], kw: Dict[str, Any]) -> List[Tuple[str, Any]]:
        return [(f"args[{i}]", x) for i, x in enumerate(a)] + [
            (f"keyword argument {k!r}", v) for k, v in kw.items()
        ]

    if oid != 0:
        return f"{meth}() of {target!r}", listed(args, kwargs)
    if meth == "call" and len(args) == 3 and isinstance(args[0], str):
        return f"{args[0]}()", listed(args[1], args[2] or {})
    if meth == "set_global" and len(args) == 2:
        return f"set_global({args[0]!r})", [("the value", args[1])]
    if meth == "setattr" and len(args) == 3:
        return f"setting {args[1]!r} on {args[0]!r}", [("the value", args[2])]
    return f"{meth}()", listed(args, kwargs)


def unpicklable_request(
    peername: str,
    oid: int,
    meth: str,
    args: Sequence[Any],
    kwargs: Optional[Dict[str, Any]],
    target: Any,
    error: BaseException,
    refs: Any,
) -> BaseException:
    """The error to raise for a request that failed to pickle with ``error``: an
    ``UnpicklableError`` naming the call, the server, the argument (and the part inside
    it) and its type; ``error`` itself when it is one of ours (a lost connection) or no
    single argument is to blame. ``refs`` is the connection's proxy table: it must not
    be collecting pins (probing pickles every argument again)."""
    if isinstance(error, EasyClusterError):
        return error
    call, parts = _named_parts(oid, meth, args, kwargs or {}, target)
    for what, value in parts:
        found = serialize.find_unpicklable(value, refs)
        if found is not None:
            path, part, reason = found
            return UnpicklableError.of(call, what, part, reason, path, host=peername)
    return error
