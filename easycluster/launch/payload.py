"""The ssh bootstrap payload: what travels to a remote host so that a server runs there.

Nothing is installed or written on the remote host (unless the client asks: the opt-in
``remote_cache``, ``remote/stage1.py``). ``protocol.boot`` draws the stage-0
command and its greeting. Stage 0 runs the *stage-1 script* (``stage1_script``: the source
of ``remote/stage1.py``, its docstring cut, and a call of ``remote_main()``; about 1.5 KiB
of zlib), which then reads the modules as one *section* (layout in ``remote/stage1.py``):
the modules a role needs (the closure of its roots over module-level imports), a minimal
``easycluster`` package ``__init__`` (names bound on first use, as the real one does) and
cloudpickle's source from this installation.

A section holds either code objects compiled here (``marshal``), usable when the remote
Python has this one's bytecode magic number, or the sources. The client sends the code
first; a remote Python with another magic number asks for the source (one round trip,
only then). ``payload`` returns a *bundle* holding the script and both sections
(``unbundle`` splits it), so a tree-mode gateway, which runs from memory and cannot build
one, can bootstrap hosts of any Python version with the bundle the admin node built.

The bundle is built once per process and role, and kept on disk per role, roots and
magic number (``$XDG_CACHE_HOME/easycluster``, else ``~/.cache/easycluster``, only in a
directory of this user's that nobody else may write), checked against the size and
modification time of every source file it comes from: compiling and compressing costs
about 60 ms, reading the cached bundle about 2.

Roles: ``server`` (serve one connection). A caller above this layer may add root
modules of its own (``extra``): tree mode's gateway, a server that is a client in turn,
adds ``easycluster.cluster.tree`` and so carries ``client``, ``launch``, ``cluster`` and
``nodeset`` too (named by the cluster layer, since this layer may not name those above
it). Without ``extra`` the payload is exactly the role's. The modules shipped for a role
import only the standard library, cloudpickle and each other at module level (a test
checks it); imports inside functions are not followed, so keep those client-only.
"""

from __future__ import annotations

import functools
import importlib.machinery
import marshal
import os
import struct
import sys
import threading
import zlib

from ..protocol.mac import sha256
from ..remote.stage1 import CACHE_TAG, SOURCE_TAG, filename, python_magic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Tuple

    Sources = Dict[str, Tuple[bool, str]]

FORMAT = b"EZCLBUN1"  # a bundle's first bytes; change it when the layout changes
BUILD = 2  # how the code section is compiled (in the disk cache's fingerprint): 2 = no docstrings
_BUNDLE_HEAD = struct.Struct("!8sIII")  # FORMAT, sizes of script, code and source sections
_SECTION_HEAD = struct.Struct("!4sI")  # tag (magic number or SOURCE_TAG), blob size

PACKAGE = "easycluster"
# The package folder; empty where this module was imported from memory (a tree-mode
# gateway bootstrapped over ssh has no files to ship further: ``module_path`` says so).
_HERE = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) if "__file__" in globals() else ""
)
STAGE1 = "easycluster.remote.stage1"
# The modules each role starts from (what stage 1 imports, and what definitions modules
# bind from ``easycluster``); everything they import at module level is shipped too.
ROLES: Dict[str, Tuple[str, ...]] = {
    "server": (
        "easycluster.remote.process",
        "easycluster.transport.handshake",
        "easycluster.transport.pipes",
        "easycluster.protocol.boot",
        "easycluster.objects.proxy",
        "easycluster.objects.definitions",
    ),
}


@functools.cache
def stage1_script(cache: bool = False) -> bytes:
    """The compressed stage-1 script that stage 0 runs (docstring cut: it is compiled on
    every connection), with the part that answers a cache request only if ``cache``
    (a third less to compile on every connection: ``remote_cache`` is opt-in)."""
    text = _read(module_path(STAGE1))
    body = text.split('"""', 2)[2] if text.startswith('"""') else text
    if not cache:
        head, rest = body.split(CACHE_PART[0], 1)
        body = head + rest.split(CACHE_PART[1], 1)[1]
    return zlib.compress((body.lstrip() + "\nremote_main()\n").encode("utf-8"), 9)


# the lines around stage 1's cache part (``stage1_script``)
CACHE_PART = ("# -- the cache's part", "# -- end of the cache's part\n")


# Bundles made by this process, by (role, extra). One lock around making them: the
# threads of a fan-out connect at once, and CPython's compile() is not safe from
# several threads at once ("AST constructor recursion depth mismatch", seen in tree mode).
_bundles: Dict[Tuple[str, Tuple[str, ...]], bytes] = {}
_bundles_lock = threading.Lock()


def payload(role: str = "server", extra: Tuple[str, ...] = ()) -> bytes:
    """The bundle for ``role`` plus the root modules ``extra`` (see the module docstring;
    ``unbundle`` splits it): from this process's memory, else the disk cache, else built
    (and cached). Safe from several threads: one of them makes it, the others wait."""
    key = (role, tuple(extra))
    with _bundles_lock:
        found = _bundles.get(key)
        if found is None:
            found = _bundles[key] = _make(role, key[1])
        return found


def _make(role: str, extra: Tuple[str, ...]) -> bytes:
    path = cache_path(role, extra)
    stamp = fingerprint(role, extra) if path else b""
    if path:
        found = _load(path, stamp)
        if found is not None:
            return found
    data = build(role, extra)
    if path:
        _store(path, stamp + data)
    return data


def build(role: str = "server", extra: Tuple[str, ...] = ()) -> bytes:
    """A fresh bundle for ``role`` and ``extra`` (no cache)."""
    sources = shipped_sources(role, extra)
    code = {
        name: (pkg, marshal.dumps(compile_shipped(text, filename(name, pkg))))
        for name, (pkg, text) in sources.items()
    }
    parts = (stage1_script(), section(python_magic(), code), section(SOURCE_TAG, sources))
    return _BUNDLE_HEAD.pack(FORMAT, *map(len, parts)) + b"".join(parts)


def compile_shipped(text: str, name: str) -> Any:
    """``text`` compiled for the code section, its docstrings left out (a quarter of the
    section: 198 KB -> 152 KB zlib'd). Unlike ``optimize=2`` the asserts stay, and every
    line keeps its number (remote tracebacks). Nothing shipped reads a docstring; the
    source section, for another Python, keeps them."""
    import ast

    tree = ast.parse(text, name)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0] if body else None
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                if len(body) == 1:  # (a body must hold a statement)
                    body[0] = ast.copy_location(ast.Pass(), body[0])
                else:
                    del body[0]
    return compile(tree, name, "exec", 0, True, 0)


def section(tag: bytes, modules: Mapping[str, Tuple[bool, object]]) -> bytes:
    """One section as stage 1 reads it: head, then the zlib'd marshal of ``modules``."""
    blob = zlib.compress(marshal.dumps(dict(modules)), 6)  # 9: 4x the time, 1% smaller
    return _SECTION_HEAD.pack(tag, len(blob)) + blob


def cache_request(code: bytes, folder: str) -> bytes:
    """The section that asks stage 1 for the code section ``code`` from the remote
    cache in ``folder`` ("": the default; layout in ``remote/stage1.py``)."""
    tag = code[:4]
    where = folder.encode("utf-8")
    return _SECTION_HEAD.pack(CACHE_TAG, 36 + len(where)) + tag + _digest(code) + where


@functools.lru_cache(maxsize=4)
def _digest(code: bytes) -> bytes:
    """The SHA-256 of a code section's blob. Kept: 1,000 connections send the same
    section (its bytes' hash and an equal compare cost a fifth of the SHA-256)."""
    return sha256(memoryview(code)[_SECTION_HEAD.size :]).digest()


def unbundle(data: bytes) -> Tuple[bytes, bytes, bytes]:
    """``(stage-1 script, code section, source section)`` of a bundle; ValueError if
    ``data`` is not one."""
    if len(data) < _BUNDLE_HEAD.size:
        raise ValueError("not an easycluster bootstrap bundle (too short)")
    tag, *sizes = _BUNDLE_HEAD.unpack_from(data)
    if tag != FORMAT or _BUNDLE_HEAD.size + sum(sizes) != len(data):
        raise ValueError("not an easycluster bootstrap bundle of this version")
    at = _BUNDLE_HEAD.size
    script, code = data[at : at + sizes[0]], data[at + sizes[0] : at + sizes[0] + sizes[1]]
    return script, code, data[at + sizes[0] + sizes[1] :]


def sent_size(data: bytes) -> int:
    """Bytes a connection sends of bundle ``data`` when the remote magic number matches."""
    script, code, _ = unbundle(data)
    return len(script) + len(code)


# -- the disk cache --------------------------------------------------------------------


def cache_path(role: str, extra: Tuple[str, ...]) -> Optional[str]:
    """Where the bundle of ``role`` and ``extra`` is cached for this Python, or None
    when there is no usable cache directory (or no source files: a gateway)."""
    if not _HERE:
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None
    folder = os.path.join(base, "easycluster")
    roots = sha256(repr((role, extra)).encode()).hexdigest()[:16]
    return os.path.join(folder, f"payload-{roots}-{python_magic().hex()}.bin")


def fingerprint(role: str, extra: Tuple[str, ...]) -> bytes:
    """32 bytes that change when anything a bundle is built from may have changed: the
    size and modification time of every source file of the package and of cloudpickle,
    this Python's version, the role and the roots."""
    # (``mac.sha256``: the interpreter's own until someone loads OpenSSL, whose load,
    # 2 ms, would come before ssh starts; any SHA-256 names the same cache file)
    h = sha256(repr((FORMAT, BUILD, sys.version, role, extra)).encode())
    for top in (_HERE, _cloudpickle_dir()):
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for f in sorted(files):
                if f.endswith(".py"):
                    st = os.stat(os.path.join(folder, f))
                    h.update(f"{folder}/{f} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.digest()


def _private_dir(folder: str) -> bool:
    """True if ``folder`` is a directory of this user's that no one else may write (what
    is cached there runs on every remote host)."""
    try:
        st = os.stat(folder)
    except OSError:
        return False
    return os.path.isdir(folder) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def _load(path: str, stamp: bytes) -> Optional[bytes]:
    if not _private_dir(os.path.dirname(path)):
        return None
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_uid != os.getuid() or f.read(len(stamp)) != stamp:
                return None
            data = f.read()
        unbundle(data)
    except (OSError, ValueError):
        return None
    return data


def _store(path: str, data: bytes) -> None:
    """Write the cache file atomically; a cache that cannot be written is skipped."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if not _private_dir(folder):
            return
        import tempfile  # (only here: a client that finds the cache never loads it)

        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".payload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def shipped_sources(role: str = "server", extra: Tuple[str, ...] = ()) -> Sources:
    """``{module name: (is package, source)}`` for everything ``role`` imports: the
    closure of its roots over module-level imports (with the packages on the way), a
    package ``__init__`` binding what the real one exports from those modules (so
    ``from easycluster import *`` in a definitions module works remotely), and
    cloudpickle. ``extra``: more roots (see the module docstring). KeyError for an
    unknown role."""
    modules = closure(ROLES[role] + tuple(extra))
    out: Sources = {PACKAGE: (True, package_init(_read(module_path(PACKAGE)), modules))}
    for name in sorted(modules):
        if name != PACKAGE:
            out[name] = (is_package(name), _read(module_path(name)))
    out.update(_cloudpickle_sources())
    return out


def closure(roots: Tuple[str, ...]) -> List[str]:
    """The package's modules that ``roots`` import at module level, directly or not,
    the packages that hold them included, sorted."""
    seen: Dict[str, None] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = None
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
        todo.extend(module_imports(name))
    return sorted(seen)


def module_imports(name: str) -> List[str]:
    """Modules of the package that module ``name`` imports at module level, and those
    its ``LOADED_LATER`` names: a tuple of relative module names (``(".response",)``) a
    module declares for what it imports inside a function, on first need, yet needs at
    run time all the same (a payload carrying it must carry them too)."""
    source = _read(module_path(name))
    package = name if is_package(name) else name.rpartition(".")[0]
    import ast  # (building only: a client that finds the cache never loads it)

    found: List[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _absolute(package, node.level, base)
            if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
                continue
            found.append(base)
            for alias in node.names:  # ``from . import x``: x may be a module
                sub = f"{base}.{alias.name}"
                if _exists(sub):
                    found.append(sub)
        elif isinstance(node, ast.Import):
            found.extend(
                a.name for a in node.names if a.name == PACKAGE or a.name.startswith(PACKAGE + ".")
            )
        elif (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["LOADED_LATER"]
            and isinstance(node.value, ast.Tuple)
        ):
            for elt in node.value.elts:
                rel = elt.value if isinstance(elt, ast.Constant) else None
                if not (isinstance(rel, str) and rel.startswith(".")):
                    raise ValueError(f"{name}: LOADED_LATER holds relative module names")
                level = len(rel) - len(rel.lstrip("."))
                found.append(_absolute(package, level, rel[level:]))
    return found


def _absolute(package: str, level: int, rest: str) -> str:
    """The absolute name of a relative import in ``package``: ``level`` dots, then
    ``rest`` (possibly empty: ``from . import x``)."""
    parts = package.split(".")
    anchor = ".".join(parts[: len(parts) - level + 1])
    return f"{anchor}.{rest}" if rest else anchor


def package_init(real_init: str, modules: List[str]) -> str:
    """The remote ``easycluster/__init__.py``: the names the real one exports (its
    ``_EXPORTS`` table) whose modules are among the shipped ``modules``, bound on first
    use, and an ``__all__`` of them."""
    import ast

    table: Dict[str, str] = {}
    for node in ast.parse(real_init).body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "_EXPORTS"
            and node.value is not None
        ):
            table = ast.literal_eval(node.value)
    shipped = set(modules)
    exports = {n: mod for n, mod in sorted(table.items()) if mod in shipped}
    return _LAZY_INIT.format(exports=exports, names=sorted(exports))


# The remote package __init__: a name's module is imported when the name is first used,
# as in the real one (``from easycluster import *`` asks for each name of ``__all__``).
_LAZY_INIT = '''"""EasyCluster, server side, imported from memory by the ssh bootstrap."""
import sys

_EXPORTS = {exports!r}
__all__ = {names!r}


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError("module 'easycluster' has no attribute %r" % (name,))
    __import__(module)
    value = getattr(sys.modules[module], name)
    globals()[name] = value
    return value
'''


def module_path(name: str) -> str:
    """The source file of package module ``name``."""
    if not _HERE:
        raise FileNotFoundError(
            f"cannot ship {name}: this process runs easycluster from memory (an ssh-bootstrapped"
            " server), so it has no source files to bootstrap another server with"
        )
    rel = name.split(".")[1:]
    base = os.path.join(_HERE, *rel)
    return os.path.join(base, "__init__.py") if os.path.isdir(base) else base + ".py"


def is_package(name: str) -> bool:
    return module_path(name).endswith("__init__.py")


def _exists(name: str) -> bool:
    return os.path.exists(module_path(name))


def _cloudpickle_dir() -> str:
    # Found on sys.path without importing importlib.util (some ms of a client's start).
    spec = importlib.machinery.PathFinder.find_spec("cloudpickle")
    if spec is None:
        from importlib.util import find_spec

        spec = find_spec("cloudpickle")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "cloudpickle is not installed as a package; the ssh bootstrap ships its source"
        )
    return str(list(spec.submodule_search_locations)[0])


def _cloudpickle_sources() -> Sources:
    pkg = _cloudpickle_dir()
    out: Sources = {}
    for fname in sorted(os.listdir(pkg)):
        if fname.endswith(".py"):
            mod = fname[:-3]
            is_pkg = mod == "__init__"
            name = "cloudpickle" if is_pkg else "cloudpickle." + mod
            out[name] = (is_pkg, _read(os.path.join(pkg, fname)))
    return out


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()
