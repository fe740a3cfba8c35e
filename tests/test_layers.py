"""The import rules of docs/design.md, checked on the source with ``ast`` (no imports run).

1. No import cycles between the package's modules, counting imports inside functions;
   an import inside a function is allowed only where ``DEFERRED`` says why.
2. A module imports only from its own layer unit or units below it (``LAYERS``), and
   ``client/`` and ``remote/`` never import each other.
3. The set shipped to a remote host imports only the standard library, cloudpickle and
   itself, and at start-up none of ``NOT_AT_SERVER_START`` (typing, socket...).
4. No private name imported across modules, no ``obj._attr`` reaching into another
   module's objects (a subclass may use its base class's private members on ``self``).
5. Named owners of dangerous work: only ``objects/serialize.py`` pickles, only
   ``protocol/`` computes MACs, and only the modules in ``FD_WAITERS`` wait on file
   descriptors.
"""

from __future__ import annotations

import ast
import pathlib
import sys
from typing import Dict, Iterator, List, Set, Tuple

import pytest

from easycluster.launch import payload

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "easycluster"

# Bottom to top. A module may import from its own unit and from units in earlier rows.
LAYERS: List[Tuple[str, ...]] = [
    ("errors", "version"),
    ("keys", "legacy"),
    ("protocol",),
    ("objects",),
    ("transport",),
    ("remote",),
    ("launch",),
    ("client",),
    ("service", "nodeset"),
    ("cluster",),
    ("cli",),
    ("server", "__init__", "__main__"),
]

# Imports inside functions, each with the reason it is deferred: (importer, imported).
DEFERRED: Dict[Tuple[str, str], str] = {
    # stage 1 runs from memory: these exist only once it has installed the shipped sources
    ("remote.stage1", "errors"): "shipped sources are installed first",
    ("remote.stage1", "protocol.handshake"): "shipped sources are installed first",
    ("remote.stage1", "remote.process"): "shipped sources are installed first",
    ("remote.stage1", "transport.handshake"): "shipped sources are installed first",
    ("remote.stage1", "transport.pipes"): "shipped sources are installed first",
    # the ssh launcher (subprocess, payload building) costs start-up time to clients
    # that never use ssh
    ("client.connect", "launch.ssh"): "optional: only ssh connections need it",
    ("cluster.session", "launch.srun"): "optional: only SLURM users need it",
    ("cluster.tasksettings", "cluster.rpc"): "optional: the client stack only for the rpc backend",
    ("cluster.task", "cluster.treeworker"): "optional: the client stack only for tree mode",
    ("cluster.task", "cluster.treecopy"): "optional: the client stack only for tree mode",
    ("cluster.session", "client.spec"): "optional: only SLURM users need srun_client",
    ("cluster.executor", "launch.srun"): "optional: only SLURM users need it",
    ("cluster.executor", "launch.slurmwatch"): "optional: only SLURM users need it",
    ("cluster.executor", "client.spec"): "optional: only SLURM users need srun_client",
    ("cli.shellnodes", "launch.srun"): "optional: only a run inside a SLURM allocation needs it",
    ("cli.shellnodes", "cluster.task"): "start-up: loaded once a run starts",
    ("cli.shell", "cluster.backends"): "optional: only a %hosts mistake needs it",
    ("cli.shellnodes", "cluster.backends"): "optional: only -d needs it",
    ("cli.shellnodes", "cluster.sshexec"): "optional: only -d needs it",
    ("cli.farm", "launch.srun"): "optional: only --slurm needs it",
    ("cli.farm", "launch.slurmwatch"): "optional: only --slurm needs it",
    ("cli.farmconnect", "client.spec"): "optional: only --slurm needs srun_client",
    # `easycluster -S` starts without the boot-service code
    ("cli.serve", "service.systemd"): "optional: only the boot-service actions need it",
    ("cli.serve", "cli.parsing"): "start-up: the usual -S line is read without argparse",
    # concurrent.futures and logging load with the first call that needs a Future
    ("client.client", "client.response"): "the first non-blocking call loads it",
    ("client.asyncapi", "client.response"): "loaded by the Response acall just made",
    # `easycluster -S` opens its port first, then imports what serves a connection
    ("service.tcpserver", "service.connection_code"): "imported once the port is open",
    # `easycluster shell` starts without tarfile & co.
    ("cluster.task", "cluster.taskcopy"): "optional: only copies need it (tarfile & co.)",
    ("cluster.session", "cluster.sessioncopy"): "optional: only a Cluster that copies",
    ("cluster.sessioncopy", "cluster.rpc"): "optional: the engine only for a Cluster's copy",
    ("cluster.sessioncopy", "cluster.task"): "optional: the engine only for a Cluster's copy",
    ("cluster.session", "remote.commands"): "runs on the node: Cluster.run's runner is sent",
    # every subcommand starts within 30 ms of a bare interpreter (`--help`, usage errors):
    # the engine, the farm and the client stack load once a run starts
    ("cli.shell", "cluster.task"): "start-up: loaded once a run starts",
    ("cli.shell", "cli.keeper"): "optional: only --keep needs it",
    ("cli.farminput", "cluster.task"): "start-up: loaded once a run starts",
    ("cli.groupopts", "cli.nodeset"): "start-up: --help builds the parser alone",
    ("cli.groupopts", "cluster.slots"): "start-up: --help builds the parser alone",
    ("cli.groupopts", "nodeset.std"): "start-up: --help builds the parser alone",
    ("nodeset.groupsources", "launch.said"): "start-up: only a group upcall needs it",
    ("cli.farm", "cluster.farm"): "start-up: loaded once a run starts",
    ("cli.farm", "cluster.farmout"): "start-up: loaded once a run starts",
    ("cli.farmconnect", "cluster.treeexec"): "start-up: loaded once a run starts (--topology)",
    ("cli.farmconnect", "cluster.treerelay"): "start-up: loaded once a run starts (--topology)",
    ("cli.farmconnect", "client.local"): "start-up: loaded once a run starts",
    ("cli.farmconnect", "client.threaded"): "start-up: loaded once a run starts",
    # server.py is the 0.22 face: importing it must stay as light as 0.22's
    ("server", "client.local"): "0.22 face: loaded on first use",
    ("server", "cli"): "0.22 face: server_main is the CLI",
    ("server", "service.tcpserver"): "0.22 face: loaded on first use",
    ("server", "protocol.handshake"): "0.22 face: loaded on first use",
    ("server", "remote.connection"): "0.22 face: loaded on first use",
    ("server", "transport.handshake"): "0.22 face: loaded on first use",
}

# Modules that wait on file descriptors (select/selectors), and why they may.
FD_WAITERS: Dict[str, str] = {
    "transport.channel": "the connection's I/O",
    "transport.pipes": "the connection's I/O over pipes",
    "service.listener": "the service's accept loop",
    "service.tcpserver": "the service's process reaper waits on its control pipe",
    "remote.zygote": "the zygote serves spawn requests on its control socket",
    "launch.ssh": "waits for the remote greeting on ssh's stdout before a channel exists",
    "launch.local": "waits for the zygote's answers (a pid, when asked) and a server's exit",
    "launch.reaper": "one thread waits on the pidfds of closed local servers, all at once",
    "client.reader": "the one standby thread waits for replies nobody reads, all clients at once",
    "client.parallel": "ClientGroup: one thread reading many plain clients (0.22 API)",
    "cluster.engine": "the Task's one I/O thread: every node's pipes, pidfds and stdin",
    "cluster.slotio": "the engine's I/O methods: register a slot's pipes with its selector",
    "cluster.wakeup": "the engine's wake-up pipe, registered with the engine's selector",
    "remote.commands": "a server reads the output of a command the RPC backend started",
}

# Private attributes of the standard library used on purpose: os._exit, sys._getframe,
# the namedtuple API, _operator._compare_digest (hmac's compare_digest without
# importing hmac, which loads OpenSSL) and _thread._count (every thread the process
# started, bare ones too, without a lock: client.reader asks it on every blocking call)
STDLIB_PRIVATE = {"_exit", "_getframe", "_asdict", "_replace", "_compare_digest", "_count"}

PICKLE_CALLS = {"dumps", "loads", "dump", "load", "Pickler", "Unpickler"}


def module_name(path: pathlib.Path) -> str:
    """``easycluster/client/client.py`` -> ``client.client``; the package -> ``__init__``."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


MODULES: Dict[str, pathlib.Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES: Dict[str, ast.Module] = {m: ast.parse(p.read_text(), str(p)) for m, p in MODULES.items()}


def unit(module: str) -> str:
    return module.split(".")[0]


def rank(module: str) -> int:
    for i, row in enumerate(LAYERS):
        if unit(module) in row:
            return i
    raise AssertionError(f"{module} is in no layer: add its unit to LAYERS")


def in_function(tree: ast.Module) -> Set[ast.AST]:
    """Import nodes that sit inside a function body."""
    inner: Set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    inner.add(sub)
    return inner


def resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute dotted name an ``ImportFrom`` refers to."""
    if not node.level:
        return node.module or ""
    path = MODULES[module]
    package = ["easycluster"] + module.split(".")
    if module == "__init__":
        package = ["easycluster"]
    elif path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> Iterator[Tuple[str, List[str], bool, int]]:
    """``(absolute target, names, inside a function, line)`` for each import."""
    tree = TREES[module]
    inner = in_function(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node in inner, node.lineno
        elif isinstance(node, ast.ImportFrom):
            yield resolve(module, node), [a.name for a in node.names], node in inner, node.lineno


def package_targets(target: str, names: List[str]) -> List[str]:
    """The package modules an import of ``target`` (with ``names``) loads, by our names."""
    if target != "easycluster" and not target.startswith("easycluster."):
        return []
    base = target[len("easycluster.") :] if target != "easycluster" else "__init__"
    out = []
    for n in names:  # ``from . import payload`` names a module
        sub = n if base == "__init__" else f"{base}.{n}"
        if sub in MODULES:
            out.append(sub)
    return out or [base]


def dynamic_imports(module: str) -> Iterator[Tuple[str, int]]:
    """Package modules named as strings (``"easycluster.cli.serve"``): what
    ``importlib.import_module`` loads, in the CLI's dispatch and ``__init__``'s lazy
    names. They count for cycles and layers like imports made at first use. Logger
    names (``getLogger("easycluster.server")``, ``lazy_logger(...)``) are not imports."""
    loggers = {
        id(a)
        for n in ast.walk(TREES[module])
        if isinstance(n, ast.Call)
        and getattr(n.func, "attr", getattr(n.func, "id", "")) in ("getLogger", "lazy_logger")
        for a in n.args
    }
    for n in ast.walk(TREES[module]):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in loggers:
            name = n.value.partition("easycluster.")[2]
            if n.value.startswith("easycluster.") and name in MODULES and name != module:
                yield name, n.lineno


def edges() -> Iterator[Tuple[str, str, bool, int]]:
    """``(importer, imported, inside a function, line)`` within the package; modules
    named for ``importlib`` count as imports at module level (they need no reason)."""
    for m in MODULES:
        for target, names, inner, line in imports(m):
            for t in package_targets(target, names):
                if t != m:
                    yield m, t, inner, line
        for t, line in dynamic_imports(m):
            yield m, t, False, line


EDGES = list(edges())


def test_the_table_knows_every_module():
    for m in MODULES:
        rank(m)


def test_no_import_cycles_counting_deferred_imports():
    graph: Dict[str, Set[str]] = {m: set() for m in MODULES}
    for a, b, _, _ in EDGES:
        graph[a].add(b)
    # Tarjan-free: depth-first search that reports the first cycle with its path.
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_imports_inside_functions_are_the_listed_ones():
    found = {(a, b) for a, b, inner, _ in EDGES if inner}
    unlisted = sorted(found - set(DEFERRED))
    assert not unlisted, f"imports inside functions without a reason in DEFERRED: {unlisted}"
    stale = sorted(set(DEFERRED) - found)
    assert not stale, f"DEFERRED lists imports that no longer exist: {stale}"


def test_modules_import_only_from_below():
    wrong = [
        f"{a}:{line} imports {b}"
        for a, b, _, line in EDGES
        if unit(a) != unit(b) and rank(b) >= rank(a)
    ]
    assert not wrong, "imports against the layer table:\n" + "\n".join(wrong)


def test_client_and_remote_never_import_each_other():
    wrong = [
        f"{a}:{line} imports {b}"
        for a, b, _, line in EDGES
        if {unit(a), unit(b)} == {"client", "remote"}
    ]
    assert not wrong, wrong


def test_no_private_name_imported_across_modules():
    wrong = []
    for m in MODULES:
        for target, names, _, line in imports(m):
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    wrong.append(f"{m}:{line} imports {n} from {target}")
    assert not wrong, wrong


def owned_names(tree: ast.Module) -> Set[str]:
    """Names a module defines: functions, classes, assigned attributes and variables."""
    own: Set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(n.name)
        elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
            own.add(n.attr)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            own.add(n.id)
        elif isinstance(n, ast.alias):
            own.add(n.asname or n.name)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            own.add(n.value)  # __slots__ entries
    return own


def test_no_reaching_into_other_modules_private_attributes():
    wrong = []
    for m, tree in TREES.items():
        own = owned_names(tree)
        for n in ast.walk(tree):
            if (
                isinstance(n, ast.Attribute)
                and n.attr.startswith("_")
                and not n.attr.startswith("__")
                and n.attr not in own
                and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"))
                and n.attr not in STDLIB_PRIVATE
            ):
                wrong.append(f"{m}:{n.lineno} {ast.unparse(n)}")
    assert not wrong, "private attributes of other modules' objects:\n" + "\n".join(wrong)


def third_party(module: str) -> Set[str]:
    """Top-level names of what ``module`` imports outside the package and the stdlib."""
    out = set()
    for target, _, _, _ in imports(module):
        top = target.split(".")[0]
        if top and top != "easycluster" and top not in sys.stdlib_module_names:
            out.add(top)
    return out


def shipped_modules(role: str) -> Set[str]:
    """Our names (``remote.process``) of the modules shipped for ``role``, stage 1 included."""
    shipped = {
        module_name(PACKAGE.parent.joinpath(*n.split(".")).with_suffix(".py"))
        if not payload.is_package(n)
        else (n.partition(".")[2] or "__init__")
        for n in payload.closure(payload.ROLES[role])
    }
    shipped.add("remote.stage1")  # sent ahead of the sources, runs them
    return shipped


@pytest.mark.parametrize("role", sorted(payload.ROLES))
def test_the_shipped_set_imports_only_stdlib_cloudpickle_and_itself(role):
    shipped = shipped_modules(role)
    assert "remote.process" in shipped and "client.client" not in shipped
    wrong = []
    for m in sorted(shipped - {"__init__"}):  # the shipped __init__ is generated
        for a, b, _, line in EDGES:
            if a == m and b not in shipped and b != "__init__":
                wrong.append(f"{a}:{line} imports {b}, which is not shipped")
        extra = third_party(m) - {"cloudpickle"}
        if extra:
            wrong.append(f"{m} imports {sorted(extra)}")
    assert not wrong, "\n".join(wrong)


# What a server over ssh does not load at start-up (issue 16: its CPU above a bare
# interpreter). A shipped module imports these inside a function (when needed) or, for
# annotations, under ``TYPE_CHECKING = False; if TYPE_CHECKING:`` (mypy takes that block
# as true); ``from typing import TYPE_CHECKING`` is an import of typing like any other.
NOT_AT_SERVER_START = {
    "typing": "~2 ms with contextlib & co.; annotations are strings (from __future__)",
    "socket": "its enums cost ~1.4 ms: the C module _socket has what a server needs",
    "signal": "its enums: the C module _signal has the constants",
    "random": "only a handshake retry needs it",
    "queue": "heapq & co.: the C module _queue has SimpleQueue and Empty",
    "pickle": "imports re and enum: the C module _pickle has all a server uses",
    "linecache": "imports tokenize, re and enum: objects/sources.py fills it when loaded",
    "re": "~1.5 ms with enum; a server parses no text at start-up",
    "hashlib": "loads OpenSSL (1-3 ms): protocol/mac.py starts on the built-in SHA-256",
    "hmac": "loads OpenSSL too: protocol/mac.py has its own HMAC and compare_digest",
}


def start_up_imports(tree: ast.Module) -> Iterator[Tuple[str, int]]:
    """``(top-level module name, line)`` of each import that runs when the module is
    imported: not inside a function, not under ``if TYPE_CHECKING:`` (its ``else`` runs)."""
    todo: List[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if not node.level:
                yield (node.module or "").split(".")[0], node.lineno
        elif (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def test_start_up_imports_catch_each_form():
    tree = ast.parse(
        "import typing\n"
        "from socket import AF_UNIX\n"
        "import os, random.shuffle\n"
        "TYPE_CHECKING = False\n"
        "if TYPE_CHECKING:\n"
        "    import signal\n"
        "else:\n"
        "    import queue\n"
        "try:\n"
        "    import zlib\n"
        "except ImportError:\n"
        "    pass\n"
        "class C:\n"
        "    import json\n"
        "def f():\n"
        "    import heapq\n"
        "from . import frames\n"
    )
    found = sorted(start_up_imports(tree))
    assert found == [
        ("json", 14),
        ("os", 3),
        ("queue", 8),
        ("random", 3),
        ("socket", 2),
        ("typing", 1),
        ("zlib", 10),
    ]


@pytest.mark.parametrize("role", sorted(payload.ROLES))
def test_the_shipped_set_imports_none_of_not_at_server_start(role):
    shipped = shipped_modules(role)
    assert "remote.connection" in shipped and "transport.channel" in shipped
    wrong = [
        f"{m}:{line} imports {name} at module level ({NOT_AT_SERVER_START[name]})"
        for m in sorted(shipped - {"__init__"})  # the shipped __init__ is generated
        for name, line in start_up_imports(TREES[m])
        if name in NOT_AT_SERVER_START
    ]
    # collections.namedtuple compiles a generated __new__ when called: at import, that
    # is every server's start-up (the named tuples shipped are written out instead)
    wrong += [
        f"{m}:{n.lineno} calls namedtuple"
        for m in sorted(shipped - {"__init__"})
        for n in ast.walk(TREES[m])
        if isinstance(n, ast.Call)
        and getattr(n.func, "attr", getattr(n.func, "id", "")) == "namedtuple"
    ]
    assert not wrong, "\n".join(wrong)


def test_a_payload_carries_what_its_modules_load_on_first_need():
    # A payload holds what its roots import at module level, and what a module names in
    # LOADED_LATER: modules it imports inside a function yet needs at run time (without,
    # a tree gateway failed its first non-blocking call: "No module named ...").
    later = [
        (m, n)
        for m, tree in TREES.items()
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["LOADED_LATER"]
        for n in ast.literal_eval(node.value)
    ]
    assert ("client.client", ".response") in later
    for m, rel in later:
        full = "easycluster." + m
        target = full.rpartition(".")[0] + "." + rel.lstrip(".")  # (one level: a sibling)
        assert (m, target.removeprefix("easycluster.")) in DEFERRED, (m, rel)
        assert target in payload.closure((full,)), (m, rel)


def test_only_serialize_pickles():
    wrong = []
    for m, tree in TREES.items():
        for n in ast.walk(tree):
            if (
                isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name)
                and n.value.id in ("pickle", "cloudpickle")
                and n.attr in PICKLE_CALLS
                and m != "objects.serialize"
            ):
                wrong.append(f"{m}:{n.lineno} {ast.unparse(n)}")
    assert not wrong, wrong


def test_only_protocol_computes_macs():
    wrong = [
        f"{m}:{line}"
        for m in MODULES
        for target, _, _, line in imports(m)
        if target == "hmac" and unit(m) != "protocol"
    ]
    assert not wrong, wrong


def test_only_the_listed_modules_wait_on_file_descriptors():
    waiters = {
        m for m in MODULES for target, _, _, _ in imports(m) if target in ("select", "selectors")
    }
    assert waiters == set(FD_WAITERS), (
        f"unlisted: {sorted(waiters - set(FD_WAITERS))}, "
        f"listed but not waiting: {sorted(set(FD_WAITERS) - waiters)}"
    )


def test_server_py_is_imported_by_nothing_inside():
    wrong = [f"{a}:{line}" for a, b, _, line in EDGES if b == "server"]
    assert not wrong, wrong
