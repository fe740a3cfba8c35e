"""The EasyCluster API over every transport: globals, verbs, definitions, responses."""

from __future__ import annotations

import concurrent.futures as cf
import os

import numpy as np
import pytest
from helpers import in_threads

import easycluster
from easycluster import ConnectionLost, RemoteException, define_common
from easycluster.server import spawn_local

define_common("""
import time

def addvals(a, b):
    return a + b

def fail(msg):
    raise ValueError(msg)

def echo(x):
    return x

def slow(t, v):
    time.sleep(t)
    return v

counter = 0

def bump():
    global counter
    counter += 1
    return counter
""")


def test_call_defined_function(rmt):
    assert rmt.addvals(3, 4) == 7
    assert rmt.call("addvals", "a", "b") == "ab"
    assert rmt.raw_call("addvals", (1,), {"b": 2}) == 3


def test_definitions_also_run_locally():
    from easycluster.remote_code import addvals

    assert addvals(1, 2) == 3


def test_dotted_names_auto_import(rmt):
    assert rmt.os.path.join("a", "b") == "a/b"
    assert rmt.os.getpid() != os.getpid()
    assert rmt.eval("os.getpid()") == rmt.os.getpid()  # os was bound by auto-import


def test_global_value_get_set(rmt):
    rmt.x.value = 5
    assert rmt.x.value == 5
    assert rmt.eval("x * 2") == 10
    assert rmt.counter.value == 0
    assert rmt.bump() == 1
    assert rmt.counter.value == 1


def test_eval_execblock_exec_return(rmt):
    assert rmt.eval("6 * 7") == 42
    assert rmt.execblock("y = 3") is None
    assert rmt.execblock("exec_return(y + 1)") == 4


def test_import_modules(rmt):
    rmt.import_modules(["json", "xml.dom"])
    assert rmt.eval("json.dumps([1])") == "[1]"
    assert rmt.eval("xml.dom.__name__") == "xml.dom"


def test_update_definitions(rmt, transport):
    name = f"late_function_{transport}"  # define_common is global: one name per run
    with pytest.raises(NameError):
        rmt.call(name, origexc="quiet")
    define_common(f"def {name}():\n    return 'late'\n")
    rmt.update_definitions()
    assert rmt.call(name) == "late"


def test_new_client_gets_all_definitions(make_client):
    define_common("def another_late():\n    return 'again'\n")
    assert make_client().another_late() == "again"


def test_define_common_other_module(rmt):
    define_common("def inner():\n    return __name__\n", name="easycluster.other_defs")
    rmt.update_definitions()
    assert rmt.call("easycluster.other_defs.inner") == "easycluster.other_defs"


def test_lambda_and_closure_by_value(rmt):
    base = 10
    rmt.x.value = lambda a: a + base
    assert rmt.eval("x(5)") == 15
    assert rmt.echo(lambda: 7)() == 7


def test_exception_origexc_true_prints_traceback(rmt, capsys):
    with pytest.raises(ValueError, match="boom"):
        rmt.fail("boom")
    err = capsys.readouterr().err
    assert "Remote traceback" in err and "in fail" in err


def test_exception_quiet_and_remoteexception(rmt, capsys):
    with pytest.raises(ValueError, match="quiet one"):
        rmt.fail("quiet one", origexc="quiet")
    assert "Remote traceback" not in capsys.readouterr().err
    with pytest.raises(RemoteException) as ei:
        rmt.fail("wrapped", origexc=False)
    assert isinstance(ei.value.orig, ValueError)
    assert any("in fail" in line for line in ei.value.text)


def test_nonblocking_response_is_a_future(rmt):
    r1 = rmt.addvals(5, 8, nonblocking=True)
    r2 = rmt.addvals(14, 18, nonblocking=True)
    assert isinstance(r1, cf.Future)
    assert r2.wait() == 32 and r1.wait() == 13
    assert r1.have_response and r1.done()
    assert r1.result(timeout=1) == 13


def test_futures_wait_and_as_completed(rmt):
    fs = [rmt.slow(0.01 * (i % 3), i, nonblocking=True) for i in range(10)]
    done, not_done = cf.wait(fs, timeout=10)
    assert not not_done and sorted(f.result() for f in done) == list(range(10))
    fs = [rmt.addvals(i, 1, nonblocking=True) for i in range(10)]
    assert sorted(f.result() for f in cf.as_completed(fs, timeout=10)) == list(range(1, 11))


def test_add_done_callback_and_exception(rmt):
    seen = []
    r = rmt.fail("cb", nonblocking=True)
    r.add_done_callback(lambda f: seen.append(type(f.exception(0))))
    with pytest.raises(ValueError):
        r.wait(origexc="quiet")
    assert seen == [RemoteException]


def test_oncomplete_onerror(rmt):
    got = []
    rid = rmt.addvals(1, 2, oncomplete=(lambda v, tag: got.append((tag, v)), "ok"))
    assert isinstance(rid, int)
    rmt.fail(
        "e",
        oncomplete=lambda v: got.append(("oc", v)),
        onerror=lambda e: got.append(("err", type(e.orig))),
    )
    rmt.fail("f", oncomplete=lambda v: got.append(("both", type(v))))
    rmt.addvals(0, 0)  # a blocking call reads the earlier replies, running the callbacks
    assert ("ok", 3) in got and ("err", ValueError) in got
    assert ("both", RemoteException) in got


def test_wait_timeout_then_result(rmt):
    r = rmt.slow(0.5, "late", nonblocking=True)
    with pytest.raises(easycluster.CallTimeout):
        r.wait(timeout=0.05)
    assert r.wait(timeout=10) == "late"


def test_threads_share_plain_client(rmt):
    results = []

    def work(n):
        for i in range(30):
            results.append(rmt.addvals(n, i) == n + i)

    in_threads(work, 4, timeout=30)
    assert len(results) == 120 and all(results)


def test_threadid_and_single(rmt):
    r1 = rmt.addvals(101, 102, nonblocking=True, threadid=1)
    r2 = rmt.addvals(222, 333, nonblocking=True, threadid=2)
    r3 = rmt.addvals(555, 888, nonblocking=True, threadid=easycluster.SINGLE)
    assert [r1.wait(), r2.wait(), r3.wait()] == [203, 555, 1443]
    rmt.import_modules("threading")
    expr = "threading.current_thread().name"
    names = {rmt.eval(expr), rmt.eval(expr, threadid=1), rmt.eval(expr, threadid=1)}
    assert len(names) == 2
    rmt.stop_remote_thread(1)
    rmt.set_default_thread(2)
    assert rmt.addvals(1, 1) == 2


def test_large_payloads(rmt):
    data = os.urandom(3 << 20)
    assert rmt.echo(data) == data
    arr = np.arange(1 << 18, dtype="float64")
    out = rmt.echo(arr)
    assert out.dtype == arr.dtype and np.array_equal(out, arr)
    ba = bytearray(b"z" * (1 << 17))
    assert rmt.echo(ba) == ba


def test_compression(transport, make_client):
    c = make_client(enable_compression=True)
    assert c._channel.session.compress
    text = "hello " * 100000
    assert c.echo(text) == text


def test_close_fails_pending_and_later_calls(rmt):
    r = rmt.slow(5, 1, nonblocking=True)
    rmt.close()
    with pytest.raises(ConnectionLost):
        r.wait(timeout=5)
    with pytest.raises(IOError):
        rmt.addvals(1, 2)


@pytest.mark.parametrize("how", ["tcp", "local"])
def test_reconnect_gives_fresh_process(how, request):
    from helpers import connect

    c = connect(how, request)
    try:
        first = c.os.getpid()
        c.x.value = 1
        c.reconnect()
        assert c.os.getpid() != first
        with pytest.raises(NameError):
            c.x.value  # noqa: B018 - fresh state
    finally:
        c.close()


def test_reconnect_needs_an_address_or_spawn_local():
    c = easycluster.Client()  # never connected: nothing to connect again to
    with pytest.raises(easycluster.ConfigError, match="reconnect"):
        c.reconnect()


def test_context_manager_closes(transport, request):
    from helpers import connect

    with connect(transport, request) as c:
        assert c.addvals(2, 2) == 4
    assert not c.connected


def test_each_connection_is_its_own_process(make_client):
    a, b = make_client(), make_client()
    a.x.value = "a"
    with pytest.raises(NameError):
        b.x.value  # noqa: B018
    assert a.os.getpid() != b.os.getpid()


def test_failing_definitions_raise_and_leak_nothing(transport, request):
    from helpers import connect

    define_common("raise RuntimeError('bad block')", name="easycluster.bad_defs", local=False)
    try:
        # (0.22 let the block's own RuntimeError through, naming no host)
        with pytest.raises(easycluster.DefinitionsError, match="bad block") as info:
            connect(transport, request)
        assert info.value.host and str(info.value).startswith(info.value.host + ": ")
    finally:
        from easycluster.objects import definitions as defs

        defs._blocks[:] = [b for b in defs._blocks if b[0] != "easycluster.bad_defs"]


def test_batched_replies_respect_the_peer_frame_limit():
    """Many replies that together exceed the client's frame limit all arrive; one that
    alone exceeds it fails clearly, and the connection goes on."""
    define_common("def core_blob(n):\n    return 'x' * n\n")
    with spawn_local(max_frame=100_000) as c:
        rs = [c.core_blob(20_000, nonblocking=True) for _ in range(30)]
        assert [len(r.wait(timeout=10)) for r in rs] == [20_000] * 30
        with pytest.raises(easycluster.FrameTooLarge, match="limit of 100000"):
            c.core_blob(200_000, origexc="quiet")
        assert c.core_blob(5) == "xxxxx"


def test_define_common_block_may_call_define():
    define_common("define('nested_defined = 41 + 1')", name="easycluster.nested_defs")
    import easycluster.nested_defs as mod

    assert mod.nested_defined == 42


DEFINITIONS_FAIL = """
import os, easycluster
from easycluster.server import spawn_local
easycluster.define_common(
    "import os\\n"
    "def boom(x):\\n"
    "    return 1 / x  # the user's own line\\n"
    f"if os.getpid() != {os.getpid()}:\\n"
    "    import no_such_module_here\\n"
)
try:
    spawn_local()
except easycluster.DefinitionsError as e:
    print(str(e))
"""


def test_a_define_common_block_failing_on_the_server_names_host_block_and_python(tmp_path):
    """A block that imports what only the master has: the error names the server, the
    definitions module, the server's Python and shows the block's own source line."""
    import subprocess
    import sys

    script = tmp_path / "fail.py"
    script.write_text(DEFINITIONS_FAIL)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.startswith("local:"), out
    assert "define_common block of 'easycluster.remote_code' failed there" in out
    assert f"Python: {sys.executable}" in out
    assert "    import no_such_module_here\n" in out  # the source line, from the block
    assert "ModuleNotFoundError" in out and "install what it needs there" in out
    assert "verbs.py" not in out  # our dispatch frames are left out


define_common("""
def core_divide(x):
    return 1 / x  # core_divide's line
""")


def test_remote_tracebacks_show_define_common_source_lines(rmt):
    with pytest.raises(RemoteException) as info:
        rmt.core_divide(0, origexc=False)
    assert "return 1 / x  # core_divide's line" in str(info.value)
