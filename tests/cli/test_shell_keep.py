"""``easycluster shell --keep``: rpc sessions kept by a background keeper between
invocations, as real processes against the real loopback sshd (under ``CI=true`` it
never skips). Each test has its own socket directory (``XDG_RUNTIME_DIR``) and ends its
keeper, which must leave no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import pid_alive, wait_until

pytestmark = pytest.mark.timeout(90)
SHELL = [sys.executable, "-m", "easycluster", "shell"]


@pytest.fixture
def kept(sshd, tmp_path):
    """``kept(*args, **popen_kw)`` runs ``easycluster shell --keep -o '-F cfg' args``;
    the keeper is ended afterwards (and must be gone)."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), NO_COLOR="1")
    base = [*SHELL, "--keep", "30", "-o", f"-F {sshd.config}"]

    def run(*args: str, **kw):
        return subprocess.run(
            [*base, *args], env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL, **kw
        )

    run.env = env  # type: ignore[attr-defined]
    run.base = base  # type: ignore[attr-defined]
    yield run
    keepers = _keeper_pids(runtime)
    subprocess.run([*SHELL, "--keep-exit", "-o", f"-F {sshd.config}"], env=env, timeout=30)
    gone = lambda: not any(pid_alive(p) for p in keepers)  # noqa: E731
    assert keepers and wait_until(gone, timeout=10), f"keeper {keepers} is still there"


def _keeper_pids(runtime) -> list:
    """Pids of processes whose open sockets include one under ``runtime`` (the keeper)."""
    out = subprocess.run(["ss", "-xlpn"], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        if str(runtime) in line and "pid=" in line:
            pids.append(int(line.split("pid=")[1].split(",")[0]))
    return pids


def test_second_command_reuses_the_sessions(kept):
    first = kept("-w", "sshtest[1-2]", "echo $PPID")
    assert first.returncode == 0, first.stderr
    servers = sorted(first.stdout.decode().split())  # "sshtest1: PID" ...
    again = kept("-w", "sshtest[1-2]", "echo $PPID")
    assert again.returncode == 0, again.stderr
    assert sorted(again.stdout.decode().split()) == servers  # the same server processes
    third = kept("-b", "-w", "sshtest[1-3]", "exit 3")
    assert third.returncode == 250 and b"sshtest[1-3] (3 nodes): exit code 3" in third.stderr


def test_working_directory_stdin_and_errors_are_the_callers(kept, tmp_path):
    (tmp_path / "data").write_bytes(b"x" * 1000)
    with open(tmp_path / "data", "rb") as f:
        got = subprocess.run(
            [*kept.base, "-w", "sshtest1", "wc -c"],
            env=kept.env,
            stdin=f,
            capture_output=True,
            timeout=60,
        )
    assert got.stdout == b"sshtest1: 1000\n", got.stderr
    bad = kept("-w", "sshtest1", "-x", "sshtest1", "true")
    assert bad.returncode == 2 and b"easycluster shell:" in bad.stderr
    usage = kept("-R", "exec", "-w", "x", "true")
    assert usage.returncode == 2 and b"does not go with -R exec" in usage.stderr


@pytest.mark.parametrize(
    "sig, code",
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["ctrl-c", "sigterm", "sighup"],
)
def test_a_signal_to_the_client_interrupts_the_kept_run(kept, tmp_path, sig, code):
    assert kept("-w", "sshtest1", "true").returncode == 0  # the keeper runs
    pidfile = tmp_path / "pid"
    proc = subprocess.Popen(
        [*kept.base, "-w", "sshtest1", f"echo $$ > {pidfile}; exec sleep 60"],
        env=kept.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=30)
        remote = int(pidfile.read_text())
        time.sleep(0.2)  # (the client is waiting for the keeper's answer)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err  # (as without --keep: 128 + N for TERM and HUP)
    assert b"interrupted" in err
    assert wait_until(lambda: not pid_alive(remote), timeout=10)
    assert kept("-w", "sshtest1", "echo still").stdout == b"sshtest1: still\n"


def test_a_runtime_dir_that_is_not_there_is_a_usage_error(tmp_path):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "missing"))
    done = subprocess.run(
        [*SHELL, "-R", "rpc", "--keep-exit"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "cannot make" in done.stderr and "check XDG_RUNTIME_DIR" in done.stderr


def _start(kept, *args: str, env=None, argv=None, **kw) -> subprocess.Popen:
    """``kept.base`` (else ``argv``) and ``args`` run, output piped unless ``kw`` says."""
    pipes = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.Popen([*(argv or kept.base), *args], env=env or kept.env, **{**pipes, **kw})


def _running_remote(kept, tmp_path, name: str):
    """A client whose kept command writes its remote pid to ``tmp_path/name``, then
    sleeps; (client, remote pid) once it runs."""
    pidfile = tmp_path / name
    proc = _start(kept, "-w", "sshtest1", f"echo $$ > {pidfile}; exec sleep 60")
    assert wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=30)
    return proc, int(pidfile.read_text())


def _reap(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _socket(kept) -> str:
    (sock,) = (kept.env["XDG_RUNTIME_DIR"] + "/easycluster/" + n for n in _socks(kept))
    return sock


def _socks(kept) -> list:
    return [n for n in os.listdir(kept.env["XDG_RUNTIME_DIR"] + "/easycluster") if ".sock" in n]


def test_a_killed_client_interrupts_its_command_and_the_keeper_lives_on(kept, tmp_path):
    first = kept("-w", "sshtest1", "echo $PPID")
    assert first.returncode == 0, first.stderr
    proc, remote = _running_remote(kept, tmp_path, "pid")
    try:
        proc.kill()  # (SIGKILL: the client cannot pass anything on)
        proc.wait(timeout=30)
        assert wait_until(lambda: not pid_alive(remote), timeout=30)  # as after Ctrl-C
    finally:
        _reap(proc)
    again = kept("-w", "sshtest1", "echo $PPID")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout  # the keeper and its session are still there


def test_a_queued_command_waits_says_so_and_is_dropped_unrun(kept, tmp_path):
    assert kept("-w", "sshtest1", "true").returncode == 0
    blocker, remote = _running_remote(kept, tmp_path, "pid")
    errs = [tmp_path / f"err{i}" for i in range(3)]
    waiting = b"waiting for the kept session: another command is running (pid %d)" % blocker.pid
    queued = []
    try:
        for i, how in enumerate(("kill", "-u", "ctrl-c")):
            marker = tmp_path / f"ran{i}"
            limit = ["-u", "1"] if how == "-u" else []
            with open(errs[i], "wb") as err:
                proc = subprocess.Popen(
                    [*kept.base, *limit, "-w", "sshtest1", f"touch {marker}"],
                    env=kept.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            queued.append(proc)
            said = lambda err=errs[i]: waiting in err.read_bytes()  # noqa: E731
            assert wait_until(said, timeout=30)
            if how == "kill":
                proc.kill()
                assert proc.wait(timeout=30) == -signal.SIGKILL
            elif how == "-u":  # gives up waiting after -u's seconds, as a timeout
                assert proc.wait(timeout=30) == 251, errs[i].read_bytes()
            else:
                proc.send_signal(signal.SIGINT)
                assert proc.wait(timeout=30) == 130
        blocker.send_signal(signal.SIGINT)
        assert blocker.wait(timeout=30) == 130
        assert wait_until(lambda: not pid_alive(remote), timeout=30)
    finally:
        _reap(blocker, *queued)
    after = kept("-w", "sshtest1", "echo after")
    assert after.stdout == b"sshtest1: after\n", after.stderr
    assert not any((tmp_path / f"ran{i}").exists() for i in range(3))  # none ran


def test_the_keeper_survives_whatever_a_connection_sends(kept):
    import socket

    first = kept("-w", "sshtest1", "echo $PPID")
    assert first.returncode == 0, first.stderr
    path = _socket(kept)
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(path)  # (says nothing, and stays: the next command must not wait)
    try:
        for data in (b"", b"\0\0", b"\0\0\0\5{not json", b"\0\0\0\2{}", b"\xff" * 64):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                s.sendall(data)
        again = kept("-w", "sshtest1", "echo $PPID")
    finally:
        silent.close()
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_each_command_has_its_callers_environment_directory_and_umask(kept, tmp_path):
    env = {}
    for i in (1, 2):
        conf = tmp_path / f"groups{i}.conf"
        conf.write_text(f"[Main]\ndefault: local\n[local]\nmap: echo sshtest{i}\nlist: echo grp\n")
        env[i] = dict(kept.env, EASYCLUSTER_GROUPS_CONF=str(conf))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    common = [*kept.base, "-g", "grp", "--outdir", "out", "echo %h"]
    for i, where, mask in ((1, "a", 0o022), (2, "b", 0o077)):
        done = subprocess.run(
            common,
            env=env[i],
            cwd=tmp_path / where,
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda mask=mask: os.umask(mask),
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"sshtest{i}: sshtest{i}\n".encode()  # -g grp: its own conf
    out = tmp_path / "b" / "out" / "sshtest2"
    assert out.read_bytes() == b"sshtest2\n"
    assert out.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "a" / "out" / "sshtest1").stat().st_mode & 0o777 == 0o644


def test_the_keeper_holds_no_descriptor_or_directory_of_its_first_caller(kept, tmp_path):
    read, write = os.pipe()
    try:
        done = subprocess.run(
            [*kept.base, "-w", "sshtest1", "true"],
            env=kept.env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            pass_fds=(write,),  # (a pipe the caller left open: `( ... 3>&1 ) | cat`)
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        (keeper,) = _keeper_pids(tmp_path / "run")
        pipe = os.readlink(f"/proc/self/fd/{write}")
        held = [os.readlink(f"/proc/{keeper}/fd/{fd}") for fd in os.listdir(f"/proc/{keeper}/fd")]
        assert pipe not in held
        assert os.readlink(f"/proc/{keeper}/cwd") == "/"
    finally:
        os.close(read)
        os.close(write)


def test_simultaneous_first_commands_start_one_keeper(kept, tmp_path):
    for trial in range(3):
        procs = [_start(kept, "-w", "sshtest1", f"echo {i}") for i in range(6)]
        for i, proc in enumerate(procs):
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0 and out == f"sshtest1: {i}\n".encode(), err
        keepers = _keeper_pids(tmp_path / "run")
        assert len(keepers) == 1 and len(_socks(kept)) == 1, keepers
        if trial < 2:  # (the fixture ends the last one)
            stop = subprocess.run(
                [*SHELL, "--keep-exit", *kept.base[6:8]], env=kept.env, capture_output=True
            )
            assert stop.returncode == 0 and not stop.stderr, stop.stderr
            assert wait_until(lambda pid=keepers[0]: not pid_alive(pid), timeout=30)


def test_a_second_keeper_leaves_the_first_ones_socket_alone(kept):
    first = kept("-w", "sshtest1", "echo $PPID")
    assert first.returncode == 0, first.stderr
    loser = (  # (what the loser of a start race does: it must leave at once, touching nothing)
        "import sys; from easycluster.cli import keeperd; keeperd.keep(sys.argv[1], 5, None)"
    )
    code = subprocess.run([sys.executable, "-c", loser, _socket(kept)], timeout=60).returncode
    assert code == 0
    again = kept("-w", "sshtest1", "echo $PPID")
    assert again.returncode == 0 and again.stdout == first.stdout, again.stderr


def test_keep_exit_refuses_a_command_and_says_when_no_keeper_ran(kept):
    base = [*SHELL, "--keep-exit", *kept.base[6:8]]
    for extra in (["-w", "sshtest1", "echo X"], ["--keep", "5"]):
        done = subprocess.run([*base, *extra], env=kept.env, capture_output=True, timeout=60)
        assert done.returncode == 2 and b"--keep-exit ends the keeper" in done.stderr
    none = subprocess.run(base, env=kept.env, capture_output=True, timeout=60)
    assert none.returncode == 0 and b"no keeper was running" in none.stderr
    assert kept("-w", "sshtest1", "true").returncode == 0  # (for the fixture to end)


def test_a_later_keep_seconds_sets_the_idle_time(sshd, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    base = [*SHELL, "-o", f"-F {sshd.config}", "-w", "sshtest1"]
    first = subprocess.run([*base, "--keep", "600", "true"], env=env, capture_output=True)
    assert first.returncode == 0, first.stderr
    (keeper,) = _keeper_pids(runtime)
    try:
        later = subprocess.run([*base, "--keep", "0.5", "true"], env=env, capture_output=True)
        assert later.returncode == 0, later.stderr
        assert wait_until(lambda: not pid_alive(keeper), timeout=30)  # (not 600 s)
    finally:
        subprocess.run([*SHELL, "--keep-exit", "-o", f"-F {sshd.config}"], env=env)


def test_a_socket_directory_or_socket_not_ours_is_refused_without_usage(sshd, tmp_path):
    import socket

    runtime = tmp_path / "run"
    (runtime / "easycluster").mkdir(parents=True, mode=0o755)
    os.chmod(runtime / "easycluster", 0o755)  # (others may enter: refused)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    cmd = [*SHELL, "--keep", "30", "-o", f"-F {sshd.config}", "-w", "sshtest1", "true"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "XDG_RUNTIME_DIR" in done.stderr
    assert "usage:" not in done.stderr
    if os.getuid() != 0:
        return  # (the rest gives a socket to another uid: root only; CI runs as root)
    os.chmod(runtime / "easycluster", 0o700)
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode == 0
    (name,) = [n for n in os.listdir(runtime / "easycluster") if n.endswith(".sock")]
    stop = [*SHELL, "--keep-exit", "-o", f"-F {sshd.config}"]
    subprocess.run(stop, env=env, timeout=60)
    squat = socket.socket(socket.AF_UNIX)
    try:
        squat.bind(str(runtime / "easycluster" / name))
        os.chown(runtime / "easycluster" / name, 65534, 65534)  # (someone else's)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "is not a socket of yours" in done.stderr, done.stderr
    finally:
        squat.close()
        subprocess.run(stop, env=env, timeout=60, capture_output=True)


def test_a_large_environment_and_a_removed_directory(kept, tmp_path):
    """A legal 1.6 MB environment of control characters (9.6 MB as JSON) reaches the
    keeper and the command runs; a directory removed under the caller is a clear usage
    error (the request runs in the caller's directory), not a traceback."""
    big_env = {f"EC_BIG{i}": "\x01" * 100_000 for i in range(16)}  # (128 KiB a string at most)
    env = dict(kept.env, **big_env)
    big = subprocess.run(
        [*kept.base, "-w", "sshtest1", "echo ok"],
        env=env,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert big.returncode == 0 and big.stdout == b"sshtest1: ok\n", big.stderr
    gone = tmp_path / "gone"
    gone.mkdir()
    script = f'cd {gone} && rmdir {gone} && exec "$@"'
    lost = subprocess.run(
        ["sh", "-c", script, "sh", *kept.base, "-w", "sshtest1", "true"],
        env=kept.env,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert lost.returncode == 2, lost.stderr
    assert b"the current directory no longer exists" in lost.stderr
    assert b"Traceback" not in lost.stderr


def test_sigterm_to_the_keeper_ends_it_as_it_would_end_a_command(kept, tmp_path):
    """``kill KEEPER`` during a run: the run ends as a SIGTERM'd command without --keep
    does (143, the same message), a queued command is told and not run, and the keeper
    ends as after its idle time (sessions, socket and lock file gone)."""
    first = kept("-w", "sshtest1", "echo $PPID")
    assert first.returncode == 0, first.stderr
    server = int(first.stdout.split()[1])  # (the session's server process on the node)
    (keeper,) = _keeper_pids(tmp_path / "run")
    sock = _socket(kept)
    marker, err, alone = tmp_path / "ran", tmp_path / "err", tmp_path / "alone"
    unkept_argv = [*SHELL, "-R", "rpc", *kept.base[6:8], "-w", "sshtest1"]
    procs = []
    try:
        running, remote = _running_remote(kept, tmp_path, "pid")
        procs.append(running)
        with open(err, "wb") as f:
            procs.append(_start(kept, "-w", "sshtest1", f"touch {marker}", stderr=f))
        queued = procs[-1]
        # the same command without --keep, SIGTERM'd, for the message to expect
        procs.append(_start(kept, f"echo $$ > {alone}; exec sleep 60", argv=unkept_argv))
        unkept = procs[-1]
        assert wait_until(lambda: b"waiting for the kept session" in err.read_bytes(), timeout=30)
        os.kill(keeper, signal.SIGTERM)
        _, said = running.communicate(timeout=30)
        assert queued.wait(timeout=30) == 143, err.read_bytes()
        assert wait_until(lambda: alone.exists() and alone.read_text().strip(), timeout=30)
        unkept.send_signal(signal.SIGTERM)
        _, said_unkept = unkept.communicate(timeout=30)
        assert wait_until(lambda: not pid_alive(keeper), timeout=30)
        assert wait_until(lambda: not pid_alive(server) and not pid_alive(remote), timeout=30)
    finally:
        _reap(*procs)
    assert running.returncode == unkept.returncode == 143, said
    assert said == said_unkept and b"interrupted before it finished" in said
    assert b"the session keeper was ended by SIGTERM before it ran the command" in err.read_bytes()
    assert not marker.exists()
    assert not os.path.exists(sock) and not os.path.exists(sock[: -len(".sock")] + ".lock")
    again = kept("-w", "sshtest1", "echo $PPID")  # (a new keeper, for the fixture to end)
    assert again.returncode == 0 and again.stdout != first.stdout, again.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_a_signal_to_an_idle_keeper_ends_it_and_removes_its_files(kept, tmp_path, sig):
    first = kept("-w", "sshtest1", "echo $PPID")
    assert first.returncode == 0, first.stderr
    server = int(first.stdout.split()[1])
    (keeper,) = _keeper_pids(tmp_path / "run")
    sock = _socket(kept)
    os.kill(keeper, sig)
    assert wait_until(lambda: not pid_alive(keeper), timeout=30)
    assert wait_until(lambda: not pid_alive(server), timeout=30)  # (its session closed)
    assert not os.path.exists(sock) and not os.path.exists(sock[: -len(".sock")] + ".lock")
    again = kept("-w", "sshtest1", "echo $PPID")  # (a new keeper, for the fixture to end)
    assert again.returncode == 0 and again.stdout != first.stdout, again.stderr


def test_a_trickled_request_is_dropped_after_the_request_wait(tmp_path):
    """REQUEST_WAIT bounds the whole request, not each read: a connection that sends its
    size, then a byte at a time, is dropped, and the idle keeper ends on time."""
    import array
    import socket

    path = str(tmp_path / "k.sock")
    keeper = (  # (a real keeper, its request wait shortened so the test takes seconds)
        "import sys; from easycluster.cli import keeperd; keeperd.REQUEST_WAIT = 1.0; "
        "keeperd.keep(sys.argv[1], 0.5, None)"
    )
    proc = subprocess.Popen([sys.executable, "-c", keeper, path])
    trickler = socket.socket(socket.AF_UNIX)
    try:
        assert wait_until(lambda: os.path.exists(path), timeout=30)
        trickler.connect(path)
        fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))]
        trickler.sendmsg([b"\0\0\3\xe8"], fds)  # (1000 bytes to come: 1 every 0.2 s)
        for _ in range(50):  # (10 s, 10 times the request wait)
            if proc.poll() is not None:
                break
            try:
                trickler.send(b" ")
            except OSError:
                pass  # (dropped already: the keeper is ending)
            time.sleep(0.2)
        assert proc.poll() == 0, "the keeper outlived its idle time while a request trickled"
        assert not os.path.exists(path)
    finally:
        trickler.close()
        _reap(proc)
