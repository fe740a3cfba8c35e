"""``easycluster farm``'s options: parsing, bad input, output modes and exit codes.

Runs call ``main(argv)`` in this process with ``-R local``: each "host" is a real local
server process (``spawn_local``), so the jobs really run; the ssh paths and the failure
cases with killed hosts are in ``tests/integration/test_farm.py``.
"""

from __future__ import annotations

import io
import os

import pytest
from helpers import added_up
from helpers import farm_run as run

from easycluster.cli import farm as cli
from easycluster.cluster.farm import Job
from easycluster.cluster.farmlog import HEADER, JobLogError, escape, read_done, unescape
from easycluster.cluster.farmout import (
    INTERRUPTED,
    JOB_FAILED,
    JOB_LOST,
    JOB_STUCK,
    NOT_RUN,
    Outcome,
    retired_groups,
    status_text,
)
from easycluster.cluster.scheduler import Report


def parse(*argv: str):
    return cli.build_parser().parse_args(list(argv))


# -- parsing -------------------------------------------------------------------------


def test_clstr_options_parse():
    a = parse("-n", "h1", "h1", "h2", "-n", "h3", "-j", "a", "-j", "b", "-m", "2", "-u", "5")
    assert a.nodes == ["h1", "h1", "h2", "h3"] and a.jobs == ["a", "b"]
    assert (a.max_nodes, a.max_node_uses) == (2, 5)  # ints, not clstr's one-item lists
    assert cli.select_hosts(a, io.StringIO()) == ["h1", "h1", "h2", "h3"]
    a = parse("-w", "n[1-3]", "-n", "x", "-j", "true", "-o", "-e", "err.txt", "-vv", "-s")
    assert cli.select_hosts(a, io.StringIO()) == ["x", "n1", "n2", "n3"]
    assert (a.stdout, a.stderr, a.verbose, a.status) == (os.devnull, "err.txt", 2, True)
    a = parse("-n", "h", "-j", "x")
    assert (a.retries, a.retry_failed, a.slots, a.status, a.timeout) == (3, 0, 1, None, None)


def test_files_of_hosts_and_jobs(tmp_path):
    nodes = tmp_path / "nodes"
    nodes.write_text("# hosts\nh1\n\n  n[1-2]  \nh1\n")
    jobs = tmp_path / "jobs"
    jobs.write_text("echo 1\n\n# a comment\necho 2  \necho 3")  # no final newline
    a = parse("-N", str(nodes), "-j", "first", "-J", str(jobs), "-")
    hosts = cli.select_hosts(a, io.StringIO())
    assert hosts == ["h1", "n1", "n2", "h1"]
    assert cli.select_jobs(a, hosts, io.StringIO("from stdin\n")) == [
        "first",
        "echo 1",
        "echo 2",
        "echo 3",
        "from stdin",
    ]


def test_halt_spec():
    assert cli.parse_halt(None) is None and cli.parse_halt("never") is None
    assert cli.parse_halt("now,fail=1") == ("now", 1)
    assert cli.parse_halt("soon,fail=12") == ("soon", 12)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["-j", "true"], "no hosts"),
        (["-n", "h"], "no jobs"),  # clstr exits 0 here (its defect 4)
        (["-n", "h", "-j", "  "], "empty command"),
        (["-n", "h", "-E", "x", "-j", "y"], "do not give -j or -J"),
        (["-n", "h", "-j", "x", "--resume"], "give --joblog"),
        (["-n", "h", "-j", "x", "--halt", "later"], "--halt takes"),
        (["-n", "h", "-j", "x", "--halt", "now,fail=0"], "--halt takes"),
        (["-n", "h", "-j", "x", "--slots", "0"], "--slots takes"),
        (["-n", "h", "-j", "x", "-m", "-1"], "--max-nodes takes"),
        (["-n", "h", "-j", "x", "--retries", "-2"], "--retries takes"),
        (["-n", "h", "-j", "x", "--timeout", "0"], "--timeout takes seconds > 0"),
        (["-n", "h", "-j", "x", "--outdir", "d", "-o", "f"], "drop -o/-e"),
        (["-n", "h", "-J", "/nonexistent/jobs"], "cannot read job file /nonexistent/jobs"),
        (["-n", "h", "-j", "x", "--slots", "two"], "invalid int value"),
        (["-n", "h", "-j", "x", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_a_usage_error(capfd, argv, says):
    rc = cli.main(argv, stdin=io.StringIO())
    out, err = capfd.readouterr()
    assert rc == 2
    assert says in err and err.startswith("usage: easycluster farm"), err
    assert out == ""


# -- runs on local servers -----------------------------------------------------------


def test_output_prefixed_with_job_and_host(capfd):
    rc, out, err = run(capfd, "-n", "a", "-j", "echo one; echo two", "-j", "echo bad >&2")
    assert rc == 0
    assert out.splitlines() == ["1 a: one", "1 a: two"]
    assert "2 a: bad" in err
    assert added_up(err, 2) == (2, 0, 0)


def test_stdout_to_file_and_discarded(capfd, tmp_path):
    dest = tmp_path / "out.txt"
    rc, out, err = run(
        capfd, "-n", "a", "-j", "echo x", "-j", "echo ERRTEXT >&2", "-o", str(dest), "-e"
    )
    assert rc == 0 and out == "" and "ERRTEXT" not in err
    assert dest.read_text() == "1 a: x\n"


def test_outdir_one_file_pair_per_job(capfd, tmp_path):
    outdir = tmp_path / "o"
    jobs = ["echo out1", "echo err2 >&2; exit 4", "true"]
    argv = ["-n", "a", "b", "--outdir", str(outdir)]
    for j in jobs:
        argv += ["-j", j]
    rc, out, err = run(capfd, *argv)
    assert rc == JOB_FAILED and out == ""
    assert sorted(os.listdir(outdir)) == ["1.err", "1.out", "2.err", "2.out", "3.err", "3.out"]
    assert (outdir / "1.out").read_text() == "out1\n"
    assert (outdir / "2.err").read_text() == "err2\n"
    assert (outdir / "3.out").read_text() == ""
    assert added_up(err, 3) == (2, 1, 0)
    assert "failed (failed, exit 4): job 2: echo err2 >&2; exit 4" in err


def test_jobs_get_dev_null_stdin(capfd):
    rc, out, err = run(capfd, "-n", "a", "-j", "cat; echo end")  # would hang on a terminal
    assert rc == 0 and out == "1 a: end\n"


def test_on_each_node_runs_once_per_host(capfd):
    rc, out, err = run(capfd, "-n", "a", "b", "c", "a", "-E", "echo here")
    assert rc == 0
    # one copy per host, whichever job number each host took
    assert sorted(line.split(" ", 1)[1] for line in out.splitlines()) == [
        "a: here",
        "b: here",
        "c: here",
    ]
    assert added_up(err, 3) == (3, 0, 0)


def test_halt_soon_leaves_the_rest_not_run(capfd):
    argv = ["-n", "a", "--halt", "soon,fail=1", "-j", "exit 3"] + ["-j", "true"] * 4
    rc, out, err = run(capfd, *argv)
    assert rc == NOT_RUN
    done, failed, not_run = added_up(err, 5)
    assert failed == 1 and not_run >= 1
    assert "not run (halted)" in err


def test_joblog_and_resume(capfd, tmp_path):
    log = tmp_path / "log"
    rc, out, err = run(capfd, "-n", "a", "-j", "echo A", "-j", "exit 2", "--joblog", str(log))
    assert rc == JOB_FAILED
    rows = [line.split("\t") for line in log.read_text().splitlines()]
    assert rows[0] == HEADER.split("\t")
    assert sorted((r[0], r[1], r[4], r[5], r[6]) for r in rows[1:]) == [
        ("1", "a", "0", "done", "echo A"),
        ("2", "a", "2", "failed", "exit 2"),
    ]
    # the rerun skips job 1 (done) and reruns job 2 (failed), appending to the joblog
    rc, out, err = run(
        capfd, "-n", "a", "-j", "echo A", "-j", "exit 2", "--joblog", str(log), "--resume"
    )
    assert rc == JOB_FAILED and out == ""
    assert "2 jobs: 1 done (1 in an earlier run), 1 failed, 0 not run" in err
    assert len(log.read_text().splitlines()) == 4
    # another job list against the same joblog is refused
    rc, out, err = run(capfd, "-n", "a", "-j", "echo B", "--joblog", str(log), "--resume")
    assert rc == 2 and "belongs to another job list" in err


def test_active_nodes_file_empty_at_end(capfd, tmp_path):
    active = tmp_path / "active"
    rc, out, err = run(capfd, "-n", "a", "-j", "true", "-A", str(active))
    assert rc == 0 and active.read_text() == ""


def test_unreachable_local_hosts_cannot_exist_so_all_done(capfd):
    rc, out, err = run(capfd, "-n", "a", "a", "b", "--slots", "2", *(["-j", "true"] * 12))
    assert rc == 0 and added_up(err, 12) == (12, 0, 0)


# -- pure parts ----------------------------------------------------------------------


def test_joblog_escaping_round_trips():
    for text in ["plain", "a\tb", "line1\nline2", "back\\slash\\t", ""]:
        assert unescape(escape(text)) == text
        assert "\t" not in escape(text) and "\n" not in escape(text)


def test_read_done_ignores_a_cut_line_and_refuses_garbage(tmp_path):
    log = tmp_path / "log"
    log.write_text(HEADER + "\n1\th\t1.0\t0.1\t0\tdone\techo a\n2\th\t1.0\t0.1\t0\tdo")
    assert read_done(str(log), {1: "echo a", 2: "echo b"}) == {1}
    log.write_text("something else\n")
    with pytest.raises(JobLogError, match="not a joblog line"):
        read_done(str(log), {1: "x"})
    assert read_done(str(tmp_path / "missing"), {1: "x"}) == set()


def test_exit_code_severity():
    jobs = {i: Job(i, "c") for i in range(1, 6)}

    def code(failed, not_run=None, interrupted=False):
        report = Report(5, [], failed, not_run or {}, [], {})
        return Outcome(jobs, report, set(), "x").exit_code(interrupted)

    assert code({1: ("failed", 3)}) == JOB_FAILED
    assert code({1: ("failed", 3), 2: ("stuck", None)}) == JOB_STUCK
    assert code({1: ("poisonous", None), 2: ("stuck", None)}) == JOB_LOST
    assert code({1: ("lost", None)}, {2: "no hosts left"}) == NOT_RUN
    assert code({}, {2: "halted"}, interrupted=True) == INTERRUPTED
    assert code({}) == 0
    assert len({JOB_FAILED, JOB_STUCK, JOB_LOST, NOT_RUN, INTERRUPTED, 0, 1, 2}) == 8


def test_status_text():
    c = {"done": 50, "total": 100, "failed": 2, "not run": 0, "running": 4, "slots": 8}
    c.update(retired=1, elapsed=10.0)
    assert status_text(c) == ("50/100 done, 4/8 running, 2 failed, 1 hosts retired, 5.0/s, ETA 10s")


# -- audit67: job semantics ----------------------------------------------------------


def test_each_node_retry_goes_to_the_host_that_failed(capfd, tmp_path):
    """audit67 #1: -E's copy that failed on h2 is retried on h2, not on a free h1/h3."""
    flag = tmp_path / "flag"
    # (mkdir: exactly one copy fails, however the three start; a test-then-write of a
    # file let two copies see it missing at once)
    cmd = f"if mkdir {flag} 2>/dev/null; then exit 1; fi; echo ok"
    log = tmp_path / "log"
    argv = ["-n", "h1", "h2", "h3", "-E", cmd, "--retry-failed", "1", "--joblog", str(log)]
    rc, out, err = run(capfd, *argv)
    assert rc == 0, err
    rows = [r.split("\t") for r in log.read_text().splitlines()[1:]]
    failed = [(r[0], r[1]) for r in rows if r[5] == "failed"]
    assert len(failed) == 1
    seq, host = failed[0]
    assert [r[1] for r in rows if r[0] == seq and r[5] == "done"] == [host]
    assert sorted(r[1] for r in rows if r[5] == "done") == ["h1", "h2", "h3"]


def test_each_node_resume_reruns_the_copy_on_its_own_host(capfd, tmp_path):
    """audit67 #1: --resume maps done lines by host; the summary names the host."""
    flag = tmp_path / "flag"
    log = tmp_path / "log"
    cmd = f'if [ "$(hostname)" ] && [ -e {flag} ]; then echo ok; else exit 3; fi'
    log.write_text(
        HEADER + "\n"
        f"1\th2\t1.0\t0.1\t0\tdone\t{escape(cmd)}\n"  # h2 did it as job 1 (other order)
        f"2\th1\t1.0\t0.1\t3\tfailed\t{escape(cmd)}\n"
    )
    rc, out, err = run(capfd, "-n", "h1", "h2", "-E", cmd, "--joblog", str(log), "--resume")
    assert rc == JOB_FAILED, err
    assert "failed (failed, exit 3): job 1 on h1" in err  # h1 ran it, h2 was skipped
    assert added_up(err, 2) == (1, 1, 0)
    flag.write_text("")
    rc, out, err = run(capfd, "-n", "h1", "h2", "-E", cmd, "--joblog", str(log), "--resume")
    assert rc == 0, err
    assert out == "1 h1: ok\n"


def test_resume_after_a_cut_line_twice(capfd, tmp_path):
    """audit67 #4: the cut line is dropped before appending, so a second --resume works."""
    log = tmp_path / "log"
    jobs = ["echo j1", "echo j2", "echo j3"]
    argv = ["-n", "h1", "--joblog", str(log), "--resume"]
    for j in jobs:
        argv += ["-j", j]
    log.write_text(HEADER + "\n1\th1\t1.0\t0.1\t0\tdone\techo j1\n3\th1\t1796")
    rc, out, err = run(capfd, *argv)
    assert rc == 0 and sorted(out.splitlines()) == ["2 h1: j2", "3 h1: j3"], err
    text = log.read_text()
    assert text.endswith("\n")
    assert all(len(line.split("\t")) == 7 for line in text.splitlines())
    rc, out, err = run(capfd, *argv)
    assert rc == 0 and out == "", err
    assert "3 done (3 in an earlier run)" in err


def test_a_job_that_kills_every_host_is_failed_lost_not_not_run(capfd):
    """audit67 #5: it ran twice and was lost each time: failed (lost), exit 252."""
    rc, out, err = run(capfd, "-n", "h1", "h2", "-j", "kill -9 $PPID")
    assert rc == JOB_LOST, err
    assert "failed (lost, ran 2 times, lost each time): job 1: kill -9 $PPID" in err
    assert added_up(err, 1) == (0, 1, 0)


@pytest.mark.timeout(60)
def test_stuck_job_output_is_kept(capfd, tmp_path):
    """audit67 #7: what a job wrote before its --timeout kill shows where it hung."""
    job = "echo step 1 ok; echo waiting on lock >&2; sleep 30"
    rc, out, err = run(capfd, "-n", "h1", "-j", job, "--timeout", "0.5", "--retries", "0")
    assert rc == JOB_STUCK, err
    assert out == "1 h1: step 1 ok\n" and "1 h1: waiting on lock" in err
    outdir = tmp_path / "out"
    rc, out, err = run(capfd, "-n", "h1", "-j", job, "--timeout", "0.5", "--retries", "0",
                       "--outdir", str(outdir))  # fmt: skip
    assert rc == JOB_STUCK, err
    assert (outdir / "1.out").read_text() == "step 1 ok\n"
    assert (outdir / "1.err").read_text() == "waiting on lock\n"


@pytest.mark.timeout(90)
def test_sigterm_logs_killed_attempts_and_resume_reruns_them(tmp_path):
    """audit10b: a job killed while running is "killed while running", not "not run",
    and has a joblog line (class killed, exit -) that --resume reruns."""
    import signal
    import subprocess
    import sys
    import time

    pidfile, log = tmp_path / "pid", tmp_path / "log"
    argv = [sys.executable, "-m", "easycluster", "farm", "-R", "local", "--no-status",
            "-n", "h1", "--joblog", str(log), "-j", f"echo $$ > {pidfile}; exec sleep 60",
            "-j", "true"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = 0
    try:
        for _ in range(300):  # bounded: the job writes its pid within seconds
            if pidfile.exists() and pidfile.read_text().endswith("\n"):
                break
            time.sleep(0.1)
        pid = int(pidfile.read_text())
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "2 not run (1 killed while running)" in err
    assert "killed while running (interrupted): job 1: echo" in err
    assert "not run (interrupted): job 2: true" in err
    rows = [r.split("\t") for r in log.read_text().splitlines()[1:]]
    assert [(r[0], r[4], r[5]) for r in rows] == [("1", "-", "killed")]
    assert read_done(str(log), {1: f"echo $$ > {pidfile}; exec sleep 60", 2: "true"}) == set()


def test_retired_hosts_lose_their_own_prefix_and_share_a_line():
    """audit68 #4: an error that begins with its host's name read "n2: n2: ..." (and
    "n[1-2]: %h: ..." for two hosts that failed alike)."""
    retired = {"n1": "lost", "n2": "lost", "n3": "lost"}
    detail = {
        "n1": ("", "n1: the peer closed the connection"),
        "n2": ("", "n2: the peer closed the connection"),
        "n3": ("", "n3: no sign of life from n3 for 10 s"),
    }
    assert retired_groups(retired, detail) == [
        (("lost", "no sign of life from %h for 10 s"), ["n3"]),
        (("lost", "the peer closed the connection"), ["n1", "n2"]),
    ]
