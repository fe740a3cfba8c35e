"""Pickling for the wire: cloudpickle, protocol 5, out-of-band buffers, object references.

The only module that pickles or unpickles. Callers must only ``loads`` data whose MAC has
been verified (the wire layer guarantees that for everything it hands out).

cloudpickle is imported on first need: the first pickle of something the C pickler alone
cannot take (``dumps_full``, ``find_unpicklable``). Unpickling never needs it up front:
a pickle that names cloudpickle's helpers imports them by name. So a server that only
ever sees plain data never loads it (about 8 ms of a remote server's start-up).

- Functions, lambdas and closures of the master's ``__main__`` travel by value
  (cloudpickle); functions of importable modules, including definitions modules made by
  ``define_common``, travel by reference.
- Large ``bytes``/``bytearray`` and numpy arrays travel as out-of-band buffers: the sender
  hands the wire its memory without copying it into the pickle stream, and the receiver
  rebuilds arrays and bytearrays on top of the received buffer.
- ``refs`` (optional) lets a connection replace objects by references while pickling
  (``refs.reduce(obj)`` returns a reduce tuple, made with ``reference(...)``, or
  ``None``) and resolve them while unpickling (``refs.resolve(*args)``, found through a
  thread-local so that the fast C ``pickle.loads`` does the work); this is how server
  objects become proxies.
"""

from __future__ import annotations

import _pickle as pickle  # the C module: pickle.py imports re and enum (~2 ms per start)
import functools
import io
import struct
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Protocol, Sequence, Tuple

    class RefHooks(Protocol):
        def reduce(self, obj: Any) -> Optional[tuple]: ...

        def resolve(self, *args: Any) -> Any: ...


PROTOCOL = 5
OOB_MIN = 1 << 16  # below this, copying into the pickle stream is cheaper than a buffer


class _Current(threading.local):
    refs: Optional[RefHooks] = None


_current = _Current()
# For a server's usual call, the C functions themselves (no Python call around them):
# ``loads_here(data, buffers=...)`` is ``loads`` while ``current.refs`` is the connection's
# (``use_refs`` sets it); ``dumps_scalar(obj, PROTOCOL)`` pickles a number or None as
# ``dumps`` would (no reference or buffer can be in one).
current = _current
loads_here = pickle.loads
dumps_scalar = pickle.dumps
SCALARS = frozenset((int, float, bool, type(None)))


def _resolve_ref(*args: Any) -> Any:
    """Unpickling an object reference: resolved by the connection whose data this is."""
    refs = _current.refs
    if refs is None:
        raise pickle.UnpicklingError("an object reference arrived outside a connection")
    return refs.resolve(*args)


class _BigBytes:
    """Stand-in for a large ``bytes`` so it is sent out of band (pickle never calls
    ``reducer_override`` for exact ``bytes``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (bytes, (pickle.PickleBuffer(self.data),))


def wrap_large(obj: Any, depth: int = 2) -> Any:
    """``obj`` with large ``bytes`` in tuples, lists and dict values (down to ``depth``
    levels) replaced by stand-ins that pickle them out of band; the same object when
    there are none. Callers apply it to user payloads (pickle never lets a reducer see
    an exact ``bytes``, so this is the only way to keep them out of the stream)."""
    t = type(obj)
    if t is bytes:
        return _BigBytes(obj) if len(obj) >= OOB_MIN else obj
    if depth == 0 or not (t is tuple or t is list or t is dict):
        return obj
    if t is dict:
        out_d: Optional[dict] = None
        for k, v in obj.items():
            w = wrap_large(v, depth - 1)
            if w is not v and out_d is None:
                out_d = dict(obj)
            if out_d is not None:
                out_d[k] = w
        return obj if out_d is None else out_d
    out: Optional[list] = None  # copied only from the first change on
    for i, x in enumerate(obj):
        w = wrap_large(x, depth - 1) if type(x) in _WRAPPED else x  # skip scalars quickly
        if w is not x and out is None:
            out = list(obj[:i])
        if out is not None:
            out.append(w)
    if out is None:
        return obj
    return tuple(out) if t is tuple else out


_WRAPPED = frozenset((bytes, tuple, list, dict))


@functools.cache
def pickler_class() -> Any:
    """The full pickler: cloudpickle's, with the connection's references (imported and
    made on first call)."""
    import cloudpickle

    class Pickler(cloudpickle.Pickler):
        def __init__(self, file: Any, refs: Optional[RefHooks], buffer_callback: Any):
            super().__init__(file, protocol=PROTOCOL, buffer_callback=buffer_callback)
            self._refs = refs

        def reducer_override(self, obj: Any) -> Any:
            refs = self._refs
            if refs is not None:
                r = refs.reduce(obj)
                if r is not None:
                    return r
            return super().reducer_override(obj)

    return Pickler


def reference(*args: Any) -> tuple:
    """A reduce tuple that ``refs.resolve(*args)`` will turn back into an object."""
    return (_resolve_ref, args)


class _NotPlain(Exception):
    """Raised inside the plain pickler: this object needs the full (cloudpickle) path."""


class _PlainSink:
    """The plain pickler's file. A small pickle arrives in one write at the end of
    ``dump``; a large one in frames of about 64 KiB (each a FRAME opcode and its length,
    the first after the protocol header), kept and joined. A write of 64 KiB or more that
    is not a frame is a large payload (a big bytes or str) the C pickler streamed past
    its buffer: the full path must send it out of band instead, so the plain path ends.
    (Only speed depends on telling them apart: either way the pickle is whole.)"""

    __slots__ = ("data", "more")

    def __init__(self) -> None:
        self.data: Optional[bytes] = None
        self.more: List[bytes] = []  # the frames after the first write

    def write(self, data: bytes) -> None:
        if self.data is None:
            self.data = data
        elif len(data) >= _FRAME_MIN and not _is_frame(data):
            raise _NotPlain
        else:
            self.more.append(data)

    def take(self) -> Optional[bytes]:
        """The whole pickle (and the sink emptied for the next)."""
        data, more = self.data, self.more
        self.data = None
        if more:
            self.more = []
            return b"".join([data or b"", *more])
        return data


_FRAME_MIN = 1 << 16  # the C pickler writes payloads this large on their own
_FRAME = struct.Struct("<BQ")  # the FRAME opcode (0x95) and its payload length


def _is_frame(data: bytes) -> bool:
    """A whole pickle frame: its header declares the rest of ``data``."""
    if len(data) < _FRAME.size:
        return False
    op, length = _FRAME.unpack_from(data)
    return op == 0x95 and length == len(data) - _FRAME.size


class _PlainPickler(pickle.Pickler):
    """The C pickler alone, for plain data. It never asks ``reducer_override`` about
    None, bools, ints, floats, str, bytes, bytearray, tuples, lists, dicts and sets; for
    anything else (a function, a proxy, an instance) it does, and we bail out."""

    def reducer_override(self, obj: Any) -> Any:
        raise _NotPlain


class _Reusable(threading.local):
    """Picklers per thread, reused: building a cloudpickle Pickler costs more than
    pickling a small call."""

    def __init__(self) -> None:
        self.file = io.BytesIO()
        self.buffers: List[pickle.PickleBuffer] = []
        self.pickler: Any = None  # the full pickler, made on this thread's first need
        self.busy = False
        sink = _PlainSink()
        self.plain_pair = (sink, _PlainPickler(sink, PROTOCOL))  # one thread-local lookup


_reusable = _Reusable()


def dumps(
    obj: Any, refs: Optional[RefHooks] = None, depth: int = 0
) -> Tuple[bytes, List[pickle.PickleBuffer]]:
    """Pickle ``obj``; return the pickle stream and its out-of-band buffers.

    Plain data goes through ``dumps_plain``; anything else through cloudpickle and
    ``refs``, with large bytes down to ``depth`` levels sent out of band (see
    ``wrap_large``).
    """
    data = dumps_plain(obj)
    if data is not None:
        return data, []
    return dumps_full(obj, refs, depth)


def dumps_plain(obj: Any) -> Optional[bytes]:
    """The pickle of ``obj`` if it is plain data (containers of numbers, strings and
    small bytes), made by the C pickler alone (the common case, several times faster
    than cloudpickle); None for anything else. References are never involved."""
    r = _reusable
    if r.busy:  # inside a full pickling (a reducer pickling something itself)
        return None
    sink, plain = r.plain_pair
    try:
        plain.dump(obj)
        return sink.take()
    except _NotPlain:
        sink.take()
        return None
    finally:
        plain.clear_memo()


def dumps_full(
    obj: Any, refs: Optional[RefHooks] = None, depth: int = 0
) -> Tuple[bytes, List[pickle.PickleBuffer]]:
    """``dumps`` without the plain-data shortcut (see there)."""
    return _dumps_full(wrap_large(obj, depth) if depth else obj, refs)


def _dumps_full(obj: Any, refs: Optional[RefHooks]) -> Tuple[bytes, List[pickle.PickleBuffer]]:
    r = _reusable
    if r.busy:  # re-entered (a reducer pickling something itself): use a fresh pickler
        buffers: List[pickle.PickleBuffer] = []
        f = io.BytesIO()
        pickler_class()(f, refs, buffers.append).dump(obj)
        return f.getvalue(), buffers
    if r.pickler is None:
        r.pickler = pickler_class()(r.file, None, r.buffers.append)
    r.busy = True
    p, f = r.pickler, r.file
    try:
        f.seek(0)
        f.truncate()
        p.clear_memo()
        p.globals_ref = {}  # cloudpickle's per-pickle table of function globals
        p._refs = refs
        p.dump(obj)
        buffers, r.buffers[:] = list(r.buffers), []
        return f.getvalue(), buffers
    except BaseException:
        r.buffers.clear()
        raise
    finally:
        p.clear_memo()  # the memo holds what was pickled: let it go now
        p.globals_ref = {}
        p._refs = None
        r.busy = False


def loads(main: Any, buffers: Sequence[Any] = (), refs: Optional[RefHooks] = None) -> Any:
    """Unpickle what ``dumps`` produced. Only ever call this on authenticated data."""
    current = _current
    if refs is None or current.refs is refs:
        return pickle.loads(main, buffers=buffers)
    saved, current.refs = current.refs, refs
    try:
        return pickle.loads(main, buffers=buffers)
    finally:
        current.refs = saved


def use_refs(refs: Optional[RefHooks]) -> Optional[RefHooks]:
    """Make ``refs`` this thread's resolver until the next call; return the previous one.

    A reader that unpickles a batch of messages for one connection sets it once (and
    restores it after), so each ``loads`` need not swap it.
    """
    saved, _current.refs = _current.refs, refs
    return saved


class _Discard:
    """A file that drops what is written: a probe only asks whether pickling works."""

    __slots__ = ()

    def write(self, data: Any) -> None:
        pass


def _pickles(obj: Any, refs: Optional[RefHooks]) -> Optional[BaseException]:
    """None if ``obj`` pickles (as ``dumps`` would, with ``refs``), else the error."""
    try:
        pickler_class()(_Discard(), refs, lambda _buf: None).dump(obj)
    except Exception as e:  # whatever pickling raises (TypeError, PicklingError, ...)
        return e
    return None


_OBJECT_GETSTATE = getattr(object, "__getstate__", None)  # (Python >= 3.11 has one)


def _parts(obj: Any) -> List[Tuple[str, Any]]:
    """The parts of ``obj`` a pickle is made of, with their paths (``[1]``, ``['k']``,
    ``.attr``); empty for anything else (a set, a class pickled its own way)."""
    if isinstance(obj, (list, tuple)):
        return [(f"[{i}]", x) for i, x in enumerate(obj)]
    if isinstance(obj, dict):
        return [(f"[{k!r}]", v) for k, v in obj.items()]
    t = type(obj)
    if (
        t.__reduce_ex__ is not object.__reduce_ex__
        or t.__reduce__ is not object.__reduce__
        or getattr(t, "__getstate__", None) not in (None, _OBJECT_GETSTATE)
    ):
        return []  # pickled its own way: its __dict__ is not what travels
    try:
        state = vars(obj)
    except TypeError:  # no __dict__ (slots, builtins)
        return []
    return [(f".{k}", v) for k, v in state.items()]


# Types that always pickle: skipped without a probe, so a huge list of numbers with one
# lock in it is searched quickly.
_ATOMIC = frozenset((type(None), bool, int, float, complex, str, bytes, bytearray))
PROBES_MAX = 2000  # parts probed at most when looking for the culprit


def find_unpicklable(
    obj: Any, refs: Optional[RefHooks] = None, depth: int = 8
) -> Optional[Tuple[str, Any, BaseException]]:
    """Where pickling ``obj`` fails: ``(path, part, error)`` for the innermost part that
    fails on its own (``path`` like ``[1]['key'].attr``, ``""`` for ``obj`` itself), or
    None when ``obj`` pickles.

    For error messages only: it pickles each level again, so call it after a failure,
    never on the way of a call that works. It probes at most ``PROBES_MAX`` parts (then
    the innermost container found so far is blamed) and ``depth`` levels. ``refs`` must
    have no side effects: its ``reduce`` runs again for every part probed.
    """
    return _find(obj, refs, depth, [PROBES_MAX])


def _find(
    obj: Any, refs: Optional[RefHooks], depth: int, budget: List[int]
) -> Optional[Tuple[str, Any, BaseException]]:
    budget[0] -= 1
    error = _pickles(obj, refs)
    if error is None:
        return None
    if depth > 0:
        for path, part in _parts(obj):
            if type(part) in _ATOMIC:
                continue
            if budget[0] <= 0:
                break
            found = _find(part, refs, depth - 1, budget)
            if found is not None:
                return path + found[0], found[1], found[2]
    return "", obj, error
