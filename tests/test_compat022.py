"""EasyCluster 0.22's public surface, name by name (reference ``easycluster-0.22.md``
sections 1.1 to 1.5), and how the names behave with real processes and sockets.

The tables list every public name under the module 0.22 had it in, with the kind, value
or call signature the reference gives; one test id per name. Signatures are checked the
way a 0.22 script calls: required parameters positionally, the others by keyword (and,
where scripts passed them positionally, all positionally), defaults equal unless a
documented deviation says otherwise.

Expected failures (strict) mark names that another change adds, in files this one does
not own: ``Client``/``ThreadedClient`` members (the client change), 0.22's method names
on the server's root object (``remote/verbs.py``) and the per-request hooks of
``Server`` (``remote/connection.py``).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import os
import pickle
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import pytest
from test_api import ALL_022

import easycluster
from easycluster import legacy
from easycluster.protocol.handshake import WireOptions
from easycluster.server import spawn_local
from easycluster.transport.handshake import client_handshake

PY = sys.executable

CLIENT_CHANGE = VERBS_CHANGE = pytest.mark.compat  # landed: no longer expected to fail
HOOK_CHANGE = pytest.mark.compat  # landed: Server's per-request hooks (server.py)

_UNCHECKED = object()  # a 0.22 default that is not a literal (spawn_local's Client)


# -- the tables -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Name:
    """One public name of 0.22: where it lived and what the reference says it is."""

    module: str
    name: str
    kind: str  # "const", "function", "class", "alias"
    value: Any = None  # const: the value (a callable checks it); alias: the target's name
    sig: Optional[str] = None  # the reference's parameter list
    positional: bool = True  # 0.22 scripts pass every parameter positionally too
    differ: Dict[str, str] = field(default_factory=dict)  # default -> why ours differs
    base: Optional[str] = None  # class: a base it must have (a name in easycluster)
    in_all: bool = False  # in 0.22's easycluster.__all__ (what define_common code sees)
    marks: Tuple[Any, ...] = ()


def _c(name: str, value: Any) -> Name:
    return Name("easycluster", name, "const", value)


def _f(name: str, sig: str, in_all: bool = True, **kw: Any) -> Name:
    return Name("easycluster", name, "function", sig=sig, in_all=in_all, **kw)


def _k(name: str, sig: Optional[str] = None, in_all: bool = True, **kw: Any) -> Name:
    return Name("easycluster", name, "class", sig=sig, in_all=in_all, **kw)


def _s(kind: str, name: str, sig: Optional[str] = None, **kw: Any) -> Name:
    return Name("easycluster.server", name, kind, sig=sig, **kw)


MSG_TYPES = {
    "ERROR": 0,
    "CHALLENGE": 1,
    "CHALLENGE_RESPONSE": 2,
    "KEEPALIVE": 3,
    "REQUEST": 4,
    "RESPONSE": 5,
    "INIT": 6,
    "MSG_COMPRESSED": 0x80,
}

MAKE_EXPORT = (
    "export_methods=('@auto',), export_attrs=('@auto',), export_attrs_cache=(), proxy_class=None"
)

NAMES: List[Name] = [
    # §1.1 constants
    _c("VERSION", lambda v: isinstance(v, str) and re.match(r"\d+\.\d+", v)),  # ours, not 0.22.3
    _c("MIN_SERVER_VERSION", "0.09"),
    _c("DEFAULT_PORT", 11998),
    _c("SINGLE", -1),
    _c("PYTHON3", True),
    _c("HMAC_MOD", lambda v: v is hashlib.md5),
    _c("HMAC_SIZE", 16),
    *(_c(n, v) for n, v in MSG_TYPES.items()),
    # §1.1 __all__, with §1.2's functions and §1.3's classes
    Name("easycluster", "AutoThreadingClient", "alias", "ThreadedClient", in_all=True),
    _k(
        "ThreadedClient",
        "keep_alive_interval=10, keep_alive_timeout=60",
        positional=False,
        base="Client",
    ),
    _k(
        "Client",
        "key=None, host=None, port=None, definitions='easycluster.remote_code', "
        "enable_compression=False, ssh=None, user=None, rpython=None, extra_args=()",
    ),
    _k("ClientGroup", "clients=()"),
    # ours is Client: Connection(key, enable_compression=...) binds by keyword only
    _k("Connection", "key, enable_compression=False", positional=False),
    _k("DefaultRemoteProxy", "client, oid", base="RemoteProxy"),
    _k("RemoteException", "orig=None, text=None", base="Exception"),
    _k("RemoteProxy", "client, oid"),
    _k("SelfIterProxy", "client, oid", base="RemoteProxy"),
    _k("ServerObject", ""),
    _f("add_key_options", "optparse_parser, key_option='-K', keyfile_option='-k'"),
    _f("call_method_multi", "_objects, _method, *a, **kw"),
    _f("call_multi", "_connections, _func, *a, **kw"),
    _f("decode_key", "s"),
    _f("define_common", "code, name='easycluster.remote_code', local=True"),
    _f("definitions_module", "name, keep_source=True"),
    _f("eval_multi", "connections, code"),
    _f("exec_return", "rval"),
    _f("execblock_multi", "connections, code"),
    _f("generate_key", ""),
    _f("key_from_options", "opts, warn=True"),
    _f("make_server_class", "typ, " + MAKE_EXPORT),
    _f("make_singleton", "obj, " + MAKE_EXPORT),
    _f("read_key_file", "path"),
    _f("write_key_file", "path, key, overwrite=False"),
    _f(
        "parse_connection_spec",
        "spec, default_port=None, default_key=b'', "
        "default_enable_compression=False, custom_options=(), warn=True",
        differ={"default_key": "None: no key means no key, never the empty HMAC key"},
    ),
    # §1.1 public but not in __all__
    _k("NonblockingResponse", in_all=False),  # made by calls, never by scripts
    _f("get_global", "name, context=None, auto_import=False", in_all=False),
    _f("set_global", "name, value, context=None", in_all=False),
    _k("GeneratorProxy", "client, oid", in_all=False, base="SelfIterProxy"),
    _k("FileProxy", "client, oid", in_all=False, base="RemoteProxy"),
    _k("PipeSocket", in_all=False),  # 0.22's took the ssh Popen; an internal of ssh mode
    # §1.4 easycluster.server
    _s("const", "MIN_CLIENT_VERSION", value="0.16"),
    _s("class", "RootObject"),
    _s("class", "Server", "key, sock, peername, verbosity=0, profile=None, repl=None"),
    _s("alias", "QuietServer", value="Server"),
    _s("class", "ServerThread", base="threading.Thread"),
    _s("function", "spawn_local", "clientclass=Client, **kw"),
    _s(
        "function",
        "run_server",
        "port, key, bindaddr=None, allow=(), verbosity=0, "
        "daemonize=False, pidfile=None, disable_ipv6=False, "
        "profile=None",
    ),
    _s("function", "stop_server", ""),
    _s("function", "server_main", "args=None"),
    _s("function", "server_check_runner", ""),
    _s("function", "create_socket", "family, bindaddr, port"),
    _s("class", "IPAddress", "text"),
    _s("function", "spawn_runner_process", "csock, peername, key, kwargs, close=()"),
    _s("function", "server_init", ""),
    _s("function", "profile_request", "func, args"),
]


@dataclass(frozen=True)
class Member:
    """A method or attribute the reference lists for a class."""

    module: str
    owner: str
    name: str
    sig: Optional[str] = None  # a method's parameters (without self); None: an attribute
    positional: bool = True
    differ: Dict[str, str] = field(default_factory=dict)
    value: Any = None  # a class attribute's 0.22 value (checked when not None)
    marks: Tuple[Any, ...] = ()


def _m(owner: str, spec: str, module: str = "easycluster", **kw: Any) -> Member:
    """``name`` (an attribute) or ``name(params)`` (a method)."""
    if "(" in spec:
        name, sig = spec.split("(", 1)
        return Member(module, owner, name, sig[:-1], **kw)
    return Member(module, owner, spec, **kw)


KWARGS_NONE = {"kwargs": "None, read as {} (no shared mutable default)"}
CALL_KEYWORDS = "nonblocking=False, oncomplete=None, onerror=None, threadid=None, origexc=True"

MEMBERS: List[Member] = [
    # §1.3 Connection (Client's base in 0.22; the same class here)
    *(
        _m("Connection", s)
        for s in (
            "peername",
            "connected",
            "connect(host, port=None, peername=None, user=None, ssh=None, rpython=None, "
            "extra_args=())",
            "reconnect()",
            "fileno()",
            "close()",
        )
    ),
    *(
        _m("Connection", s, marks=(CLIENT_CHANGE,))
        for s in (
            "remote_host",
            "remote_port",
            "set_socket(sock, peername=None)",
            "send_challenge()",
            "send_message(typ, data, delay_hmac=False)",
            "make_pickle(obj)",
            "write_fileno()",
        )
    ),
    # §1.3 Client
    _m("Client", "from_spec(spec, default_port=None, default_key=None, warn=True)"),
    _m(
        "Client", f"send_request(oid, meth, args, kwargs={{}}, {CALL_KEYWORDS})", differ=KWARGS_NONE
    ),
    _m("Client", "raw_call(func, args, kwargs={})", differ=KWARGS_NONE),
    _m("Client", "call(_func, *args, **kwargs)"),
    _m("Client", "eval(expr)"),
    _m("Client", "execblock(code)"),
    _m("Client", "import_modules(names)"),
    _m("Client", "import_module(name)"),
    _m("Client", "update_definitions()"),
    _m("Client", "set_default_thread(threadid)"),
    _m("Client", "stop_remote_thread(threadid)"),
    _m("Client", "read_response(block=True)"),
    _m("Client", "ready()"),
    _m("Client", "wait_ready()"),
    _m("Client", "get_root()"),
    _m("Client", "report_exception(exc)"),
    _m("Client", "server_version"),
    _m("Client", "close(message='Connection closed')"),
    _m("Client", "attach(channel, peername)"),  # 0.22's set_socket, public (issue 11)
    # §1.3 ThreadedClient
    _m("ThreadedClient", "check_threads()", marks=(CLIENT_CHANGE,)),
    _m("ThreadedClient", "read_response(block=True)"),
    # §1.3 ClientGroup
    _m("ClientGroup", "add_client(client)"),
    _m("ClientGroup", "remove_client(client)"),
    _m("ClientGroup", "read_responses(timeout=None, max=-1)"),
    # §1.3 NonblockingResponse (client and request_id: see test_nonblocking_response)
    _m("NonblockingResponse", "have_response"),
    _m("NonblockingResponse", "wait(origexc=None)", positional=False),  # ours: timeout first
    _m("NonblockingResponse", "fileno()"),
    _m("NonblockingResponse", "read_response(block=True)"),
    _m("NonblockingResponse", "set_response(val)"),
    # §1.3 proxies
    _m("RemoteProxy", "proxy_connection"),
    _m("RemoteProxy", "proxy_object_id"),
    _m("RemoteProxy", "raw_call_method(method, args, kwargs={})", differ=KWARGS_NONE),
    _m("RemoteProxy", "raw_get_attribute(attr)"),
    _m("RemoteProxy", "raw_set_attribute(attr, val)"),
    *(_m("DefaultRemoteProxy", s) for s in ("__getattr__", "__setattr__", "__delattr__")),
    _m("SelfIterProxy", "__next__()"),
    _m("SelfIterProxy", "__iter__()"),
    *(_m("GeneratorProxy", s) for s in ("send", "throw", "close")),
    # FileProxy: the file methods that exist in Python 3 (0.22 also listed 'next',
    # 'xreadlines' and 'readinto', which a remote Python 3 file cannot serve)
    *(
        _m("FileProxy", s)
        for s in (
            "close",
            "fileno",
            "flush",
            "isatty",
            "read",
            "readline",
            "readlines",
            "seek",
            "tell",
            "truncate",
            "write",
            "writelines",
            "closed",
            "encoding",
            "errors",
            "mode",
            "name",
            "newlines",
        )
    ),
    # §1.3 ServerObject's class attributes
    _m("ServerObject", "export_methods", value=("@auto",)),
    _m("ServerObject", "export_attrs", value=("@auto",)),
    _m("ServerObject", "export_attrs_cache", value=()),
    _m("ServerObject", "proxy_class", value=False),  # False stands for None
    # §1.4 easycluster.server
    *(
        _m("RootObject", s, "easycluster.server", marks=(VERBS_CHANGE,))
        for s in (
            "eval(code, mode)",
            "get_global(name)",
            "set_global(name, value)",
            "update_definitions(code)",
            "getattr(obj, attr)",
            "setattr(obj, attr, val)",
            "delattr(obj, attr)",
            "getmethod(obj, attr)",
            "import_modules(names)",
            "do_easycluster_upgrade(code, data)",
        )
    ),
    _m(
        "RootObject",
        "call(func, args, kwargs={})",
        "easycluster.server",
        differ=KWARGS_NONE,
        marks=(VERBS_CHANGE,),
    ),
    _m("Server", "report_connection()", "easycluster.server"),
    _m("Server", "report_disconnection()", "easycluster.server"),
    _m(
        "Server",
        "report_request(rid, garbage, tid, oid, meth, args, kw)",
        "easycluster.server",
        marks=(HOOK_CHANGE,),
    ),
    _m(
        "Server",
        "run_request(rid, oid, meth, args, kw)",
        "easycluster.server",
        marks=(HOOK_CHANGE,),
    ),
    _m("Server", "run()", "easycluster.server"),
    _m("IPAddress", "in_network(net)", "easycluster.server"),
]


def _ids(entries: List[Any]) -> List[Any]:
    out = []
    for e in entries:
        tid = f"{e.module}:{e.name}" if isinstance(e, Name) else f"{e.module}:{e.owner}.{e.name}"
        out.append(pytest.param(e, id=tid, marks=e.marks))
    return out


# -- signature checking -------------------------------------------------------------------


def _parse(spec: str) -> Tuple[List[str], Dict[str, Any], bool, bool]:
    """The reference's parameter list: required names, optional name -> default, *a, **kw."""
    args = ast.parse(f"def f({spec}): pass").body[0].args  # type: ignore[attr-defined]
    names = [a.arg for a in args.args]
    n_req = len(names) - len(args.defaults)
    optional: Dict[str, Any] = {}
    for a, d in zip(args.args[n_req:], args.defaults):
        try:
            optional[a.arg] = ast.literal_eval(d)
        except ValueError:
            optional[a.arg] = _UNCHECKED
    return names[:n_req], optional, args.vararg is not None, args.kwarg is not None


def _check_signature(
    sig: inspect.Signature, spec: str, positional: bool, differ: Dict[str, str]
) -> None:
    required, optional, varargs, varkw = _parse(spec)
    # a 0.22 call: the required parameters in order, the others by name
    sig.bind(*required, **{k: object() for k in optional})
    if positional:
        sig.bind(*required, *optional)
    if varargs:
        sig.bind(*required, "extra", "args")
    if varkw:
        sig.bind(*required, any_keyword_at_all=1)
    for name, default in optional.items():
        param = sig.parameters.get(name)
        assert param is not None, f"{name!r} only lands in **kwargs"
        if default is not _UNCHECKED and name not in differ:
            assert param.default == default, (name, param.default, default)


def _method_signature(cls: type, name: str) -> inspect.Signature:
    sig = inspect.signature(getattr(cls, name))
    raw = inspect.getattr_static(cls, name)
    if inspect.isfunction(raw):  # looked up on the class: self is still there
        sig = sig.replace(parameters=list(sig.parameters.values())[1:])
    return sig


def _resolve(dotted: str) -> Any:
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module or "easycluster"), attr)


# -- the table tests ----------------------------------------------------------------------


@pytest.mark.parametrize("entry", _ids(NAMES))
def test_name(entry: Name) -> None:
    """Importable from the module 0.22 had it in, of the kind and value it had there."""
    module = importlib.import_module(entry.module)
    ns: Dict[str, Any] = {}
    exec(f"from {entry.module} import {entry.name} as obj", ns)  # the script's own spelling
    obj = ns["obj"]
    assert obj is getattr(module, entry.name)
    if entry.in_all:
        assert entry.name in easycluster.__all__  # what 'from easycluster import *' gives
    if entry.kind == "const":
        if callable(entry.value):
            assert entry.value(obj), obj
        else:
            assert obj == entry.value and type(obj) is type(entry.value)
    elif entry.kind == "alias":
        assert obj is getattr(module, entry.value)
    elif entry.kind == "class":
        assert inspect.isclass(obj)
        if entry.base:
            base = (
                threading.Thread
                if entry.base == "threading.Thread"
                else Exception
                if entry.base == "Exception"
                else _resolve(entry.base)
            )
            assert issubclass(obj, base)
    else:
        assert entry.kind == "function"
        assert callable(obj) and not inspect.isclass(obj)
    if entry.sig is not None:
        _check_signature(inspect.signature(obj), entry.sig, entry.positional, entry.differ)


@pytest.mark.parametrize("entry", _ids(MEMBERS))
def test_member(entry: Member) -> None:
    """The class has the member (on the class: a Client instance answers any name with a
    remote global, so only the class tells), with 0.22's parameters or value."""
    cls = getattr(importlib.import_module(entry.module), entry.owner)
    assert hasattr(cls, entry.name), f"{entry.owner}.{entry.name} is missing"
    if entry.sig is not None:
        assert callable(getattr(cls, entry.name))
        _check_signature(
            _method_signature(cls, entry.name), entry.sig, entry.positional, entry.differ
        )
    if entry.value is not None:
        want = None if entry.value is False else entry.value
        assert getattr(cls, entry.name) == want


def test_tables_cover_0_22_all() -> None:
    """Every name of 0.22's ``__all__`` (reference §1.1) is in the table, marked so."""
    all_022 = set(ALL_022)
    marked = {e.name for e in NAMES if e.in_all}
    assert marked == all_022


def test_legacy_constants_are_the_package_names() -> None:
    """``easycluster.legacy`` holds the 0.22 constants the package exports, as is."""
    public = [n for n in vars(legacy) if n.isupper()]
    assert sorted(public) == sorted(
        ["MIN_SERVER_VERSION", "PYTHON3", "HMAC_MOD", "HMAC_SIZE", *MSG_TYPES]
    )
    for n in public:
        assert getattr(easycluster, n) is getattr(legacy, n)
    assert legacy.HMAC_MOD().digest_size == legacy.HMAC_SIZE  # a consistent pair, as in 0.22


# -- processes ----------------------------------------------------------------------------


class Proc:
    """A Python subprocess in its own session (killed with its children at the end), its
    stderr lines collected by a thread so a test can wait for one."""

    def __init__(self, args: List[str], cwd: Optional[str] = None, **kw: Any):
        self.proc = subprocess.Popen(
            [PY, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            start_new_session=True,
            **kw,
        )
        self.err: List[str] = []
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        self._pump = threading.Thread(target=self._read_err, daemon=True)
        self._pump.start()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr as stream:  # closed at end of stream, by the one reading it
            for line in stream:
                self.err.append(line)
                self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match:
        """The first stderr line matching ``pattern`` (AssertionError at end of stream)."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {timeout} s: {self.err}")
            if line is None:
                raise AssertionError(f"no line matching {pattern!r}; stderr: {self.err}")
            m = re.search(pattern, line)
            if m:
                return m

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30) -> Tuple[int, str, str]:
        """Close stdin, wait for the end; (exit code, stdout, stderr)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout)
        self._pump.join(timeout)
        return code, out, "".join(self.err)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        self._pump.join(10)  # stderr ends with the process group; the pump closes it


@pytest.fixture
def proc_factory():
    made: List[Proc] = []

    def make(args: List[str], **kw: Any) -> Proc:
        p = Proc(args, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.kill()


@pytest.fixture
def local_rmt():
    rmt = spawn_local()
    yield rmt
    rmt.close()


# -- the 0.22 script ----------------------------------------------------------------------

SCRIPT_022 = '''\
from easycluster.server import server_check_runner, spawn_local
server_check_runner()

import atexit
import os

from easycluster import SINGLE, RemoteException, define_common

MASTER = os.getpid()
atexit.register(lambda: print("atexit in the master:", os.getpid() == MASTER))

define_common("""
import os

def square(x):
    return x * x

def whoami():
    return os.getpid()
""")


def main():
    rmt = spawn_local()
    print("client:", type(rmt).__name__)
    print("square:", rmt.square(7))
    print("call:", rmt.call("square", 8))
    print("eval:", rmt.eval("6 * 7"))
    r = rmt.square(9, nonblocking=True)
    print("nonblocking:", r.wait())
    print("separate process:", rmt.whoami() not in (MASTER, None))
    one_off = rmt.call("threading.get_ident", threadid=SINGLE)
    print("SINGLE is another thread:", one_off != rmt.call("threading.get_ident"))
    try:
        rmt.call("int", "not a number", origexc=False)
    except RemoteException as e:
        print("remote error:", type(e.orig).__name__)
    rmt.close()
    print("closed:", not rmt.connected)


if __name__ == "__main__":
    main()
'''

SCRIPT_022_OUTPUT = """\
client: Client
square: 49
call: 64
eval: 42
nonblocking: 81
separate process: True
SINGLE is another thread: True
remote error: ValueError
closed: True
atexit in the master: True
"""


def test_0_22_script_runs(tmp_path, proc_factory) -> None:
    """A script written for 0.22 that starts with ``from easycluster.server import
    server_check_runner, spawn_local`` runs unchanged; its atexit handler runs once, in
    the master only (0.22's forked server ran it too)."""
    path = tmp_path / "script022.py"
    path.write_text(SCRIPT_022)
    p = proc_factory([str(path)], cwd=str(tmp_path))
    code, out, err = p.finish()
    assert (code, out) == (0, SCRIPT_022_OUTPUT), err


# -- python -m easycluster.server and server_main ---------------------------------------


@pytest.mark.parametrize(
    "args, code, stream, text",
    [
        (["--help"], 0, "out", "--keyfile"),
        (["--version"], 0, "out", easycluster.VERSION),
        ([], 2, "err", "nothing to do"),
        (["--no-such-option"], 2, "err", "unrecognized arguments"),
    ],
    ids=["help", "version", "no-args", "bad-option"],
)
def test_python_m_easycluster_server(args, code, stream, text) -> None:
    """``python -m easycluster.server`` is the ``easycluster`` command (reference §5);
    exit codes as ``cli/exitcodes.py`` documents them."""
    out = subprocess.run(
        [PY, "-m", "easycluster.server", *args], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == code, out
    assert text in (out.stdout if stream == "out" else out.stderr)
    assert "Warning" not in out.stderr  # no runpy double-import warning


def test_server_main_generate_key(tmp_path, capsys) -> None:
    """``server_main(args)`` runs the command in-process and returns its exit code:
    ``-g`` writes a 0600 key file, refuses to replace one without ``-O`` (0.22 exited 0
    there, having written nothing)."""
    from easycluster.server import server_main

    path = str(tmp_path / "k.key")
    assert server_main(["-g", path]) == 0
    first = easycluster.read_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(first) >= 16
    assert server_main(["-g", path]) == 2
    assert "already exists" in capsys.readouterr().err
    assert easycluster.read_key_file(path) == first
    assert server_main(["-g", path, "-O"]) == 0
    assert easycluster.read_key_file(path) != first


def test_server_check_runner_is_a_no_op(monkeypatch) -> None:
    """On POSIX it does nothing, even with 0.22's Windows child flag in argv."""
    from easycluster.server import server_check_runner

    argv = [sys.argv[0], "--easycluster-run-server"]
    monkeypatch.setattr(sys, "argv", list(argv))
    server_check_runner()  # 0.22's Windows child would have served and exited here
    assert sys.argv == argv


# -- Server over a socket pair ------------------------------------------------------------

SERVER_SCRIPT = """\
import socket, sys
from easycluster.server import Server
key = bytes.fromhex(sys.stdin.readline())
svr = Server(key, socket.socket(fileno=int(sys.argv[1])), "pair", verbosity=1)
while svr:
    svr = svr.run()
print("run() returned", svr, flush=True)
"""


HOOKED_SERVER_SCRIPT = """\
import socket, sys
from easycluster.server import Server

class Logged(Server):
    def report_request(self, rid, garbage, tid, oid, meth, args, kw):
        print("report", rid, garbage, tid, oid, meth, args, kw, flush=True)

    def run_request(self, rid, oid, meth, args, kw):
        if args == ("'refused'", "eval"):
            raise PermissionError("refused by the hook")
        value = Server.run_request(self, rid, oid, meth, args, kw)
        print("ran", rid, meth, repr(value), flush=True)
        return value

key = bytes.fromhex(sys.stdin.readline())
svr = Logged(key, socket.socket(fileno=int(sys.argv[1])), "pair")
while svr:
    svr = svr.run()
"""


def _server_on_pair(
    proc_factory, key: bytes, script: str = SERVER_SCRIPT
) -> Tuple[Proc, socket.socket]:
    """``Server(key, sock, 'pair').run()`` in a subprocess on one end of a socket pair."""
    ours, theirs = socket.socketpair()
    with theirs:
        p = proc_factory(["-c", script, str(theirs.fileno())], pass_fds=[theirs.fileno()])
    p.send(key.hex() + "\n")
    return p, ours


def test_server_over_socketpair(proc_factory) -> None:
    """0.22's ``while svr: svr = svr.run()`` serves one client, calls the connection hooks
    (their verbosity-1 lines) and ends with None when the client closes."""
    key = easycluster.generate_key()
    p, sock = _server_on_pair(proc_factory, key)
    client = easycluster.Client(key)
    client.attach(client_handshake(sock, key, WireOptions(), 20), "pair")
    try:
        assert client.eval("6 * 7") == 42
        assert client.server_pid == p.proc.pid  # served by that process, not a fork
    finally:
        client.close()
    code, out, err = p.finish()
    assert code == 0, err
    assert out.splitlines() == [
        "New connection from pair",
        "Connection to pair terminated",
        "run() returned None",
    ]


def test_server_request_hooks(proc_factory) -> None:
    """A subclass overriding 0.22's ``report_request``/``run_request`` sees every call
    (on the thread that runs it) and decides its reply: the value run_request returns,
    or the exception it raises."""
    key = easycluster.generate_key()
    p, sock = _server_on_pair(proc_factory, key, HOOKED_SERVER_SCRIPT)
    printed: List[str] = []  # (what the hooks print comes back as remote output)
    client = easycluster.Client(key, remote_output=lambda host, stream, text: printed.append(text))
    client.attach(client_handshake(sock, key, WireOptions(), 20), "pair")
    try:
        assert client.eval("6 * 7") == 42
        assert client.eval("1 + 1", threadid=3) == 2
        with pytest.raises(PermissionError, match="refused by the hook"):
            client.eval("'refused'", origexc="quiet")
    finally:
        client.close()
    code, out, err = p.finish()
    assert code == 0, err
    lines = [line for line in "".join(printed).splitlines() if "eval" in line]
    assert [line.split()[0] for line in lines] == ["report", "ran", "report", "ran", "report"]
    assert "('6 * 7', 'eval')" in lines[0] and "ran" in lines[1] and lines[1].endswith("42")
    assert lines[0].split()[2:4] == ["[]", "0"]  # no garbage; thread 0
    assert lines[2].split()[2:4] == ["[]", "3"]  # thread 3


def test_server_wrong_key(proc_factory) -> None:
    """A client with another key is refused; the server's run() reports it and returns."""
    p, sock = _server_on_pair(proc_factory, easycluster.generate_key())
    with sock, pytest.raises(easycluster.ConnectionLost):
        client_handshake(sock, easycluster.generate_key(), WireOptions(), 20)
    code, out, err = p.finish()
    assert code == 0, err
    assert out.splitlines() == ["run() returned None"]  # no connection was reported
    assert "pair: handshake failed" in err


def test_server_refuses_the_empty_key() -> None:
    """0.22's ``spawn_local`` served with key ``b''``; ours refuses an empty key."""
    from easycluster.server import Server

    a, b = socket.socketpair()
    with a, b, pytest.raises(ValueError, match="empty"):
        Server(b"", a, "pair")


def test_set_socket(proc_factory) -> None:
    """``Client.set_socket(sock, peername)`` (0.22) adopts a socket connected to a server:
    the handshake runs with the client's key."""
    key = easycluster.generate_key()
    p, sock = _server_on_pair(proc_factory, key)
    client = easycluster.Client(key)
    try:
        client.set_socket(sock, "pair")
        assert client.peername == "pair" and client.eval("1 + 1") == 2
    finally:
        client.close()
        p.finish()


SPAWN_RUNNER_SCRIPT = """\
import os, select, socket
from easycluster import Client, generate_key
from easycluster.protocol.handshake import WireOptions
from easycluster.server import server_init, spawn_runner_process
from easycluster.transport.handshake import client_handshake

key = generate_key()
server_init()
csock, ssock = socket.socketpair()
pid = spawn_runner_process(ssock, "pair", key, {"verbosity": 1}, close=(csock,))
ssock.close()
pidfd = os.pidfd_open(pid)
client = Client(key)
client.attach(client_handshake(csock, key, WireOptions(), 20), "pair")
print("served by the child:", client.server_pid == pid != os.getpid(), flush=True)
client.close()
print("child ended:", bool(select.select([pidfd], [], [], 20)[0]), flush=True)
"""


def test_spawn_runner_process(proc_factory) -> None:
    """``server_init()`` then ``spawn_runner_process(...)`` forks a child serving the
    socket; it ends when the client closes (and is reaped by server_init's handler)."""
    if not hasattr(os, "pidfd_open"):
        pytest.skip("needs os.pidfd_open to watch the child without polling")
    p = proc_factory(["-c", SPAWN_RUNNER_SCRIPT])
    code, out, err = p.finish()
    assert code == 0, err
    assert out.splitlines() == [
        "New connection from pair",
        "served by the child: True",
        "Connection to pair terminated",
        "child ended: True",
    ]


# -- run_server and stop_server -----------------------------------------------------------

RUN_SERVER_SCRIPT = """\
import sys, threading
from easycluster.server import run_server, stop_server

key = bytes.fromhex(sys.stdin.readline())

def stopper():
    sys.stdin.readline()
    print("stop_server() ->", stop_server(), flush=True)

print("before serving, stop_server() ->", stop_server(), flush=True)
t = threading.Thread(target=stopper, daemon=True)
t.start()
rc = run_server(0, key, bindaddr="127.0.0.1", allow=[sys.argv[1]])
t.join()
print("run_server returned", rc, flush=True)
"""


@pytest.mark.parametrize(
    "allow, admitted",
    [("127.0.0.0/8", True), ("10.0.0.0/8", False)],
    ids=["allowed", "not-allowed"],
)
def test_run_server_and_stop_server(proc_factory, allow, admitted) -> None:
    """``run_server(port, key, bindaddr, allow)`` serves clients on its allow list only;
    ``stop_server()`` from another thread makes it return 0; with nothing serving
    ``stop_server()`` does nothing (0.22's behaviour)."""
    key = easycluster.generate_key()
    p = proc_factory(["-c", RUN_SERVER_SCRIPT, allow])
    p.send(key.hex() + "\n")
    port = int(p.wait_for(r"serving on 127\.0\.0\.1:(\d+)").group(1))
    if admitted:
        with easycluster.Client(key, "127.0.0.1", port) as client:
            assert client.eval("2 + 3") == 5
    else:
        with pytest.raises(easycluster.ConnectionLost):
            easycluster.Client(key, "127.0.0.1", port)
    p.send("stop\n")
    code, out, err = p.finish()
    assert code == 0, err
    assert out.splitlines() == [
        "before serving, stop_server() -> False",
        "stop_server() -> True",
        "run_server returned 0",
    ]


def test_stop_server_with_nothing_serving() -> None:
    from easycluster.server import stop_server

    before = signal.getsignal(signal.SIGTERM)
    assert stop_server() is False
    assert signal.getsignal(signal.SIGTERM) is before


def test_run_server_refuses_the_empty_key() -> None:
    from easycluster.server import run_server

    with pytest.raises(ValueError, match="empty"):
        run_server(0, b"", bindaddr="127.0.0.1")


# -- create_socket and IPAddress ------------------------------------------------------------


def _accepts(sock: socket.socket, host: str) -> bool:
    """Whether a client at ``host`` reaches ``sock`` (made to listen here)."""
    sock.listen(1)
    with socket.create_connection((host, sock.getsockname()[1]), timeout=10) as c:
        peer, _ = sock.accept()
        with peer:
            c.sendall(b"x")
            return peer.recv(1) == b"x"


def test_create_socket_ipv4_port_0() -> None:
    """Bound to a free port, SO_REUSEADDR set, not yet listening (as 0.22: the caller
    calls ``listen``)."""
    from easycluster.server import create_socket

    with create_socket(socket.AF_INET, "127.0.0.1", 0) as sock:
        host, port = sock.getsockname()
        assert (sock.family, host) == (socket.AF_INET, "127.0.0.1") and port > 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
        assert _accepts(sock, "127.0.0.1")


def test_create_socket_ipv6_is_dual_stack() -> None:
    from easycluster.server import create_socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        sock = create_socket(socket.AF_INET6, None, 0)
    except OSError as e:
        pytest.skip(f"no IPv6 here: {e}")
    with sock:
        if sock.family != socket.AF_INET6:
            pytest.skip("the system has no IPv6 (create_socket fell back to IPv4)")
        assert not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        assert _accepts(sock, "127.0.0.1")  # an IPv4 client on the IPv6 socket


def test_create_socket_ipv4_address_on_ipv6_family() -> None:
    """An IPv4 ``bindaddr`` wins over AF_INET6 (0.22 resolved it with any family)."""
    from easycluster.server import create_socket

    with create_socket(socket.AF_INET6, "127.0.0.1", 0) as sock:
        assert sock.family == socket.AF_INET and sock.getsockname()[0] == "127.0.0.1"


@pytest.mark.parametrize(
    "addr, net, inside",
    [
        ("10.1.2.3", "10.0.0.0/8", True),
        ("11.0.0.1", "10.0.0.0/8", False),
        ("10.1.2.3", "10.1.2.3", True),
        ("10.1.2.4", "10.1.2.3", False),
        ("10.1.2.3", "10.9.9.9/8", True),  # host bits of the network are cleared
        ("192.168.1.5", "0.0.0.0/0", True),
        ("2001:db8::5", "2001:db8::/32", True),
        ("2001:db9::5", "2001:db8::/32", False),
        ("::ffff:192.168.1.5", "192.168.0.0/16", True),  # IPv4-mapped counts as IPv4
        ("192.168.1.5", "::ffff:192.168.0.0/112", True),
        ("10.1.2.3", "::/0", False),  # families never mix
        ("::1", "0.0.0.0/0", False),
    ],
)
def test_ipaddress_in_network(addr, net, inside) -> None:
    from easycluster.server import IPAddress

    assert IPAddress(addr).in_network(IPAddress(net)) is inside
    assert IPAddress(addr).in_network(net) is inside  # text works too


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10.1.2",
        "10.1.2.300",
        "10.0.0.0/33",
        "2001:db8::/129",
        "host.example",
        "1:2:3:4:5:6:7:8:9",
    ],
)
def test_ipaddress_rejects_bad_text(text) -> None:
    from easycluster.server import IPAddress

    with pytest.raises(ValueError):
        IPAddress(text)


# -- spawn_local and Client -----------------------------------------------------------------


def test_spawn_local_uses_attach() -> None:
    """``spawn_local`` hands its connection to ``Client.attach`` (0.22's ``set_socket``),
    so a client class can hook it; ``clientclass`` is 0.22's first parameter."""
    seen = []

    class Hooked(easycluster.Client):
        def attach(self, channel, peername, closer=None):
            seen.append(peername)
            super().attach(channel, peername, closer)

    rmt = spawn_local(Hooked)
    try:
        assert type(rmt) is Hooked and rmt.eval("1 + 1") == 2
        assert seen == [rmt.peername] and seen[0].startswith("local:")
    finally:
        rmt.close()


def test_spawn_local_0_22_keywords() -> None:
    """``spawn_local(ThreadedClient, verbosity=..., profile=...)``: 0.22's keywords."""
    rmt = spawn_local(clientclass=easycluster.ThreadedClient, verbosity=0, profile=None)
    try:
        assert isinstance(rmt, easycluster.ThreadedClient)
        assert rmt.eval("3 * 3") == 9
        with pytest.raises(TypeError):
            rmt.read_response()  # 0.22: a ThreadedClient reads by itself
    finally:
        rmt.close()


def test_clients_positional_over_tcp(tcp_server, key) -> None:
    """``Client(key, host, port)`` and ``ThreadedClient(key, host, port, keep_alive_...)``
    as 0.22 scripts wrote them, against a real ``easycluster -S``."""
    with easycluster.Client(key, "127.0.0.1", tcp_server.port) as c:
        assert c.connected and c.eval("1 + 2") == 3
    t = easycluster.ThreadedClient(
        key, "127.0.0.1", tcp_server.port, keep_alive_interval=5, keep_alive_timeout=30
    )
    with t:
        assert t.call("divmod", 17, 5) == (3, 2)
    assert not t.connected


def test_remote_host_and_port(tcp_server, key, local_rmt) -> None:
    """0.22: the host and port given to ``connect()``, None for a local connection."""
    with easycluster.Client(key, "127.0.0.1", tcp_server.port) as c:
        assert (c.remote_host, c.remote_port) == ("127.0.0.1", tcp_server.port)
    assert (local_rmt.remote_host, local_rmt.remote_port) == (None, None)


def test_make_pickle_and_write_fileno(local_rmt) -> None:
    assert pickle.loads(local_rmt.make_pickle([1, "two", (3,)])) == [1, "two", (3,)]
    assert local_rmt.write_fileno() == local_rmt.fileno()


# -- §1.3 NonblockingResponse and §1.5 the per-call keywords ---------------------------------


def test_nonblocking_response(local_rmt) -> None:
    r = local_rmt.call("divmod", 17, 5, nonblocking=True)
    assert isinstance(r, easycluster.NonblockingResponse)
    assert r.client is local_rmt and isinstance(r.request_id, int)
    assert r.fileno() == local_rmt.fileno()
    assert r.wait() == (3, 2) and r.have_response
    bad = local_rmt.call("int", "x", nonblocking=True)
    with pytest.raises(easycluster.RemoteException) as info:
        bad.wait(origexc=False)
    assert isinstance(info.value.orig, ValueError)


def test_oncomplete_and_onerror(local_rmt) -> None:
    """``oncomplete=(f, *extra)`` returns the request id and later runs ``f(result,
    *extra)``; ``onerror`` defaults to ``oncomplete`` and gets the RemoteException."""
    got: List[Tuple[Any, ...]] = []
    done = threading.Semaphore(0)

    def cb(value: Any, *extra: Any) -> None:
        got.append((value, *extra))
        done.release()

    rid = local_rmt.call("divmod", 7, 2, oncomplete=(cb, "tag"))
    assert isinstance(rid, int)
    local_rmt.call("int", "x", oncomplete=cb)
    local_rmt.call("int", "y", oncomplete=cb, onerror=(cb, "err"))
    assert local_rmt.eval("0") == 0  # a plain Client: a blocking call reads the others
    for _ in range(3):
        assert done.acquire(timeout=20)
    assert got[0] == ((3, 1), "tag")
    assert isinstance(got[1][0], easycluster.RemoteException)
    assert isinstance(got[1][0].orig, ValueError) and len(got[1]) == 1
    assert isinstance(got[2][0], easycluster.RemoteException) and got[2][1] == "err"


def test_threadid(local_rmt) -> None:
    """An integer names a persistent server thread; ``SINGLE`` a one-off thread; None the
    client's default (``set_default_thread``)."""
    ident = "threading.get_ident"
    main = local_rmt.call(ident)
    seven = local_rmt.call(ident, threadid=7)
    assert local_rmt.call(ident, threadid=7) == seven != main
    assert local_rmt.call(ident, threadid=easycluster.SINGLE) not in (main, seven)
    local_rmt.set_default_thread(7)
    assert local_rmt.call(ident) == seven
    local_rmt.set_default_thread(0)
    assert local_rmt.call(ident) == main


def test_origexc(local_rmt, capfd) -> None:
    """True: the original exception, traceback printed; 'quiet': not printed; False:
    RemoteException with ``orig`` and ``text``."""
    with pytest.raises(ZeroDivisionError):
        local_rmt.eval("1 / 0")
    assert "ZeroDivisionError" in capfd.readouterr().err
    with pytest.raises(ZeroDivisionError):
        local_rmt.eval("1 / 0", origexc="quiet")
    assert capfd.readouterr().err == ""
    with pytest.raises(easycluster.RemoteException) as info:
        local_rmt.eval("1 / 0", origexc=False)
    assert isinstance(info.value.orig, ZeroDivisionError)
    assert all(isinstance(t, str) for t in info.value.text)
    assert "ZeroDivisionError" in "".join(info.value.text)


HARMLESS = {
    "nonblocking": False,
    "oncomplete": None,
    "onerror": None,
    "threadid": None,
    "origexc": True,
}


@pytest.mark.parametrize("keyword", list(HARMLESS))
def test_special_keyword_is_taken_out(local_rmt, keyword) -> None:
    """The five keywords never reach the remote function through the sugar (``call``,
    ``rmt.func``, proxies); ``raw_call`` passes them through."""
    assert keyword in inspect.signature(easycluster.Client.send_request).parameters
    kw = {keyword: HARMLESS[keyword]}
    assert local_rmt.call("dict", a=1, **kw) == {"a": 1}
    assert local_rmt.dict(a=1, **kw) == {"a": 1}
    assert local_rmt.raw_call("dict", (), {keyword: "x"}) == {keyword: "x"}


def test_root_object_verbs_by_0_22_names(local_rmt) -> None:
    """``get_root()`` reaches object 0, whose verbs keep 0.22's names on the wire;
    ``do_easycluster_upgrade`` (0.22's self-upgrade by exec) is refused."""
    root = local_rmt.get_root()
    assert isinstance(root, easycluster.RemoteProxy) and root.proxy_object_id == 0
    assert root.eval("6 * 7", "eval") == 42
    assert root.call("divmod", (17, 5), {}) == (3, 2)
    root.set_global("answer_022", 42)
    assert root.get_global("answer_022") == 42 == local_rmt.answer_022.value
    root.import_modules(["json"])
    assert local_rmt.eval("json.dumps([1])") == "[1]"
    with pytest.raises(AttributeError):
        root.do_easycluster_upgrade("import os; os._exit(3)", {}, origexc="quiet")
    assert local_rmt.eval("1") == 1  # nothing ran, the server is alive


def test_star_import_in_definitions() -> None:
    """Definitions code sees 0.22's ``__all__`` without importing it (reference §1.1)."""
    module = "easycluster.compat022_definitions"  # its own module: nobody else gets it
    easycluster.define_common(
        textwrap.dedent("""
        def compat022_names():
            return [n for n in ("ServerObject", "make_singleton", "exec_return",
                                "RemoteException") if n in globals()]
        """),
        module,
    )
    with spawn_local(definitions=module) as rmt:
        assert rmt.compat022_names() == [
            "ServerObject",
            "make_singleton",
            "exec_return",
            "RemoteException",
        ]
