"""``easycluster farm`` against the real loopback sshd (the ``sshd`` fixture): each host
alias (``sshtest0``, ``sshtest1``...) is a separate ssh session with its own remote
server, so killing or freezing one server is a host dying or hanging.

Every test runs the farm as a real subprocess (``python -m easycluster.cli.farm``) and
checks that the final summary's counts add up to the number of jobs. A job finds its
server's pid as ``$PPID`` (the server starts each job as ``sh -c``), which is how a test
kills or freezes "a host" mid-job.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List, Set, Tuple

import pytest
from helpers import ROOT, pid_alive, wait_until

from easycluster.cluster.farmlog import HEADER

SUMMARY = re.compile(
    r"(\d+) jobs: (\d+) done(?: \((\d+) in an earlier run\))?, (\d+) failed, (\d+) not run"
)


def farm_argv(sshd, *args: str) -> List[str]:
    return [
        sys.executable,
        "-m",
        "easycluster.cli.farm",
        "--ssh-options",
        f"-F {sshd.config}",
        "--no-status",
        *args,
    ]


def start_farm(sshd, *args: str) -> subprocess.Popen:
    """``easycluster farm`` with ``args`` in its own session (so ``kill_group`` reaches
    its ssh children), stdin /dev/null, stdout and stderr piped as text."""
    return subprocess.Popen(
        farm_argv(sshd, *args),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run_farm(sshd, *args: str, timeout: float = 90) -> Tuple[int, str, str]:
    proc = start_farm(sshd, *args)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)
    return proc.returncode, out, err


def kill_group(proc: subprocess.Popen) -> None:
    """Kill what is left of a farm run (it and its ssh children) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def counts(err: str, total: int) -> Dict[str, int]:
    """The summary's counts; asserts they add up to ``total``."""
    m = SUMMARY.search(err)
    assert m, err
    got = {
        "total": int(m.group(1)),
        "done": int(m.group(2)),
        "earlier": int(m.group(3) or 0),
        "failed": int(m.group(4)),
        "not run": int(m.group(5)),
    }
    assert got["total"] == total, err
    assert got["done"] + got["failed"] + got["not run"] == total, err
    return got


def joblog(path: str) -> List[List[str]]:
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0] == HEADER
    return [line.split("\t") for line in lines[1:]]


def read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def read_pid(path: str) -> int:
    """The pid a job wrote to ``path`` (waiting for the whole line)."""
    assert wait_until(lambda: read_text(path).endswith("\n"), 30)
    return int(read_text(path))


def kill_quietly(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def once_then_ok(tmp_path, name: str) -> str:
    """A job that, the first time, records its server's pid and its own, then sleeps
    (as ``sleep`` itself, so its pid is the one recorded); any later time succeeds."""
    mark = tmp_path / f"{name}.first"
    return (
        f"if [ -e {mark} ]; then echo again; else touch {mark}; "
        f"echo $$ > {tmp_path}/{name}.job; echo $PPID > {tmp_path}/{name}.server; "
        "exec sleep 60; fi"
    )


@pytest.mark.timeout(120)
def test_server_killed_mid_job_work_reruns_elsewhere(sshd, tmp_path):
    jobs = [once_then_ok(tmp_path, "victim")] + [f"echo job{i}" for i in range(6)]
    log = str(tmp_path / "log")
    args = ["-n", "sshtest0", "sshtest1", "--heartbeat", "1", "--joblog", log]
    for j in jobs:
        args += ["-j", j]
    proc = start_farm(sshd, *args)
    job_pid = 0
    try:
        server = read_pid(str(tmp_path / "victim.server"))
        job_pid = read_pid(str(tmp_path / "victim.job"))
        os.kill(server, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
        if job_pid:
            kill_quietly(job_pid)
    assert proc.returncode == 0, err
    c = counts(err, len(jobs))
    assert c["done"] == len(jobs)
    assert re.search(r"^1 sshtest[01]: again$", out, re.M), out  # job 1 reran, elsewhere
    classes = [(row[0], row[5]) for row in joblog(log)]
    assert ("1", "lost") in classes and ("1", "done") in classes
    assert re.search(r"hosts retired \(lost\): sshtest[01]", err), err


@pytest.mark.timeout(120)
def test_frozen_host_is_lost_after_its_heartbeats(sshd, tmp_path):
    jobs = [once_then_ok(tmp_path, "frozen")] + [f"echo job{i}" for i in range(4)]
    args = ["-n", "sshtest2", "sshtest3", "--heartbeat", "0.5"]
    for j in jobs:
        args += ["-j", j]
    proc = start_farm(sshd, *args)
    server = job_pid = 0
    try:
        server = read_pid(str(tmp_path / "frozen.server"))
        job_pid = read_pid(str(tmp_path / "frozen.job"))
        os.kill(server, signal.SIGSTOP)
        out, err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
        if server:
            kill_quietly(server, signal.SIGKILL)
            kill_quietly(server, signal.SIGCONT)
        if job_pid:
            kill_quietly(job_pid)
    assert proc.returncode == 0, err
    assert counts(err, len(jobs))["done"] == len(jobs)
    assert re.search(r"^1 sshtest[23]: again$", out, re.M), out
    assert "hosts retired (lost)" in err and "keep-alive" in err, err


@pytest.mark.timeout(120)
def test_failing_job_does_not_retire_hosts(sshd, tmp_path):
    log = str(tmp_path / "log")
    jobs = ["exit 7"] + [f"echo ok{i}" for i in range(9)]
    args = ["-n", "sshtest4", "sshtest4", "sshtest5", "--retry-failed", "2", "--joblog", log]
    for j in jobs:
        args += ["-j", j]
    rc, out, err = run_farm(sshd, *args)
    assert rc == 250, err
    c = counts(err, len(jobs))
    assert (c["done"], c["failed"], c["not run"]) == (9, 1, 0)
    assert "failed (failed, exit 7): job 1: exit 7" in err
    assert "retired" not in err  # one bad job empties no pool (clstr's defect 7)
    rows = joblog(log)
    assert [r[4] for r in rows if r[0] == "1"] == ["7", "7", "7"]  # ran 1 + 2 retries
    assert sorted(line.split(":", 1)[1] for line in out.splitlines()) == sorted(
        f" ok{i}" for i in range(9)
    )


@pytest.mark.timeout(120)
def test_job_past_timeout_is_stuck_and_killed(sshd, tmp_path):
    log = str(tmp_path / "log")
    hang = f"echo $$ >> {tmp_path}/hang.pids; exec sleep 60"
    args = ["-n", "sshtest6", "sshtest7", "--timeout", "1", "--retries", "1", "--joblog", log]
    args += ["-j", hang, "-j", "echo fine"]
    rc, out, err = run_farm(sshd, *args)
    assert rc == 251, err
    c = counts(err, 2)
    assert (c["done"], c["failed"]) == (1, 1)
    assert "failed (stuck): job 1" in err
    rows = joblog(log)
    stuck = [r for r in rows if r[0] == "1"]
    assert [r[5] for r in stuck] == ["stuck", "stuck"]  # first try and one retry
    assert stuck[0][1] != stuck[1][1]  # the retry went to the other host
    assert "retired" not in err
    with open(tmp_path / "hang.pids") as f:
        pids = [int(p) for p in f.read().split()]
    assert len(pids) == 2
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 10)  # killed at timeout


@pytest.mark.timeout(120)
def test_all_hosts_dead_every_job_accounted_for(sshd, tmp_path):
    jobs = [f"echo {i}" for i in range(5)]
    args = ["-n", "wrongkey-sshtest", "badhostkey-sshtest", "--connect-timeout", "5"]
    for j in jobs:
        args += ["-j", j]
    rc, out, err = run_farm(sshd, *args)
    assert rc == 254, err
    c = counts(err, 5)
    assert c["not run"] == 5
    assert out == ""
    assert "not run (no hosts left): job 5" in err
    assert "hosts retired (unreachable): badhostkey-sshtest: " in err
    assert "hosts retired (unreachable): wrongkey-sshtest: " in err


@pytest.mark.timeout(120)
def test_unreachable_host_jobs_go_elsewhere(sshd, tmp_path):
    jobs = [f"echo {i}" for i in range(6)]
    args = ["-n", "sshtest8", "wrongkey-sshtest"]  # the server refuses wrongkey's identity
    for j in jobs:
        args += ["-j", j]
    rc, out, err = run_farm(sshd, *args)
    assert rc == 0, err
    assert counts(err, 6)["done"] == 6
    assert sorted(out.splitlines()) == sorted(f"{i + 1} sshtest8: {i}" for i in range(6))


@pytest.mark.timeout(150)
def test_master_killed_then_resumed(sshd, tmp_path):
    runs = tmp_path / "runs"
    log = str(tmp_path / "log")
    total = 40
    jobs = [f"echo {i} >> {runs}; sleep 0.2" for i in range(total)]
    jobfile = tmp_path / "jobs"
    jobfile.write_text("\n".join(jobs) + "\n")
    argv = farm_argv(sshd, "-n", "sshtest9", "sshtest10", "-J", str(jobfile), "--joblog", log)
    first = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: os.path.exists(log) and len(joblog(log)) >= 8, 60)
        first.send_signal(signal.SIGKILL)  # the master only; its ssh children see EOF
        first.wait()
    finally:
        kill_group(first)
    done_first: Set[int] = {int(r[0]) for r in joblog(log) if r[5] == "done"}
    assert 0 < len(done_first) < total
    time.sleep(0.5)  # (jobs that were running finish: they count as run, not as done)
    rc, out, err = run_farm(sshd, "-n", "sshtest9", "sshtest10", "-J", str(jobfile),
                            "--joblog", log, "--resume")  # fmt: skip
    assert rc == 0, err
    c = counts(err, total)
    assert c["done"] == total and c["earlier"] == len(done_first)
    ran = [int(x) for x in runs.read_text().split()]
    for seq in done_first:  # none the joblog marked done ran twice
        assert ran.count(seq - 1) == 1, (seq, ran)
    assert set(ran) == set(range(total))  # none skipped
    final_done = [int(r[0]) for r in joblog(log) if r[5] == "done"]
    assert sorted(final_done) == list(range(1, total + 1))  # each done exactly once


@pytest.mark.timeout(120)
def test_halt_now_abandons_and_kills_running_jobs(sshd, tmp_path):
    pidfile = tmp_path / "sleeper"
    jobs = [f"echo $$ > {pidfile}; exec sleep 60", "sleep 1; exit 1"] + ["true"] * 3
    args = ["-n", "sshtest11", "sshtest11", "--halt", "now,fail=1"]
    for j in jobs:
        args += ["-j", j]
    rc, out, err = run_farm(sshd, *args)
    assert rc == 254, err
    assert counts(err, 5) == {"total": 5, "done": 0, "earlier": 0, "failed": 1, "not run": 4}
    assert "killed while running (halted): job 1" in err
    assert "not run (halted): job 5" in err
    pid = read_pid(str(pidfile))
    alive = pid_alive(pid)
    kill_quietly(pid)
    assert not alive  # the server killed it before the session closed


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupted_master_reports_and_kills_its_jobs(sshd, tmp_path, sig):
    """Ctrl-C, and SIGTERM (a batch system ending the farm) or SIGHUP (its terminal
    closed) alike: the running job is killed on its node, the report printed; the exit
    code is 130, or 128 + the signal (as a shell reports a command it ended)."""
    pidfile = tmp_path / "sleeper"
    jobs = [f"echo $$ > {pidfile}; exec sleep 60", "true", "true"]
    args = ["-n", "sshtest12"]
    for j in jobs:
        args += ["-j", j]
    proc = start_farm(sshd, *args)
    pid = 0
    try:
        pid = read_pid(str(pidfile))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
        alive = bool(pid) and pid_alive(pid)
        if pid:
            kill_quietly(pid)
    assert proc.returncode == (130 if sig == signal.SIGINT else 128 + sig), err
    c = counts(err, 3)
    assert c["not run"] >= 1
    assert "killed while running (interrupted): job 1" in err
    assert not alive


@pytest.mark.timeout(120)
def test_unreachable_hosts_grouped_by_reason(sshd, tmp_path):
    # two names that do not resolve fail alike; a refused key and a changed host key
    # each fail their own way: three lines, each with its reason
    hosts = ["nohost1.invalid", "nohost2.invalid", "wrongkey-sshtest", "badhostkey-sshtest"]
    rc, out, err = run_farm(
        sshd, "-n", *hosts, "sshtest0", "--connect-timeout", "5", "-j", "echo a", "-j", "echo b"
    )
    assert rc == 0, err
    assert counts(err, 2)["done"] == 2
    retired = [line for line in err.splitlines() if "hosts retired (unreachable)" in line]
    assert len(retired) == 3, err
    why = dict(line.split(": ", 3)[2:] for line in retired)  # hosts: reason
    assert set(why) == {"nohost[1-2].invalid", "wrongkey-sshtest", "badhostkey-sshtest"}, err
    assert "resolve hostname %h" in why["nohost[1-2].invalid"], err  # (one text for both)
    assert "Host key verification failed" in why["badhostkey-sshtest"], err
    assert "wrongkey-sshtest: authentication refused" in why["wrongkey-sshtest"], err
