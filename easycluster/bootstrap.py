"""The ssh bootstrap: a stage-0 command line, and the payload that starts a server remotely.

Nothing is installed or written on the remote host. The client runs, through ``ssh``::

    python3 -c 'import sys,os,zlib;...;exec(zlib.decompress(sys.stdin.buffer.read(N)))'

Stage 0 (that command; it parses on any Python, even 2.x) writes the greeting line
``EASYCLUSTER-BOOT <major>.<minor>.<micro>`` to stdout. On a Python older than 3.9 it
then exits with status 3 and the client reports the version it found. Otherwise it reads
``N`` bytes from stdin, the zlib-compressed payload, and executes it.

The payload (stage 1) is this module's own source followed by a call of
``remote_main(SOURCES)``, where ``SOURCES`` maps module names to source text: the server
side of EasyCluster (``SHIPPED``), a minimal ``easycluster`` package and cloudpickle's
source from the client's installed copy. ``remote_main`` puts a finder first on
``sys.meta_path`` that imports those from memory (tracebacks still show their lines),
reads the 32-byte session key that follows the payload on stdin, moves the protocol off
fds 0 and 1 (they point at ``/dev/null`` afterwards, and ``sys.stdout`` is ``sys.stderr``
so a remote ``print`` reaches the client's stderr instead of corrupting the stream), and
runs the ordinary server handshake and ``serve_connection`` over the two pipes. Framing
and authentication are the same as over TCP; ssh adds encryption and host
authentication, and the random per-session key never appears on a command line.

The client sends payload and key right after starting ``ssh``, without waiting, so the
bootstrap adds no round trip of its own. The payload is built once per process.

This module is shipped too and executed remotely as stage 1: at module level it imports
only the standard library, and it must run on Python 3.9.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import sys
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

MIN_PYTHON = (3, 9)
GREETING = b"EASYCLUSTER-BOOT "
GREETING_RE = re.compile(rb"EASYCLUSTER-BOOT (\d+)\.(\d+)\.(\d+)\r?\n")
EXIT_TOO_OLD = 3
KEY_SIZE = 32
# The modules the remote server starts from; everything they import at module level from
# the package is shipped too (imports inside functions are not: keep those client-only).
SHIPPED_ROOTS = ("server", "transport", "pipes", "exports", "proxy")

# Stage 0: one line, no quotes of its own kind, valid Python 2 and 3 syntax.
_STAGE0 = ("import sys,os,zlib;v=tuple(sys.version_info[:3]);"
           'os.write(1,("\\nEASYCLUSTER-BOOT %d.%d.%d\\n"%v).encode());'
           "v<{minimum} and sys.exit({too_old});"
           "exec(zlib.decompress(sys.stdin.buffer.read({size})))")


# -- client side -----------------------------------------------------------------------


def stage0_command(rpython: str, payload_size: int) -> str:
    """The remote shell command that starts stage 0 with ``rpython``.

    ``rpython`` may hold several words (``"env python3"``); each is quoted with
    ``shlex.quote``, so no part of it is run as shell code.
    """
    words = shlex.split(rpython)
    if not words:
        raise ValueError("rpython must name a Python interpreter")
    code = _STAGE0.format(minimum=MIN_PYTHON, too_old=EXIT_TOO_OLD, size=payload_size)
    return " ".join(shlex.quote(w) for w in [*words, "-c", code])


@functools.lru_cache(maxsize=1)
def payload() -> bytes:
    """The compressed stage-1 payload (built once per process)."""
    code = _own_source() + f"\nremote_main({shipped_sources()!r})\n"
    return zlib.compress(code.encode("utf-8"), 9)


def shipped_sources() -> Dict[str, Tuple[bool, str]]:
    """``{module name: (is package, source)}`` for everything the remote server imports:
    the closure of ``SHIPPED_ROOTS`` over module-level relative imports, a package
    ``__init__`` re-exporting what the real one takes from those modules (so
    ``from easycluster import *`` in a definitions module works remotely), and cloudpickle.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    sources: Dict[str, str] = {}
    todo = list(SHIPPED_ROOTS)
    while todo:
        name = todo.pop()
        if name in sources:
            continue
        sources[name] = _read(os.path.join(here, name + ".py"))
        todo.extend(_package_imports(sources[name]))
    out: Dict[str, Tuple[bool, str]] = {
        "easycluster": (True, package_init(_read(os.path.join(here, "__init__.py")), sources))}
    for name in sorted(sources):
        out[f"easycluster.{name}"] = (False, sources[name])
    out.update(_cloudpickle_sources())
    return out


def _package_imports(source: str) -> List[str]:
    """Sibling modules imported at module level: ``from . import a``, ``from .b import c``."""
    import ast

    names: List[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.append(node.module.split(".")[0])
            else:
                names.extend(a.name for a in node.names)
    return names


def package_init(real_init: str, shipped: Dict[str, str]) -> str:
    """The remote ``easycluster/__init__.py``: the real one's ``from .mod import ...``
    lines for shipped modules, and an ``__all__`` of the names they bring."""
    import ast

    lines = ['"""EasyCluster, server side, imported from memory by the ssh bootstrap."""']
    exported: List[str] = []
    for node in ast.parse(real_init).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in shipped:
            names = [a.asname or a.name for a in node.names]
            lines.append(f"from .{node.module} import {', '.join(names)}")
            exported.extend(names)
    lines.append(f"__all__ = {exported!r}")
    return "\n".join(lines) + "\n"


def _cloudpickle_sources() -> Dict[str, Tuple[bool, str]]:
    import importlib.util

    spec = importlib.util.find_spec("cloudpickle")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("cloudpickle is not installed as a package; the ssh bootstrap "
                          "ships its source")
    pkg = list(spec.submodule_search_locations)[0]
    out: Dict[str, Tuple[bool, str]] = {}
    for fname in sorted(os.listdir(pkg)):
        if fname.endswith(".py"):
            mod = fname[:-3]
            is_pkg = mod == "__init__"
            name = "cloudpickle" if is_pkg else "cloudpickle." + mod
            out[name] = (is_pkg, _read(os.path.join(pkg, fname)))
    return out


def _own_source() -> str:
    return _read(os.path.abspath(__file__))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def parse_greeting(data: bytes) -> Optional[Tuple[int, int, int]]:
    """The remote Python version from stage 0's greeting line in ``data``, or None if
    the greeting is not (yet) there. Anything before it (shell noise) is ignored."""
    m = GREETING_RE.search(data)
    if m is None:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)))


def greeting_end(data: bytes) -> int:
    """Offset just past the greeting line in ``data`` (which must contain it)."""
    m = GREETING_RE.search(data)
    if m is None:
        raise ValueError("no greeting")
    return m.end()


# -- remote side (stage 1) -------------------------------------------------------------


class ShippedModules:
    """A ``sys.meta_path`` finder and loader for modules whose source came over stdin."""

    def __init__(self, sources: Dict[str, Tuple[bool, str]]):
        self.sources = sources

    def find_spec(self, name: str, path: Optional[Sequence[str]] = None,
                  target: object = None) -> object:
        if name not in self.sources:
            return None
        import importlib.machinery

        return importlib.machinery.ModuleSpec(name, self, origin=self._filename(name),
                                              is_package=self.sources[name][0])

    def create_module(self, spec: object) -> None:
        return None

    def exec_module(self, module: object) -> None:
        name = module.__name__  # type: ignore[attr-defined]
        code = compile(self.sources[name][1], self._filename(name), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 - the payload the client sent

    def get_source(self, name: str) -> str:
        return self.sources[name][1]

    def _filename(self, name: str) -> str:
        suffix = "/__init__.py" if self.sources[name][0] else ".py"
        return "<easycluster-ssh>/" + name.replace(".", "/") + suffix


def remote_main(sources: Dict[str, Tuple[bool, str]]) -> None:
    """Stage 1 on the remote host: import from memory, take over the pipes, serve."""
    sys.meta_path.insert(0, ShippedModules(sources))
    stdin = sys.stdin.buffer
    key = stdin.read(KEY_SIZE)
    if len(key) != KEY_SIZE:
        sys.exit("easycluster bootstrap: stdin closed before the session key arrived")
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    sys.stdout = sys.stderr

    from easycluster import wire
    from easycluster.pipes import PipeSocket
    from easycluster.server import serve_connection
    from easycluster.transport import server_handshake

    peer = "ssh:" + (os.environ.get("SSH_CLIENT") or "?").split(" ")[0]
    try:
        channel = server_handshake(PipeSocket(rfd, wfd), key, wire.WireOptions(), timeout=30)
    except (OSError, wire.ProtocolError) as e:
        sys.exit(f"easycluster bootstrap: handshake failed: {e}")
    serve_connection(channel, peer)
