"""Definitions modules (``define_common``) and dotted-name lookup, shared by both ends.

A definitions module is a virtual module registered in ``sys.modules`` (by default
``easycluster.remote_code``) that starts with EasyCluster 0.22's public names bound
(``PREAMBLE_NAMES``, what 0.22's ``from easycluster import *`` gave). Code given to
``define_common`` runs in it locally (unless ``local=False``) and is recorded, so every
client can send all recorded blocks to a new server on connect, and the new ones with
``update_definitions()``. Because the module exists on both ends under the same name,
its functions and classes are pickled by reference.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import sys
import threading
import types

from . import sources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Tuple

DEFAULT_MODULE = "easycluster.remote_code"

# The blocks given to define_common, in order: (module name, source). Append-only, so a
# client remembers how many it has sent. This is API state, not configuration.
_blocks: List[Tuple[str, str]] = []
_lock = threading.RLock()  # re-entrant: a block may call define() itself


class ExecReturn(BaseException):
    """Raised by ``exec_return`` to end an ``execblock`` with a value."""

    def __init__(self, value: Any):
        super().__init__(value)
        self.value = value


def exec_return(rval: Any = None) -> None:
    """Inside code run by ``execblock``: stop and make ``execblock`` return ``rval``."""
    raise ExecReturn(rval)


def definitions_module(name: str = DEFAULT_MODULE, keep_source: bool = True) -> types.ModuleType:  # noqa: ARG001 - EasyCluster signature
    """Return the definitions module ``name``, creating it (empty but for the preamble).

    Raises ImportError if ``name`` is a real module, or if the parent of a dotted name
    does not exist.
    """
    mod = sys.modules.get(name)
    if mod is not None:
        if not getattr(mod, "_easycluster_definitions", False):
            raise ImportError(f"{name!r} is an existing module, not a definitions module")
        return mod
    parent_name, _, leaf = name.rpartition(".")
    parent = None
    if parent_name:
        parent = sys.modules.get(parent_name)
        if parent is None:
            try:
                parent = importlib.import_module(parent_name)
            except ImportError:
                raise ImportError(
                    f"cannot create definitions module {name!r}: "
                    f"its parent {parent_name!r} does not exist"
                )
    mod = types.ModuleType(name, "EasyCluster definitions module")
    mod._easycluster_definitions = True  # type: ignore[attr-defined]
    mod._source_code = []  # type: ignore[attr-defined]
    exec(_compiled(_preamble()), mod.__dict__)

    def define(code: str, local: bool = True) -> None:
        define_common(code, name, local)

    mod.define = define  # type: ignore[attr-defined]
    sys.modules[name] = mod
    if parent is not None:
        setattr(parent, leaf, mod)
    return mod


# What a definitions module's preamble binds: EasyCluster 0.22's ``__all__`` (its
# definitions modules began with ``from easycluster import *``). Not our whole
# ``__all__``: node sets and the cluster layer would cost every server ~30 ms to load.
PREAMBLE_NAMES = (
    "AutoThreadingClient",
    "ThreadedClient",
    "Client",
    "ClientGroup",
    "Connection",
    "DefaultRemoteProxy",
    "RemoteException",
    "RemoteProxy",
    "SelfIterProxy",
    "ServerObject",
    "add_key_options",
    "call_method_multi",
    "call_multi",
    "decode_key",
    "define_common",
    "definitions_module",
    "eval_multi",
    "exec_return",
    "execblock_multi",
    "generate_key",
    "key_from_options",
    "make_server_class",
    "make_singleton",
    "read_key_file",
    "write_key_file",
    "parse_connection_spec",
)


def _preamble() -> str:
    """The preamble's source: the names of ``PREAMBLE_NAMES`` this process's package
    has (a server started over ssh carries only the server's modules)."""
    have = set(getattr(sys.modules.get("easycluster"), "__all__", ()) or ())
    if not have:
        exec("import easycluster", {})
        have = set(getattr(sys.modules.get("easycluster"), "__all__", ()))
    names = [n for n in PREAMBLE_NAMES if n in have]
    return f"from easycluster import {', '.join(names)}" if names else ""


@functools.lru_cache(maxsize=4)
def _compiled(source: str) -> types.CodeType:
    """``source`` compiled once (a new definitions module runs the preamble: a zygote's
    children inherit the code object instead of compiling it again)."""
    return compile(source, "<easycluster preamble>", "exec", dont_inherit=True)


def warm_up() -> None:
    """Import what a new definitions module's preamble binds (for a process that forks
    servers: its children then start warm)."""
    exec(_compiled(_preamble()), {})


BLOCK_FILE = "<define_common {name} {digest}>"  # a block's file name in tracebacks


def run_block(name: str, code: str) -> None:
    """Execute one block of source in definitions module ``name``. Its source goes into
    ``linecache`` (by way of ``sources.py``) under a name of its own, so tracebacks
    through its functions (here, and formatted on a server for the client) show its
    lines."""
    mod = definitions_module(name)
    filename = BLOCK_FILE.format(name=name, digest=sources.digest(code))
    sources.remember(filename, code)
    exec(compile(code, filename, "exec", dont_inherit=True), mod.__dict__)


def define_common(code: str, name: str = DEFAULT_MODULE, local: bool = True) -> None:
    """Add ``code`` to definitions module ``name``; run it locally too unless ``local=False``.

    Clients connected later send every block on connect; connected clients send new
    blocks with ``update_definitions()``. If the local run raises, the block is not
    recorded.
    """
    if not isinstance(code, str):
        raise TypeError("define_common takes source code as a str")
    with _lock:
        mod = definitions_module(name)
        if local:
            run_block(name, code)
        mod._source_code.append(code)
        _blocks.append((name, code))


def blocks_since(index: int) -> Tuple[int, List[Tuple[str, str]]]:
    """Blocks recorded from position ``index`` on, and the new end position."""
    with _lock:
        return len(_blocks), list(_blocks[index:])


def get_global(
    name: str, context: Optional[types.ModuleType] = None, auto_import: bool = False
) -> Any:
    """Resolve dotted ``name`` in ``context`` (then builtins), importing modules if asked.

    With ``auto_import``, ``os.path.join`` imports ``os`` and binds it in ``context``,
    and a missing attribute of a module is tried as a submodule.
    """
    if context is not None and "." not in name:  # the common case: a plain global
        try:
            return context.__dict__[name]
        except KeyError:
            pass
    first, *rest = name.split(".")
    ns = context.__dict__ if context is not None else {}
    if first in ns:
        obj = ns[first]
    elif hasattr(builtins, first):
        obj = getattr(builtins, first)
    elif auto_import:
        try:
            obj = importlib.import_module(first)
        except ModuleNotFoundError as e:
            if e.name != first:
                raise
            where = context.__name__ if context is not None else "the context"
            raise NameError(
                f"name {first!r} is not defined (not in {where}, not a builtin, "
                "not an importable module)"
            ) from None
        if context is not None:
            ns[first] = obj
    else:
        raise NameError(f"name {first!r} is not defined")
    path = first
    for attr in rest:
        path = f"{path}.{attr}"
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            if not (auto_import and isinstance(obj, types.ModuleType)):
                raise
            obj = importlib.import_module(path)
    return obj


def set_global(name: str, value: Any, context: Optional[types.ModuleType] = None) -> None:
    """Set dotted ``name`` (relative to ``context``) to ``value``."""
    head, _, leaf = name.rpartition(".")
    if not head:
        if context is None:
            raise ValueError("set_global needs a context module for a plain name")
        setattr(context, leaf, value)
        return
    setattr(get_global(head, context, auto_import=True), leaf, value)
