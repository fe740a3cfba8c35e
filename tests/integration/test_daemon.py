"""``easycluster -S -d``: detached, it logs to ``--logfile`` (never to the terminal that
started it) and removes its pid file on exit (issue 17, item 9)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

from helpers import ROOT, pid_alive, wait_until

import easycluster

EXE = shutil.which("easycluster") or f"{sys.prefix}/bin/easycluster"


def test_detached_server_logs_to_its_file_and_removes_its_pid_file(tmp_path, keyfile, key):
    pidfile, logfile = tmp_path / "s.pid", tmp_path / "s.log"
    argv = [EXE, "-S", "-d", "-P", str(pidfile), "-L", str(logfile), "-k", keyfile]
    # The terminal stands in as a pipe: nothing may reach it once detached.
    out = subprocess.run(
        [*argv, "-p", "0", "-b", "127.0.0.1", "-v"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert wait_until(lambda: pidfile.exists() and "serving on" in logfile.read_text())
    pid = int(pidfile.read_text())
    try:
        port = int(re.search(r"serving on 127\.0\.0\.1:(\d+)", logfile.read_text()).group(1))
        with easycluster.Client(key, "127.0.0.1", port) as c:
            assert c.eval("6 * 7") == 42
        assert wait_until(lambda: "authenticated" in logfile.read_text())  # -v: a line each
    finally:
        os.kill(pid, signal.SIGTERM)
        assert wait_until(lambda: not pid_alive(pid), timeout=20)
    assert not pidfile.exists(), "the pid file outlived the server"
    assert "stopped" in logfile.read_text()
    assert out.stdout == "" and "serving on" not in out.stderr


def test_an_unwritable_log_file_is_a_clear_error(tmp_path, keyfile):
    bad = tmp_path / "no-such-dir" / "s.log"
    out = subprocess.run(
        [EXE, "-S", "-L", str(bad), "-k", keyfile, "-p", "0", "-b", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert f"cannot open the log file {bad}" in out.stderr
