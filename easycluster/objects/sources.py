"""Source text of code compiled from strings, for tracebacks, without importing linecache.

A define_common block, or a remote ``eval``/``execblock``, has no file: its text goes into
``linecache``'s cache under the code's file name, so a traceback through it shows its
lines. But ``linecache`` imports tokenize, re and enum, about a fifth of a server's
start-up, and most servers never format a traceback. So while ``linecache`` is not
imported, ``remember`` keeps the text here and puts a finder on ``sys.meta_path``; when
anything imports ``linecache`` (traceback, logging, the user's own code), the finder lets
the import run as usual, fills the new module's cache with the texts kept, and leaves
``sys.meta_path``. After that, ``remember`` writes to the cache directly.
"""

from __future__ import annotations

import _thread
import sys

from ..protocol.mac import sha256

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

_pending: Dict[str, str] = {}  # file name -> source, while linecache is not imported
# a thread may import linecache while another remembers; re-entrant: a text remembered
# by code that runs inside an import of linecache (a __del__ in a collection, say)
_lock = _thread.RLock()


def digest(source: str) -> str:
    """A short digest of ``source``, for the file name it is compiled under (the same
    text gets the same name, so tracebacks name a block the same way on every host)."""
    return sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _entry(filename: str, source: str) -> Tuple[int, None, List[str], str]:
    # linecache's shape: (size, mtime, lines, full name); mtime None: never checked on disk
    return (len(source), None, source.splitlines(True), filename)


def _cache() -> Optional[Dict[str, Any]]:
    """``linecache.cache`` if linecache is loaded (and has run far enough to have one)."""
    return getattr(sys.modules.get("linecache"), "cache", None)


def remember(filename: str, source: str) -> None:
    """Make ``source`` the text that tracebacks show for code compiled as ``filename``."""
    with _lock:
        cache = _cache()
        if cache is not None:
            cache[filename] = _entry(filename, source)
            return
        _pending[filename] = source
        # (linecache in sys.modules without a cache: it is being loaded, and the finder,
        # off sys.meta_path already, fills its cache once it ran)
        if "linecache" not in sys.modules and _Finder not in sys.meta_path:
            sys.meta_path.insert(0, _Finder)


def forget(filename: str) -> None:
    """Drop the text of ``filename`` (kept here or in linecache)."""
    with _lock:
        _pending.pop(filename, None)
        cache = _cache()
        if cache is not None:
            cache.pop(filename, None)


def _fill(module: Any) -> None:
    """linecache ran: give it the texts kept, and take the finder off ``sys.meta_path``."""
    with _lock:
        for filename, source in _pending.items():
            module.cache[filename] = _entry(filename, source)
        _pending.clear()
        while _Finder in sys.meta_path:
            sys.meta_path.remove(_Finder)


class _Finder:
    """On ``sys.meta_path`` while texts wait for ``linecache``: finds nothing itself, but
    for ``linecache`` takes the spec the next finders give and puts a ``_Loader`` around
    its loader. It leaves ``sys.meta_path`` only once linecache has run (a lookup that
    loads nothing, or a load that fails, leaves it there for the next try). Any failure
    of its own gives the import back to the other finders untouched (the waiting texts
    are then missing from tracebacks, nothing else)."""

    @staticmethod
    def find_spec(name: str, path: Optional[Sequence[str]] = None, target: Any = None) -> Any:
        if name != "linecache":
            return None
        try:
            for finder in sys.meta_path:
                find = None if finder is _Finder else getattr(finder, "find_spec", None)
                spec = find(name, path, target) if find is not None else None
                if spec is not None:
                    break
            else:
                return None
            if not hasattr(spec.loader, "exec_module"):
                return None
            spec.loader = _Loader(spec.loader)  # (the spec is new; its loader may be shared)
            return spec
        except Exception:
            return None


class _Loader:
    """Runs linecache with the loader found for it, then fills its cache. The module keeps
    that loader as its own (``__loader__``, ``__spec__.loader``), not this one."""

    def __init__(self, loader: Any):
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: Any) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _fill(module)
