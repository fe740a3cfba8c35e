"""The ssh transport against a real OpenSSH server on loopback (the ``sshd`` fixture).

Every connection here runs the real ``ssh`` client, the real ``sshd`` and a real remote
``python3``; the only stand-ins are small scripts used as ``rpython``/``ssh`` for cases
a real system cannot produce on demand (an old Python, a hanging ssh), each said below.
"""

from __future__ import annotations

import concurrent.futures as cf
import getpass
import glob
import importlib.util
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import pid_alive, run_fresh, wait_until
from sshd import free_port

import easycluster
from easycluster import (
    AuthenticationError,
    ConfigError,
    ConnectError,
    RemoteException,
    ThreadedClient,
    define_common,
)
from easycluster.launch import payload
from easycluster.launch.ssh import classify, ssh_argv
from easycluster.protocol import boot

define_common("""
import os, sys

def ssh_add(a, b):
    return a + b

def ssh_fail(msg):
    raise KeyError(msg)

def ssh_shout(n):
    for i in range(n):
        print("remote print line", i)
    sys.stdout.write("no newline at the end")
    sys.stdout.flush()
    os.write(1, b"\\x00raw bytes to fd 1\\n")
    return n
""")


@pytest.fixture
def ssh_client(sshd):
    """Factory: ``Client``s over ssh to the test sshd, closed after the test."""
    made = []

    def make(alias: str = "sshtest0", cls=easycluster.Client, **kw):
        c = cls(**sshd.client_kw(alias, **kw))
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _script(path, text: str) -> str:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return str(path)


# -- working connections ---------------------------------------------------------------


def test_call_over_ssh(ssh_client):
    c = ssh_client()
    assert c.ssh_add(2, 3) == 5
    assert c.call("ssh_add", "a", "b") == "ab"
    assert c.os.getpid() != os.getpid()
    assert c.peername == "sshtest0"
    assert c.server_pid == c.os.getpid()


def test_remote_exception_and_nonblocking(ssh_client):
    c = ssh_client()
    with pytest.raises(KeyError, match="nope"):
        c.ssh_fail("nope")
    with pytest.raises(RemoteException) as ei:
        c.ssh_fail("again", origexc=False)
    assert isinstance(ei.value.orig, KeyError)
    assert any("ssh_fail" in line for line in ei.value.text)  # remote traceback has lines
    rs = [c.ssh_add(i, i, nonblocking=True) for i in range(50)]
    assert [r.wait(10) for r in rs] == [2 * i for i in range(50)]


def test_define_common_after_connect(ssh_client):
    c = ssh_client()
    define_common("def ssh_late():\n    return 'late'\n", name="easycluster.ssh_late_defs")
    c.update_definitions()
    assert c.call("easycluster.ssh_late_defs.ssh_late") == "late"
    assert c.eval("list(map(lambda x: x * 3, [1, 2]))") == [3, 6]


def _tmp_names() -> set:
    return {n for n in os.listdir("/tmp") if "easycluster" in n.lower()}


def test_shipped_modules_come_from_memory(ssh_client, sshd):
    before, tmp_before = sshd.home_listing(), _tmp_names()
    c = ssh_client()
    origins = c.eval(  # (cloudpickle is imported on first need: import it here)
        "[__import__('importlib').import_module(m).__spec__.origin for m in "
        "('easycluster', 'easycluster.remote.connection', 'cloudpickle')]"
    )
    assert all(o.startswith("<easycluster-ssh>/") for o in origins), origins
    assert c.eval("os.environ['HOME']") == sshd.home
    c.ssh_add(1, 1)
    c.close()
    assert sshd.home_listing() == before  # nothing written on the remote host
    assert _tmp_names() <= tmp_before


def test_remote_print_arrives_prefixed_and_never_corrupts_the_stream(ssh_client):
    got = []
    c = ssh_client(remote_output=lambda host, stream, text: got.append((stream, text)))
    assert c.ssh_shout(200) == 200
    assert c.ssh_add(20, 22) == 42  # the stream is intact after all that output
    lines = "".join(text for _, text in got)
    assert {stream for stream, _ in got} == {"stdout"}
    assert lines.startswith("remote print line 0\n")
    assert "remote print line 199\n" in lines
    assert "no newline at the end" in lines  # flushed before the reply, not lost
    assert "raw bytes to fd 1" not in lines  # fd 1 is /dev/null on the remote side


def test_remote_output_off_leaves_prints_on_ssh_stderr(ssh_client, capsys):
    c = ssh_client(remote_output=False)
    assert c.ssh_shout(200) == 200
    assert c.ssh_add(20, 22) == 42
    seen = []

    def arrived():
        seen.append(capsys.readouterr().err)
        return "remote print line 199" in "".join(seen)

    assert wait_until(arrived, timeout=10)
    assert "remote print line 0\n" in "".join(seen)


def test_compression_end_to_end(ssh_client):
    c = ssh_client(enable_compression=True)
    assert c._channel.session.compress
    data = b"easycluster " * 400_000  # 4.8 MB, compresses well
    assert c.eval("len") is len
    assert c.call("ssh_add", data, b"!") == data + b"!"


def test_large_payloads(ssh_client):
    c = ssh_client(rpython=sys.executable)  # this venv's Python: it has numpy
    blob = os.urandom(8 << 20)
    assert c.call("ssh_add", blob, b"") == blob
    arr = np.arange(2_000_000, dtype=np.float64)
    back = c.call("ssh_add", arr, 1.0)
    assert back.shape == arr.shape and back[-1] == arr[-1] + 1


def test_threaded_client_and_explicit_user(ssh_client):
    c = ssh_client(cls=ThreadedClient, user=getpass.getuser())
    assert c.peername == f"{getpass.getuser()}@sshtest0"
    futs = [c.ssh_add(i, 1, nonblocking=True) for i in range(20)]
    assert sorted(f.wait(10) for f in futs) == list(range(1, 21))


def test_close_ends_remote_server(ssh_client):
    c = ssh_client()
    pid = c.server_pid
    assert pid_alive(pid)
    c.close()
    assert wait_until(lambda: not pid_alive(pid), timeout=10)
    with pytest.raises(IOError):
        c.ssh_add(1, 2)


def test_no_fds_or_processes_left_behind(sshd):
    import gc

    def fds():
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    easycluster.Client(**sshd.client_kw()).close()  # warm up (payload cache, imports)
    before = fds()
    for kw in ({}, {"rpython": "/nonexistent/python3"}, {"port": free_port()}):
        try:
            c = easycluster.Client(**sshd.client_kw(**kw))
        except ConnectError:
            continue
        proc = c._closer.__self__.proc
        assert c.ssh_add(1, 1) == 2
        c.close()
        assert proc.returncode is not None  # reaped
    assert wait_until(lambda: fds() <= before, timeout=5), (before, fds())


def test_reconnect_over_ssh(ssh_client):
    c = ssh_client()
    first = c.server_pid
    c.reconnect()
    assert c.server_pid != first
    assert c.ssh_add(1, 2) == 3


def test_parallel_connects(sshd):
    aliases = sshd.aliases[:8]
    with cf.ThreadPoolExecutor(len(aliases)) as ex:
        clients = list(ex.map(lambda a: easycluster.Client(**sshd.client_kw(a)), aliases))
    try:
        assert len({c.server_pid for c in clients}) == len(aliases)
        assert [c.ssh_add(i, 0) for i, c in enumerate(clients)] == list(range(len(aliases)))
    finally:
        for c in clients:
            c.close()


# -- errors --------------------------------------------------------------------------------


def test_unreachable_port(sshd):
    port = free_port()  # nobody listens there
    with pytest.raises(ConnectError, match="sshtest0") as ei:
        easycluster.Client(**sshd.client_kw(port=port))
    assert "Connection refused" in str(ei.value)
    assert not isinstance(ei.value, AuthenticationError)


def test_authentication_refused(sshd):
    with pytest.raises(AuthenticationError, match="wrongkey-sshtest: authentication refused") as ei:
        easycluster.Client(**sshd.client_kw("wrongkey-sshtest"))
    assert "Permission denied" in str(ei.value)


def test_host_key_mismatch(sshd):
    with pytest.raises(AuthenticationError, match="host key verification failed") as ei:
        easycluster.Client(**sshd.client_kw("badhostkey-sshtest"))
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in str(ei.value)


def test_remote_python_missing(sshd):
    with pytest.raises(ConnectError, match="/nonexistent/python3 not found on sshtest0"):
        easycluster.Client(**sshd.client_kw(rpython="/nonexistent/python3"))


def test_rpython_cannot_inject_shell_code(sshd, tmp_path):
    marker = tmp_path / "injected"
    with pytest.raises(ConnectError, match="not found on sshtest0"):
        easycluster.Client(**sshd.client_kw(rpython=f"python3;touch {marker}"))
    assert not marker.exists()


def test_remote_python_too_old(sshd, tmp_path):
    # Stand-in: no Python 3.8 here, so a script answers as stage 0 would on one.
    old = _script(tmp_path / "python3.6", 'echo "EASYCLUSTER-BOOT 3.6.9"\nexit 3\n')
    with pytest.raises(ConnectError, match=r"remote Python 3\.6\.9 .* on sshtest0 is too old"):
        easycluster.Client(**sshd.client_kw(rpython=old))


def _other_pythons():
    """Other real interpreters on this machine (pyenv builds), by version: none in CI is fine."""
    found = {}
    for path in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/*/bin/python*"))):
        m = re.fullmatch(r"python(\d)\.(\d+)", os.path.basename(path))
        if m and os.access(path, os.X_OK):
            found.setdefault((int(m.group(1)), int(m.group(2))), path)
    return found


OTHER_PYTHONS = _other_pythons()
OLD = [v for v in OTHER_PYTHONS if v < (3, 9)]
NEW = [v for v in OTHER_PYTHONS if v >= (3, 9) and v != sys.version_info[:2]]


@pytest.mark.skipif(not OLD, reason="no Python older than 3.9 installed here")
def test_real_old_pythons_refused(sshd):
    for v in OLD:
        with pytest.raises(ConnectError, match=rf"remote Python {v[0]}\.{v[1]}\.\d+ .* too old"):
            easycluster.Client(**sshd.client_kw(rpython=OTHER_PYTHONS[v]))


@pytest.mark.skipif(not NEW, reason="no other Python >= 3.9 installed here")
def test_real_other_pythons_serve(sshd):
    for v in [min(NEW), max(NEW)]:  # the oldest supported and the newest
        with easycluster.Client(**sshd.client_kw(rpython=OTHER_PYTHONS[v])) as c:
            assert tuple(c.eval("sys.version_info[:2]")) == v
            assert c.ssh_add(2, 3) == 5
            # code objects when the bytecode version matches, else the source
            magic = c.eval("__import__('_frozen_importlib_external').MAGIC_NUMBER")
            source = c.eval("sys.modules['easycluster'].__loader__.get_source('easycluster')")
            assert (source is None) == (magic == importlib.util.MAGIC_NUMBER)
            with pytest.raises(KeyError):
                c.ssh_fail("x")


def test_remote_crash_before_and_during_bootstrap(sshd, tmp_path):
    # Stand-ins: interpreters that fail at start, and after the greeting.
    bad = _script(tmp_path / "badpython", 'echo "boom: cannot start" >&2\nexit 1\n')
    with pytest.raises(ConnectError, match="exit status 1.*boom: cannot start"):
        easycluster.Client(**sshd.client_kw(rpython=bad))
    crash = _script(
        tmp_path / "crashpython",
        'echo "EASYCLUSTER-BOOT 3.11.0"\necho "Traceback: kaput" >&2\nexit 1\n',
    )
    with pytest.raises(ConnectError, match="crashed during the bootstrap on sshtest0.*kaput"):
        easycluster.Client(**sshd.client_kw(rpython=crash))


def test_connect_timeout_kills_ssh(sshd, tmp_path):
    # Stand-in: an "ssh" that never answers, as a host that drops packets would.
    pidfile = tmp_path / "pid"
    hang = _script(tmp_path / "hangssh", f"echo $$ > {pidfile}\nexec sleep 30\n")
    t0 = time.monotonic()
    with pytest.raises(ConnectError, match="sshtest0 over ssh timed out after 1.0 s"):
        easycluster.Client(**sshd.client_kw(ssh=hang, connect_timeout=1.0))
    assert time.monotonic() - t0 < 5
    pid = int(pidfile.read_text())
    assert not pid_alive(pid)  # killed and reaped


def test_missing_ssh_program(sshd):
    with pytest.raises(ConfigError, match="/nonexistent/ssh"):
        easycluster.Client(**sshd.client_kw(ssh="/nonexistent/ssh"))


# -- pieces --------------------------------------------------------------------------------


def test_ssh_argv():
    argv = ssh_argv(
        "[2001:db8::2]", "CMD", port=2222, user="bob", ssh=True, extra_args=["-F", "cfg"]
    )
    assert argv == [
        "ssh",
        "-F",
        "cfg",
        "-T",
        "-o",
        "BatchMode=yes",
        "-p",
        "2222",
        "--",
        "bob@2001:db8::2",
        "CMD",
    ]
    assert ssh_argv("h", "C", ssh="/opt/ssh")[0] == "/opt/ssh"
    assert ssh_argv("h", "C", ssh="yes")[0] == "ssh"
    assert not any("StrictHostKeyChecking" in a for a in argv)
    with pytest.raises(ConfigError):
        ssh_argv("-oProxyCommand=x", "C")


def test_stage0_reports_version_and_runs_payload():
    """The real stage-0 command, run by a local shell: greeting, then the payload runs."""
    code = b"import os; os.write(1, b'stage one ran')"
    import zlib

    blob = zlib.compress(code)
    cmd = boot.stage0_command(sys.executable, len(blob))
    out = subprocess.run(["sh", "-c", cmd], input=blob, capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert boot.parse_greeting(out.stdout) == tuple(sys.version_info[:3])
    assert out.stdout.endswith(b"stage one ran")


def test_payload_is_small_and_cached():
    p = payload.payload()
    assert p is payload.payload()
    script, code, source = payload.unbundle(p)
    # What a connection sends: stage 1 and the compiled modules (code objects with their
    # line tables, docstrings left out: 152 KB for the source's 101 KB; 198 KB with
    # them), or source on a Python of another bytecode version. (The bound was 100 KB
    # when source went every time.)
    assert len(script) < 4_000
    assert payload.sent_size(p) == len(script) + len(code) < 170_000
    assert len(source) < 110_000
    # no docstring travels in the code, yet every line keeps its number
    sample = payload.compile_shipped('"""doc"""\ndef f():\n    """doc"""\n\n    x = 1\n', "m")
    assert sample.co_consts[0] is None or "doc" not in sample.co_consts
    f = next(c for c in sample.co_consts if hasattr(c, "co_code"))
    assert "doc" not in f.co_consts and {n for _, _, n in f.co_lines() if n} == {2, 5}
    names = payload.shipped_sources()
    assert {
        "easycluster",
        "easycluster.remote.connection",
        "easycluster.transport.pipes",
        "cloudpickle",
    } <= set(names)
    assert not {
        "easycluster.client",
        "easycluster.launch.ssh",
        "easycluster.keys",
        "easycluster.server",
    } & set(names)


def test_classify_messages():
    e = classify("h", "python3", 255, "ssh: connect to host h port 22: Connection refused", None)
    assert type(e) is ConnectError and "Connection refused" in str(e)
    e = classify("h", "python3", 255, "root@h: Permission denied (publickey).", None)
    assert type(e) is AuthenticationError
    e = classify("h", "python3", 127, "bash: python3: command not found", None)
    assert "python3 not found on h" in str(e)
    e = classify("h", "python3", 3, "", (2, 7, 18))
    assert "2.7.18" in str(e) and "too old" in str(e)


def test_pipe_socket_carries_a_channel():
    """Both handshakes and frames over two os.pipe pairs, as the ssh transport uses them."""
    import threading

    from easycluster.protocol import frames, handshake
    from easycluster.transport.handshake import client_handshake, server_handshake
    from easycluster.transport.pipes import PipeSocket

    a_r, b_w = os.pipe()
    b_r, a_w = os.pipe()
    key = os.urandom(32)
    server_side = {}

    def serve():
        server_side["ch"] = server_handshake(PipeSocket(b_r, b_w), key, handshake.WireOptions(), 10)

    t = threading.Thread(target=serve)
    t.start()
    client = client_handshake(PipeSocket(a_r, a_w), key, handshake.WireOptions(compress=True), 10)
    t.join(10)
    server = server_side["ch"]
    big = os.urandom(3 << 20)
    got = []
    reader = threading.Thread(target=lambda: got.extend(server.recv(timeout=10)))
    reader.start()  # a pipe holds 64 KiB: someone must read while the frame is written
    client.send(frames.FT_REQUEST, [b"head", b"x" * 100], [big])
    reader.join(10)
    main, bufs = got[0].parts()
    assert bytes(main) == b"head" + b"x" * 100 and bytes(bufs[0]) == big
    client.close()
    with pytest.raises(easycluster.ConnectionLost):
        while True:
            server.recv(timeout=10)
    server.close()
    with pytest.raises(OSError):
        client.sock.recv_into(bytearray(10))


def test_pipe_socket_pending_and_timeout():
    from easycluster.transport.pipes import PipeSocket

    r, w = os.pipe()
    s = PipeSocket(r, w, pending=b"abc")
    s.settimeout(0.05)
    assert s.recv(2) == b"ab"
    buf = bytearray(8)
    assert s.recv_into(buf) == 1 and buf[:1] == b"c"
    with pytest.raises(TimeoutError):
        s.recv(1)
    s.sendall(b"hello")
    assert s.recv(5) == b"hello"
    s.shutdown(2)
    assert s.recv(5) == b""  # the write end is closed: end of stream
    s.close()
    s.close()


# Modules a server over ssh never loads by itself (tests/test_layers.py says why, module by
# module: NOT_AT_SERVER_START), unless the remote interpreter's own start did.
SLOW_STDLIB = (
    "re",
    "enum",
    "pickle",
    "linecache",
    "tokenize",
    "typing",
    "socket",
    "signal",
    "hashlib",
    "_hashlib",
    "hmac",
)


def test_a_server_over_ssh_loads_no_slow_stdlib_module_after_calls(sshd):
    listing = "import sys; print(' '.join(sorted(sys.modules)))"
    bare = subprocess.run(
        ["ssh", "-F", sshd.config, "sshtest0", "python3", "-c", repr(listing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert "sys" in bare
    # a master of its own: this process has define_common blocks of other tests, which
    # every new server runs (and some of them import what they like)
    script = f"""if 1:
        import easycluster
        easycluster.define_common("def add(a, b):\\n    return a + b\\n")
        with easycluster.Client(host="sshtest0", extra_args=["-F", {sshd.config!r}]) as c:
            assert c.add(2, 3) == 5  # a define_common function, by name
            assert c.eval("1 + 1") == 2  # eval's source is remembered for tracebacks
            print(" ".join(c.eval("list(__import__('sys').modules)")))
    """
    loaded = run_fresh(script, timeout=120).split()
    assert "easycluster.remote.connection" in loaded
    assert sorted(m for m in SLOW_STDLIB if m in loaded and m not in bare) == []
