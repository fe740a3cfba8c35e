"""The remote verbs: what object id 0 (the root object of every connection) can do.

``RootObject.verb_<name>`` runs when a client sends method ``<name>`` to object 0:
calling a global by dotted name, getting and setting globals, ``eval``/``execblock``,
importing modules, definitions blocks, and the attribute access behind proxies.
"""

from __future__ import annotations

import collections
import importlib
import os
import sys
import threading

from ..errors import DefinitionsError
from ..objects import definitions
from ..objects.sources import digest as source_digest
from ..objects.sources import forget as forget_source
from ..objects.sources import remember as remember_source
from ..version import VERSION
from . import commands  # noqa: F401 - the RPC backend calls it by name
from . import output as remote_output

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple


def apply(func: Any, *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)``: what a client calls to run a callable it sent (the
    cluster layer's ``Cluster.call(function)``)."""
    return func(*args, **kwargs)


SOURCES_KEPT = 64  # execblock/eval sources kept for tracebacks, per connection


class RootObject:
    """Object id 0 on every connection; its ``verb_*`` methods are the remote verbs."""

    def __init__(self, conn: Any):  # the ServerConnection
        self.conn = conn
        # file names of the execblock/eval sources in linecache, oldest first
        self._sources: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._sources_lock = threading.Lock()  # server threads may eval at the same time

    def _compile(self, code: str, mode: str) -> Any:
        """``code`` compiled under a file name of its own whose source ``linecache``
        knows, so a traceback through it shows its lines (as for define_common blocks).
        The last ``SOURCES_KEPT`` are kept: a script may send endless distinct blocks."""
        kind = "eval" if mode == "eval" else "execblock"
        filename = f"<remote {kind} {source_digest(code)}>"
        sources = self._sources
        with self._sources_lock:
            if filename in sources:
                sources.move_to_end(filename)
            else:
                sources[filename] = None
                if len(sources) > SOURCES_KEPT:
                    forget_source(sources.popitem(last=False)[0])
            remember_source(filename, code)
        return compile(code, filename, mode)

    @property
    def context(self) -> Any:
        return self.conn.context

    def verb_hello(
        self, module: str, blocks: List[Tuple[str, str]], output: bool = False
    ) -> Dict[str, Any]:
        """Set up the connection: definitions blocks, the definitions module, and (if the
        client asks) remote print forwarded to it (``output.py``)."""
        if output and self.conn.output is None:
            self.conn.output = remote_output.install(self.conn.channel)
        self.verb_update_definitions(blocks)
        self.conn.context = definitions.definitions_module(module)
        return {"version": VERSION, "pid": os.getpid(), "python": sys.version_info[:3]}

    def verb_update_definitions(self, blocks: List[Tuple[str, str]]) -> None:
        for name, code in blocks:
            mod = definitions.definitions_module(name)
            # a definitions module is a plain module: its globals are set at run time
            mod.running_server = self.conn  # type: ignore[attr-defined]
            try:
                definitions.run_block(name, code)
            except Exception as e:  # the client names the host and says what to do
                python = f"{sys.executable} {sys.version.split()[0]}"
                tb = e.__traceback__  # from the block's own frame on, not our dispatch
                while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(
                    "<define_common"
                ):
                    tb = tb.tb_next
                import traceback  # (on failure only: it costs a server's start ~1 ms)

                text = traceback.format_exception(type(e), e, tb or e.__traceback__)
                raise DefinitionsError(name, python, text) from e

    def verb_call(
        self, name: str, args: Sequence[Any] = (), kwargs: Optional[Dict[str, Any]] = None
    ) -> Any:
        context = self.conn.context
        if "." in name:
            fn = definitions.get_global(name, context, auto_import=True)
        else:  # (``get_global``'s first step, written out: ``rmt.func(...)`` comes here)
            try:
                fn = context.__dict__[name]
            except KeyError:
                fn = definitions.get_global(name, context, auto_import=True)
        return fn(*args, **(kwargs or {}))

    def verb_get_global(self, name: str) -> Any:
        return definitions.get_global(name, self.context, auto_import=True)

    def verb_set_global(self, name: str, value: Any) -> None:
        definitions.set_global(name, value, self.context)

    def verb_eval(self, code: str, mode: str = "eval") -> Any:
        ns = self.context.__dict__
        if mode == "eval":
            return eval(self._compile(code, "eval"), ns)
        try:
            exec(self._compile(code, "exec"), ns)
        except definitions.ExecReturn as r:
            return r.value
        return None

    def verb_import_modules(self, names: Sequence[str]) -> None:
        ns = self.context.__dict__
        for n in names:
            importlib.import_module(n)
            top = n.split(".", 1)[0]
            ns[top] = sys.modules[top]

    def verb_getattr(self, obj: Any, attr: str) -> Any:
        return getattr(obj, attr)

    def verb_setattr(self, obj: Any, attr: str, value: Any) -> None:
        setattr(obj, attr, value)

    def verb_delattr(self, obj: Any, attr: str) -> None:
        delattr(obj, attr)

    def verb_getmethod(self, obj: Any, attr: str) -> Tuple[bool, Any]:
        """``(True, None)`` if ``obj.attr`` is a method (the proxy will call it remotely),
        else ``(False, value)``."""
        val = getattr(obj, attr)
        if callable(val) and not isinstance(val, type):
            return True, None  # methods, static methods, a module's functions: run here
        return False, val

    def verb_object_count(self) -> int:
        """How many objects this connection keeps for the client's proxies."""
        return len(self.conn.table)

    def verb_stop_thread(self, tid: int) -> None:
        self.conn.stop_thread(tid)

    def verb_ping(self) -> None:
        return None

    def do_easycluster_upgrade(self, code: Any, data: Any) -> None:
        """EasyCluster 0.22 replaced a server's code from the client; never here."""
        raise NotImplementedError(
            "servers are not upgraded from the client; install the "
            "new version where the server runs"
        )

    # EasyCluster 0.22's names for the verbs, for code that calls the root object
    # directly (dispatch reads only the verb_* names, so the wire is unchanged).
    eval = verb_eval
    get_global = verb_get_global
    set_global = verb_set_global
    update_definitions = verb_update_definitions
    getattr = verb_getattr
    setattr = verb_setattr
    delattr = verb_delattr
    getmethod = verb_getmethod
    import_modules = verb_import_modules
    call = verb_call
