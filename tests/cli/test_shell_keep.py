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


def test_ctrl_c_in_the_client_interrupts_the_kept_run(kept, tmp_path):
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
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
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
