"""The boot service: the kit, --install/--uninstall into a staging root, systemd-analyze,
the exact ExecStart serving, reloading on SIGHUP and draining on SIGTERM, limits, bad
configurations, and the service commands where systemd is not running."""

from __future__ import annotations

import os
import queue
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest
from helpers import ROOT, ServerProcess, pid_alive, wait_until

import easycluster
from easycluster import cli, keys
from easycluster.errors import ConnectionLost
from easycluster.protocol import handshake
from easycluster.service import systemd
from easycluster.service.listener import Listener

HOST = "127.0.0.1"
EXE = os.path.join(os.path.dirname(sys.executable), "easycluster")
SYSTEMD_RUNNING = os.path.isdir(systemd.SYSTEMD_RUNNING_PROBE)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


class Service(ServerProcess):
    """A server started from an exact argv (the unit's ExecStart), log lines captured."""

    def __init__(self, argv, env=None):
        self._start(argv, env)

    def text(self) -> str:
        return "".join(self.log)


def read(path) -> str:
    with open(path) as f:
        return f.read()


def install_root(tmp_path, *extra: str):
    """Install into a fresh staging root (in this process); return (root, layout)."""
    root = tmp_path / "root"
    assert cli.main(["--install", "--root", str(root), *extra]) == 0
    return root, systemd.Layout(root=str(root))


def refused(key: bytes, port: int) -> bool:
    try:
        with easycluster.Client(key, HOST, port, connect_timeout=5) as c:
            c.eval("1")
    except ConnectionLost:
        return True
    return False


# -- the kit ---------------------------------------------------------------------------


def test_the_one_kit_is_package_data():
    kit = os.path.join(ROOT, "easycluster", "service", "kit")
    assert sorted(os.listdir(kit)) == sorted(systemd.KIT_FILES)
    for name in systemd.KIT_FILES:
        with open(os.path.join(kit, name), encoding="utf-8") as f:
            assert systemd.kit_text(name) == f.read()  # reachable as package data
    assert not os.path.exists(os.path.join(ROOT, "server"))  # no second copy to drift


def test_default_configuration_parses_and_binds_loopback():
    from easycluster.service.config import parse_config

    values = {k: v for k, (v, _) in parse_config(systemd.kit_text("easycluster.conf")).items()}
    assert values["bind"] == "127.0.0.1" and values["port"] == easycluster.DEFAULT_PORT
    assert values["keyfile"] == "/etc/easycluster/easycluster.key"
    assert values["max_connections"] > 0 and values["grace"] < 90  # below TimeoutStopSec


def test_rendered_unit():
    text = systemd.render_unit("/etc/easycluster/easycluster.conf")
    assert systemd.exec_start(text) == [EXE, "-S", "--config", "/etc/easycluster/easycluster.conf"]
    for line in (
        "Restart=on-failure",
        "After=network-online.target",
        "Wants=network-online.target",
        "KillMode=mixed",
        "Type=notify",
        "WantedBy=multi-user.target",
    ):
        assert line in text.splitlines()
    odd = systemd.render_unit("/etc/my dir/50%$.conf", ["/opt/my venv/bin/easycluster"])
    assert systemd.exec_start(odd) == [
        "/opt/my venv/bin/easycluster",
        "-S",
        "--config",
        "/etc/my dir/50%$.conf",
    ]
    assert '"/etc/my dir/50%%$$.conf"' in odd


# -- install / uninstall ---------------------------------------------------------------


def test_install_into_a_root_writes_files_with_modes(tmp_path, capsys):
    root, lay = install_root(tmp_path, "-b", "*", "-a", "10.0.0.0/8", "-p", "12345", "--grace", "5")
    out = capsys.readouterr().out
    unit, conf, key = (lay.host(p) for p in (lay.unit, lay.config, lay.key))
    assert mode(key) == 0o600 and mode(unit) == 0o644 and mode(conf) == 0o644
    assert len(keys.read_key_file(key)) == keys.KEY_BYTES
    link = root / "etc/systemd/system/multi-user.target.wants/easycluster.service"
    assert os.readlink(link) == "/etc/systemd/system/easycluster.service"
    text = read(conf)
    for line in ("bind = *", "allow = 10.0.0.0/8", "port = 12345", "grace = 5.0"):
        assert line in text.splitlines()
    assert "wrote a new key" in out and "enabled easycluster.service" in out
    assert "loopback only" not in out
    assert cli.main(["--query-installed", "--root", str(root)]) == 0
    assert "installed:" in capsys.readouterr().out


def test_install_never_overwrites_config_or_key_without_O(tmp_path, capsys):
    root, lay = install_root(tmp_path)
    conf, keyfile = lay.host(lay.config), lay.host(lay.key)
    with open(conf, "a") as f:
        f.write("# edited by the admin\n")
    first_key = keys.read_key_file(keyfile)
    capsys.readouterr()

    assert cli.main(["--install", "--root", str(root), "-p", "1"]) == 0
    out = capsys.readouterr().out
    assert "kept the existing configuration" in out and "kept the existing key" in out
    assert read(conf).endswith("# edited by the admin\n")
    assert keys.read_key_file(keyfile) == first_key

    other = str(tmp_path / "other.key")
    keys.write_key_file(other)
    assert cli.main(["--install", "--root", str(root), "-k", other]) == 2
    assert "holds another key" in capsys.readouterr().err
    assert keys.read_key_file(keyfile) == first_key

    assert cli.main(["--install", "--root", str(root), "-k", other, "-O"]) == 0
    assert keys.read_key_file(keyfile) == keys.read_key_file(other)
    assert mode(keyfile) == 0o600
    assert "edited by the admin" not in read(conf)
    assert [n for n in os.listdir(os.path.dirname(conf)) if n.startswith(".")] == []


def test_install_refuses_bad_values_before_writing(tmp_path, capsys):
    root = tmp_path / "root"
    assert cli.main(["--install", "--root", str(root), "-a", "10.0.0.300"]) == 2
    assert "10.0.0.300" in capsys.readouterr().err
    assert not root.exists()
    assert cli.main(["--install", "--root", str(root), "-K", "sekrit-passphrase"]) == 2
    assert "-k FILE" in capsys.readouterr().err and not root.exists()


def test_uninstall_keeps_key_and_config_unless_purge(tmp_path, capsys):
    root, lay = install_root(tmp_path)
    link = root / "etc/systemd/system/multi-user.target.wants/easycluster.service"
    assert cli.main(["--uninstall", "--root", str(root)]) == 0
    assert not os.path.lexists(lay.host(lay.unit)) and not os.path.lexists(link)
    assert os.path.exists(lay.host(lay.config)) and os.path.exists(lay.host(lay.key))
    assert "--purge" in capsys.readouterr().out
    assert cli.main(["--query-installed", "--root", str(root)]) == 1

    install_root(tmp_path)
    assert cli.main(["--uninstall", "--purge", "--root", str(root)]) == 0
    assert not (root / "etc/easycluster").exists()
    assert not os.path.lexists(lay.host(lay.unit))


# -- systemd-analyze verify ------------------------------------------------------------


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "systemd-analyze is missing in CI: 'make test' installs the systemd "
                "package (as root)"
            )
        pytest.skip("systemd-analyze not installed ('make sysdeps' installs it as root)")
    return exe


def verify(exe: str, unit_path: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "verify", unit_path], capture_output=True, text=True, timeout=30)


def test_unit_passes_systemd_analyze_verify(tmp_path):
    exe = systemd_analyze()
    _, lay = install_root(tmp_path)
    unit = lay.host(lay.unit)
    r = verify(exe, unit)
    # verify exits 0 on unknown keys and bad values too, and only warns: any output fails.
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr
    # The check itself bites: a broken copy of the unit is reported.
    broken = tmp_path / "broken" / "easycluster.service"
    broken.parent.mkdir()
    broken.write_text(
        read(unit)
        .replace("KillMode=mixed", "KillMode=bogus")
        .replace("Restart=on-failure", "Restrat=on-failure")
    )
    r = verify(exe, str(broken))
    assert "Restrat" in r.stderr and "bogus" in r.stderr


# -- the server from the unit's ExecStart ----------------------------------------------


def staged_command(tmp_path, **settings: str):
    """Install into a root; point the staged config at the staged key, apply
    ``settings``; return (argv of the unit's ExecStart aimed at that config, layout)."""
    from easycluster.service.config import set_values

    _, lay = install_root(tmp_path)
    conf = lay.host(lay.config)
    values = {"port": "0", "keyfile": lay.host(lay.key), **settings}
    with open(conf) as f:
        text = set_values(f.read(), values)
    with open(conf, "w") as f:
        f.write(text)
    argv = systemd.exec_start(read(lay.host(lay.unit)))
    assert argv[-2:] == ["--config", lay.config]
    return argv[:-1] + [conf], lay


def edit_config(lay, **values: str) -> None:
    from easycluster.service.config import set_values

    conf = lay.host(lay.config)
    text = set_values(read(conf), values)
    with open(conf, "w") as f:
        f.write(text)


def hup(srv: Service, pattern: str) -> str:
    srv.proc.send_signal(signal.SIGHUP)
    return srv.wait_for(pattern)


def test_exec_start_serves_reloads_on_hup_and_drains_on_term(tmp_path, closing):
    argv, lay = staged_command(tmp_path, verbosity="2", grace="20")
    notify = closing(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"))
    srv = Service(argv, env=env)
    try:
        assert notify.recv(4096).startswith(b"READY=1")
        key = keys.read_key_file(lay.host(lay.key))
        c = closing(easycluster.Client(key, HOST, srv.port, connect_timeout=5))
        assert c.eval("'payload-' + 'secret'") == "payload-secret"
        assert c.os.getppid() == srv.proc.pid  # a child process of the listener
        srv.wait_for(r"connection from 127\.0\.0\.1:\d+ authenticated")

        # SIGHUP with an allow list that leaves out 127.0.0.1: new connections refused.
        edit_config(lay, allow="10.0.0.0/8")
        hup(srv, r"reloaded: allow 10\.0\.0\.0/8")
        assert notify.recv(4096) == b"RELOADING=1" and notify.recv(4096) == b"READY=1"
        assert refused(key, srv.port)
        srv.wait_for(r"connection from 127\.0\.0\.1:\d+ refused: not in the allow list")
        assert c.eval("2 + 2") == 4  # the open connection is not touched

        # A mistake in the file: logged with file and line, the old settings stay.
        edit_config(lay, port="seventy")
        line = hup(srv, r"reload failed")
        assert f"{lay.host(lay.config)}:" in line and "'seventy'" in line
        edit_config(lay, port="0")

        # Allowed again, and a new key: the old key is refused, the new one served.
        keys.write_key_file(lay.host(lay.key), overwrite=True)
        new_key = keys.read_key_file(lay.host(lay.key))
        edit_config(lay, allow="127.0.0.1")
        hup(srv, r"reloaded: allow 127\.0\.0\.1; key changed")
        assert refused(key, srv.port)
        srv.wait_for(r"refused: ")
        with easycluster.Client(new_key, HOST, srv.port, connect_timeout=5) as c2:
            assert c2.eval("3 * 3") == 9

        # SIGTERM during a call: the call completes, new connections are refused, exit 0.
        resp = c.eval("__import__('time').sleep(1) or 'finished'", nonblocking=True)
        srv.wait_for(rf"request {resp.request_id}: 0\.eval")  # this call runs now
        srv.proc.send_signal(signal.SIGTERM)
        srv.wait_for(r"stopping: no new connections")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, srv.port), timeout=5).close()
        assert resp.wait(timeout=10) == "finished"
        c.close()
        assert srv.proc.wait(timeout=20) == 0
        notify.setblocking(False)
        later = []
        while True:
            try:
                later.append(notify.recv(4096))
            except BlockingIOError:
                break
        # failed reload, then the good one, then the stop
        assert later == [b"RELOADING=1", b"READY=1"] * 2 + [b"STOPPING=1"]
        srv.wait_for(r"stopped")
    finally:
        srv.stop()
    log = srv.text()
    assert key.hex() not in log and new_key.hex() not in log
    assert "payload" not in log and "secret" not in log


def test_grace_over_ends_open_connections(keyfile, key, tmp_path):
    started = str(tmp_path / "started")
    with ServerProcess("-k", keyfile, "-b", HOST, "--grace", "0.5") as srv:
        with easycluster.Client(key, HOST, srv.port, connect_timeout=5) as c:
            child = c.os.getpid()
            resp = c.eval(
                f"(open({started!r}, 'w').close(), __import__('time').sleep(30))",
                nonblocking=True,
            )
            # Busy before SIGTERM (a nonblocking call may leave a moment later): an idle
            # connection would end at once instead of holding the grace.
            assert wait_until(lambda: os.path.exists(started), 10)
            t0 = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            assert srv.proc.wait(timeout=10) == 0
            assert time.monotonic() - t0 < 5
            srv.wait_for(r"grace period over: ending 1 connection")
            with pytest.raises(ConnectionLost):
                resp.wait(timeout=10)
        assert wait_until(lambda: not pid_alive(child), 5)  # a zombie counts as gone


def test_second_sigterm_cuts_the_grace_short(keyfile, key):
    srv = ServerProcess("-k", keyfile, "-b", HOST, "--grace", "30")
    with srv, easycluster.Client(key, HOST, srv.port, connect_timeout=5) as c:
        resp = c.eval("__import__('time').sleep(30)", nonblocking=True)
        srv.proc.send_signal(signal.SIGTERM)
        srv.wait_for(r"waiting up to 30 s for 1 open connection")
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
        with pytest.raises(ConnectionLost):
            resp.wait(timeout=10)


def test_hup_reloads_the_key_file_given_with_k(tmp_path):
    path = str(tmp_path / "k")
    keys.write_key_file(path)
    old = keys.read_key_file(path)
    srv = ServerProcess("-k", path, "-b", HOST)
    try:
        keys.write_key_file(path, overwrite=True)
        new = keys.read_key_file(path)
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_for(r"reloaded: allow everyone holding the key; key changed")
        assert refused(old, srv.port)
        with easycluster.Client(new, HOST, srv.port, connect_timeout=5) as c:
            assert c.eval("7") == 7
        os.chmod(path, 0o644)  # a broken key file: logged, the server keeps the last key
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_for(rf"reload failed, keeping the previous settings: .*chmod 600 {path}")
        with easycluster.Client(new, HOST, srv.port, connect_timeout=5) as c:
            assert c.eval("8") == 8
    finally:
        assert srv.stop() == 0
    assert old.hex() not in "".join(srv.log) and new.hex() not in "".join(srv.log)


def test_max_connections_makes_new_ones_wait(keyfile, key, closing):
    srv = ServerProcess("-k", keyfile, "-b", HOST, "--max-connections", "1", "-v")
    try:
        first = closing(easycluster.Client(key, HOST, srv.port, connect_timeout=5))
        assert first.eval("1") == 1
        srv.wait_for(r"1 connections open \(max_connections\): new ones wait")
        got: queue.Queue = queue.Queue()

        def second() -> None:
            try:
                with easycluster.Client(key, HOST, srv.port, connect_timeout=15) as c:
                    got.put(c.eval("'second'"))
            except Exception as e:  # reported to the test thread
                got.put(e)

        threading.Thread(target=second, daemon=True).start()
        with pytest.raises(queue.Empty):  # still waiting in the backlog
            got.get(timeout=0.5)
        first.close()
        assert got.get(timeout=15) == "second"
        srv.wait_for(r"below max_connections again: accepting")
    finally:
        srv.stop()


# -- bad configurations ----------------------------------------------------------------

BAD = [
    ("prot = 1\n", 1, "unknown key 'prot'", "did you mean 'port'"),
    ("# comment\n\nport = abc\n", 3, "bad port 'abc'", "0-65535"),
    ("port = 70000\n", 1, "bad port '70000'", "0-65535"),
    ("allow = 10.0.0.0/8, 10.0.0.300\n", 1, "10.0.0.300", "address or network"),
    ("keyfile = missing.key\n", 1, "missing.key", "easycluster -g"),
    ("verbosity = loud\n", 1, "bad verbosity 'loud'", "0, 1, 2 or 3"),
    ("grace = -1\n", 1, "bad grace '-1'", "seconds"),
    ("port = 1\nport = 2\n", 2, "port = '2' repeats", ":1"),
    ("just some words\n", 1, "expected 'key = value'", "just some words"),
    ("key = 00ff00ff\n", 1, "unknown key 'key'", "keyfile = FILE"),
]


@pytest.mark.parametrize("text,line,what,hint", BAD, ids=[b[2] for b in BAD])
def test_bad_configuration_names_file_line_and_value(tmp_path, capsys, text, line, what, hint):
    conf = tmp_path / "server.conf"
    conf.write_text(text)
    assert cli.main(["-S", "--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert f"{conf}:{line}: " in err and what in err and hint in err, err
    assert "00ff00ff" not in err  # a key is never echoed


def test_unusable_key_file_in_config(tmp_path, capsys):
    key = tmp_path / "loose.key"
    keys.write_key_file(str(key))
    os.chmod(key, 0o644)
    conf = tmp_path / "server.conf"
    conf.write_text(f"port = 0\nkeyfile = {key}\n")
    assert cli.main(["-S", "--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert f"{conf}:2: keyfile '{key}'" in err and f"chmod 600 {key}" in err
    assert cli.main(["-S", "--config", str(tmp_path / "nope.conf")]) == 2
    assert "cannot read configuration file" in capsys.readouterr().err


def test_port_in_use_names_the_port_and_line(tmp_path, keyfile):
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    conf = tmp_path / "server.conf"
    conf.write_text(f"bind = {HOST}\nkeyfile = {keyfile}\nport = {port}\n")
    try:
        r = run_cli("-S", "--config", str(conf))
    finally:
        busy.close()
    assert r.returncode == 1
    assert f"{conf}:3: port {port} is already in use" in r.stderr
    assert "serving on" not in r.stderr


def test_command_line_wins_over_config(tmp_path, keyfile, key):
    conf = tmp_path / "server.conf"
    conf.write_text(f"port = 1\nkeyfile = {keyfile}\nallow = 10.0.0.0/8\n")
    srv = Service([EXE, "-S", "--config", str(conf), "-p", "0", "-a", HOST])
    try:
        with easycluster.Client(key, HOST, srv.port, connect_timeout=5) as c:
            assert c.eval("5") == 5
        assert srv.port != 1
        assert re.search(r"serving on 127\.0\.0\.1:", srv.text())  # config: loopback
    finally:
        assert srv.stop() == 0


# -- service commands where systemd is not running -------------------------------------


@pytest.mark.skipif(SYSTEMD_RUNNING, reason="systemd is running on this machine")
@pytest.mark.parametrize(
    "action,hint",
    [
        ("--start", "easycluster -S --config /etc/easycluster/easycluster.conf"),
        ("--stop", "kill -TERM"),
        ("--status", "pgrep -af"),
        ("--query-installed", "--query-installed --root /"),
    ],
)
def test_service_commands_without_systemd(capsys, action, hint):
    assert cli.main([action]) == 1
    err = capsys.readouterr().err
    assert "systemd is not running here" in err and hint in err, err


@pytest.mark.skipif(SYSTEMD_RUNNING, reason="systemd is running on this machine")
def test_install_without_systemd_writes_files_and_says_it_cannot_enable(tmp_path):
    # The live layout, with its paths moved into tmp (not a staging root).
    etc = str(tmp_path / "etc")
    lay = systemd.Layout(
        unit=f"{etc}/systemd/system/easycluster.service",
        config=f"{etc}/easycluster/easycluster.conf",
        key=f"{etc}/easycluster/easycluster.key",
    )
    with pytest.raises(systemd.SystemdUnavailable, match="--install --root /"):
        systemd.install(lay, out=lambda s: None)
    assert mode(lay.key) == 0o600 and os.path.exists(lay.unit)


def test_staging_root_refuses_start(tmp_path, capsys):
    assert cli.main(["--start", "--root", str(tmp_path)]) == 2
    assert "drop --root" in capsys.readouterr().err


# -- listener --------------------------------------------------------------------------


def test_listener_survives_drop_and_data_in_one_round(key, closing):
    # max_pending=1: a second connection drops the first pending one; the first one's
    # data arrives in the same select round (the old code then raised KeyError).
    sock = closing(socket.socket())
    sock.bind((HOST, 0))
    sock.listen(8)
    lst = closing(Listener(sock, key, lambda *a: None, max_pending=1))
    a = closing(socket.create_connection(lst.address(), timeout=5))
    lst.poll(1)
    assert lst.pending() == 1
    (server_side,) = [p.sock for p in lst._pending.values()]
    closing(socket.create_connection(lst.address(), timeout=5))  # the first is dropped for it
    a.send(b"x")
    ready = set()
    deadline = time.monotonic() + 5
    while len(ready) < 2 and time.monotonic() < deadline:
        r, _, _ = select.select([sock, server_side], [], [], 1)
        ready |= set(r)
    assert ready == {sock, server_side}
    lst.poll(1)  # must not raise
    assert lst.pending() == 1
    a_closed = a.recv(handshake.SERVER_HELLO_SIZE + 1, socket.MSG_WAITALL)
    assert len(a_closed) == handshake.SERVER_HELLO_SIZE  # its hello, then EOF: dropped


def test_listener_update_drops_pending_peers_the_new_list_refuses(key, closing):
    from easycluster.service.listener import parse_allow

    sock = closing(socket.socket())
    sock.bind((HOST, 0))
    sock.listen(8)
    lst = closing(Listener(sock, key, lambda *a: None, parse_allow([HOST])))
    a = closing(socket.create_connection(lst.address(), timeout=5))
    assert wait_until(lambda: (lst.poll(0.1), lst.pending())[1] == 1, 5)
    assert lst.update(key, parse_allow(["10.0.0.0/8"]), 10.0, 64) == 1
    assert lst.pending() == 0
    assert (
        len(a.recv(handshake.SERVER_HELLO_SIZE + 1, socket.MSG_WAITALL))
        == handshake.SERVER_HELLO_SIZE
    )  # its hello, then EOF
    b = closing(socket.create_connection(lst.address(), timeout=5))
    lst.poll(1)  # accepted and refused at once: not in the list
    assert b.recv(1) == b"" and lst.pending() == 0


def test_idle_connections_do_not_hold_the_stop(keyfile, key):
    """SIGTERM drains: an idle connection ends at once instead of holding the grace."""
    srv = ServerProcess("-k", keyfile, "-b", HOST, "--grace", "30")
    with srv, easycluster.Client(key, HOST, srv.port, connect_timeout=5) as c:
        assert c.eval("1 + 1") == 2
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
        with pytest.raises(ConnectionLost):
            c.eval("2")
