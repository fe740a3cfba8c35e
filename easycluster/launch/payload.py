"""The ssh bootstrap payload: what travels to a remote host so that a server runs there.

Nothing is installed or written on the remote host. ``protocol.boot`` draws the stage-0
command and its greeting; the payload (stage 1) is the source of ``remote/stage1.py``
followed by a call of ``remote_main(SOURCES)``, where ``SOURCES`` maps module names to
source text: the modules a role needs (the closure of its roots over module-level
imports), a minimal ``easycluster`` package ``__init__`` and cloudpickle's source from
this installation. The payload is built once per process and role.

Roles: ``server`` (serve one connection). A caller above this layer may add root
modules of its own (``extra``): tree mode's gateway, a server that is a client in turn,
adds ``easycluster.cluster.tree`` and so carries ``client``, ``launch``, ``cluster`` and
``nodeset`` too (named by the cluster layer, since this layer may not name those above
it). Without ``extra`` the payload is exactly the role's. The modules shipped for a role
import only the standard library, cloudpickle and each other at module level (a test
checks it);
imports inside functions are not followed, so keep those client-only.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import zlib
from typing import Dict, List, Tuple

Sources = Dict[str, Tuple[bool, str]]

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
def payload(role: str = "server", extra: Tuple[str, ...] = ()) -> bytes:
    """The compressed stage-1 payload for ``role`` plus the root modules ``extra``
    (built once per process and argument pair)."""
    code = _read(module_path(STAGE1)) + f"\nremote_main({shipped_sources(role, extra)!r})\n"
    return zlib.compress(code.encode("utf-8"), 9)


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
    """Modules of the package that module ``name`` imports at module level."""
    source = _read(module_path(name))
    package = name if is_package(name) else name.rpartition(".")[0]
    found: List[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
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
    return found


def package_init(real_init: str, modules: List[str]) -> str:
    """The remote ``easycluster/__init__.py``: imports of the names the real one exports
    (its ``_EXPORTS`` table) from the shipped ``modules``, and an ``__all__`` of them."""
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
    names = sorted(n for n, mod in table.items() if mod in shipped)
    lines = ['"""EasyCluster, server side, imported from memory by the ssh bootstrap."""']
    lines += [f"from {table[n]} import {n}" for n in names]
    lines.append(f"__all__ = {names!r}")
    return "\n".join(lines) + "\n"


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


def _cloudpickle_sources() -> Sources:
    spec = importlib.util.find_spec("cloudpickle")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "cloudpickle is not installed as a package; the ssh bootstrap ships its source"
        )
    pkg = list(spec.submodule_search_locations)[0]
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
