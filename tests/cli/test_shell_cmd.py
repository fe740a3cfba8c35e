"""The ``easycluster shell`` command: in-process through ``main(argv)`` with local-exec
nodes (real ``sh`` processes), as real subprocesses (stdin broadcast, commands read from
stdin, Ctrl-C), and over ssh against the real loopback sshd (unreachable and host-key
classes; under ``CI=true`` those never skip)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from helpers import SHELL, ctrl_c, pid_alive, wait_until
from helpers import run_shell as run

from easycluster.cli import main as cli_main

pytestmark = pytest.mark.timeout(60)


def test_live_output_is_prefixed_and_a_node_listed_twice_runs_twice(capfdbinary, monkeypatch):
    code, out, err = run(
        ["-R", "exec", "-w", "n[1-3],n2", "echo out %h %n; echo err %h >&2"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 0
    assert sorted(out.splitlines()) == [
        "n1: out n1 0",
        "n2#2: out n2 3",
        "n2: out n2 1",
        "n3: out n3 2",
    ]
    assert sorted(err.splitlines()) == ["n1: err n1", "n2#2: err n2", "n2: err n2", "n3: err n3"]


def test_gathered_blocks_exit_codes_and_summary(capfdbinary, monkeypatch):
    code, out, err = run(
        ["-R", "exec", "-b", "-w", "n[1-6]", "echo same; [ %h = n3 ] && exit 3; true"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 250  # some node exited non-zero, without -S
    blocks = [line for line in out.splitlines() if line.startswith("---")]
    assert len(blocks) == 2
    assert blocks[0].startswith("--- n[1-2,4-6] (5 nodes) ")
    assert blocks[1].startswith("--- n3 (exit code 3) ")
    assert "easycluster shell: n3: exit code 3" in err
    assert "1 of 6 did not succeed" in err


def test_dash_S_gives_the_largest_remote_code(capfdbinary, monkeypatch):
    code, _, err = run(
        ["-S", "-R", "exec", "-w", "n[1-4]", "exit $((%n * 2))"], capfdbinary, monkeypatch
    )
    assert code == 6
    assert err.count("did not succeed") == 1


def test_command_timeout_kills_and_is_its_own_class(capfdbinary, monkeypatch):
    code, out, err = run(
        ["-R", "exec", "-u", "0.5", "-w", "n[1-3]", "[ %h = n2 ] && exec sleep 30; echo done"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 251
    assert "easycluster shell: n2: timed out" in err
    assert sorted(out.splitlines()) == ["n1: done", "n3: done"]


def test_line_mode_and_diff_are_ordered_by_node(capfdbinary, monkeypatch):
    code, out, _ = run(["-R", "exec", "-L", "-w", "n[10,9,1]", "echo %h"], capfdbinary, monkeypatch)
    assert code == 0 and out.splitlines() == ["n1: n1", "n9: n9", "n10: n10"]
    code, out, _ = run(
        ["-R", "exec", "--diff", "-w", "n[1-3]", "echo a; [ %h = n2 ] && echo b; true"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 0
    assert "+b" in out.splitlines() and "--- n[1,3] (2 nodes)" in out


def test_exclusions_pick_and_usage_errors(capfdbinary, monkeypatch):
    code, out, _ = run(
        ["-R", "exec", "-L", "-w", "n[1-5]", "-x", "n[2-4]", "echo x"], capfdbinary, monkeypatch
    )
    assert code == 0 and out.splitlines() == ["n1: x", "n5: x"]
    code, out, _ = run(
        ["-R", "exec", "-w", "n[1-9]", "--pick", "3", "echo x"], capfdbinary, monkeypatch
    )
    assert code == 0 and len(out.splitlines()) == 3
    for argv, what in (
        (["echo", "x"], "no nodes"),
        (["-w", "n1", "-x", "n1", "echo"], "no node left"),
        (["-w", "n1", "-f", "0", "echo"], "-f"),
        (["-w", "n1", "-u", "-1", "echo"], "command_timeout"),
        (["-w", "n[1-", "echo"], "parse error"),
    ):
        code, _, err = run(argv, capfdbinary, monkeypatch)
        assert code in (1, 2), argv
        assert what in err, (argv, err)
    assert cli_main(["shell", "-w", "n1", "-x", "n1", "true"]) == 2  # the dispatcher knows it


def test_stdin_is_broadcast_and_nostdin_keeps_it():
    run_ = subprocess.run(
        [*SHELL, "-R", "exec", "-L", "-w", "n[1-3]", "wc -c"],
        input=b"x" * 100_000,
        capture_output=True,
        timeout=60,
    )
    assert run_.returncode == 0, run_.stderr
    assert run_.stdout.decode().split() == ["n1:", "100000", "n2:", "100000", "n3:", "100000"]
    run_ = subprocess.run(
        [*SHELL, "--nostdin", "-R", "exec", "-L", "-w", "n1", "wc -c"],
        input=b"x" * 10,
        capture_output=True,
        timeout=60,
    )
    assert run_.stdout.decode().split() == ["n1:", "0"]


def test_without_a_command_a_piped_script_runs_in_each_node_shell():
    run_ = subprocess.run(
        [*SHELL, "-R", "exec", "-L", "-w", "n[1-2]"],
        input=b"x=one\necho $x\n# a comment\n\necho two\n",
        capture_output=True,
        timeout=60,
    )
    assert run_.returncode == 0, run_.stderr
    assert run_.stdout.decode().splitlines() == ["n1: one", "n1: two", "n2: one", "n2: two"]


def test_ctrl_c_ends_every_command_and_reports_what_finished(tmp_path):
    """SIGINT to the shell's process group (a terminal's Ctrl-C): exit 130, the nodes
    still running are killed and named as interrupted, finished ones are reported."""
    pids = tmp_path / "pids"
    proc = subprocess.Popen(
        [
            *SHELL,
            "-R",
            "exec",
            "-w",
            "n[1-3]",
            # (n2 and n3 wait a little before saying they started: n1 has ended by
            # the Ctrl-C, not just printed its line)
            f"[ %h = n1 ] && {{ echo quick; exit 0; }}; echo $$ >> {pids}; "
            "sleep 0.3; echo started; exec sleep 60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    seen = []

    def ready():
        while len([s for s in seen if b"started" in s]) < 2:
            line = proc.stdout.readline()
            assert line, "the shell ended early"
            seen.append(line)

    out, err = ctrl_c(proc, ready)
    assert proc.returncode == 130, err
    assert b"n1: quick" in b"".join(seen) + out
    assert b"n[2-3] (2 nodes): interrupted" in err
    for pid in pids.read_text().split():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_cleans_up_as_ctrl_c_and_exits_128_plus_n(sig, tmp_path):
    """A batch system's SIGTERM, a closed terminal's SIGHUP, to the shell alone: what
    runs is killed and reported as after Ctrl-C, and the code is 128 + the signal."""
    pids = tmp_path / "pids"
    proc = subprocess.Popen(
        [*SHELL, "-R", "exec", "-w", "n[1-2]", f"echo $$ >> {pids}; echo up; exec sleep 60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        for _ in range(2):
            assert proc.stdout.readline().endswith(b"up\n")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 128 + sig, err
    assert b"n[1-2] (2 nodes): interrupted" in err
    left = [int(pid) for pid in pids.read_text().split()]
    assert len(left) == 2 and wait_until(lambda: not any(map(pid_alive, left)), 10)


@pytest.mark.parametrize("worker", ["ssh", "rpc"])
def test_ssh_unreachable_and_host_key_classes(worker, sshd, capfdbinary, monkeypatch):
    ssh = ["-R", worker, "-o", f"-F {sshd.config}"]
    code, out, err = run(
        [*ssh, "-t", "5", "-w", "sshtest[1-2],nosuch.invalid", "echo ok"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 252
    assert sorted(out.splitlines()) == ["sshtest1: ok", "sshtest2: ok"]
    assert "nosuch.invalid: unreachable" in err
    code, _, err = run(
        [*ssh, "-w", "sshtest1,badhostkey-sshtest", "echo ok"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 253
    assert "badhostkey-sshtest: host key unknown or changed" in err
    assert "accept-new" in err
    # --diff takes its reference among the nodes that ran: the three never reached
    # outnumber the two that printed, and are in the summary, not in the diff
    code, out, err = run(
        [*ssh, "-t", "5", "--diff", "-w", "sshtest[1-2],nosuch[1-3].invalid", "echo same"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 252 and out == "", out
    assert "nosuch[1-3].invalid (3 nodes): unreachable" in err
    # -B: the words ssh printed for a node it never reached carry no exit code
    code, out, _ = run(
        [*ssh, "-t", "5", "-B", "-w", "sshtest1,nosuch.invalid", "echo same"],
        capfdbinary,
        monkeypatch,
    )
    assert "--- nosuch.invalid (exit code" not in out and "--- nosuch.invalid --" in out


@pytest.mark.parametrize("worker", ["ssh", "rpc"])
def test_copy_and_rcopy_over_ssh(worker, sshd, tmp_path, capfdbinary, monkeypatch):
    src = tmp_path / "conf.txt"
    src.write_bytes(b"setting = 1\n" * 1000)
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    ssh = ["-R", worker, "-o", f"-F {sshd.config}"]
    code, _, err = run(
        [*ssh, "-v", "-w", "sshtest[1-2]", "--copy", str(src), "--dest", str(remote_dir)],
        capfdbinary,
        monkeypatch,
    )
    assert code == 0, err
    assert f"sshtest[1-2]: copy {src} to {remote_dir}\n" in err  # (-v says what goes where)
    assert (remote_dir / "conf.txt").read_bytes() == src.read_bytes()
    assert sorted(p.name for p in remote_dir.iterdir()) == ["conf.txt"]  # no temporaries
    back = tmp_path / "back"
    back.mkdir()
    code, _, err = run(
        [*ssh, "-w", "sshtest[1-2]", "--rcopy", str(remote_dir / "conf.txt"), "--dest", str(back)],
        capfdbinary,
        monkeypatch,
    )
    assert code == 0, err
    assert sorted(p.name for p in back.iterdir()) == ["conf.txt.sshtest1", "conf.txt.sshtest2"]
    assert (back / "conf.txt.sshtest2").read_bytes() == src.read_bytes()
    code, _, err = run(
        [*ssh, "-w", "sshtest1", "--rcopy", str(tmp_path / "missing"), "--dest", str(back)],
        capfdbinary,
        monkeypatch,
    )
    assert code == 250 and "sshtest1: exit code 1" in err
    code, _, err = run(
        [*ssh, "-w", "sshtest1", "--copy", str(tmp_path / "nope")], capfdbinary, monkeypatch
    )
    assert code == 2 and "no such file" in err


@pytest.mark.parametrize("worker", ["ssh", "rpc"])
def test_several_copy_sources_need_a_directory_and_distinct_names(
    worker, sshd, tmp_path, capfdbinary, monkeypatch
):
    """As scp: two sources or more go into an existing directory; two that would land
    on one name are refused before anything runs; the summary names the source."""
    for path in ("a/f.txt", "b/f.txt", "g.txt"):
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text(path)
    a, b, g = (str(tmp_path / p) for p in ("a/f.txt", "b/f.txt", "g.txt"))
    into = tmp_path / "into"
    into.mkdir()
    ssh = ["-R", worker, "-o", f"-F {sshd.config}", "-w", "sshtest[1-2]"]
    code, _, err = run(
        [*ssh, "--copy", a, g, "--dest", str(tmp_path / "newdir")], capfdbinary, monkeypatch
    )
    assert code == 250, err
    assert not (tmp_path / "newdir").exists()  # (it was one file, the last copy's)
    assert f"copy {a}: sshtest[1-2] (2 nodes): exit code 1" in err
    assert f"copy {g}: sshtest[1-2] (2 nodes): exit code 1" in err
    assert "#2" not in err.split("\n", 4)[-1]  # (the summary: names, not slots)
    code, _, err = run([*ssh, "--copy", a, g, "--dest", g], capfdbinary, monkeypatch)
    assert code == 250 and f"{g}: not a directory" in err, err
    assert (tmp_path / "g.txt").read_text() == "g.txt"
    for how, dest in (("--copy", into), ("--rcopy", into), ("--copy", None)):
        second = a if dest is None else b
        words = [how, a, second] + ([] if dest is None else ["--dest", str(dest)])
        code, _, err = run([*ssh, *words], capfdbinary, monkeypatch)
        assert code == 2 and f"{a} and {second} would both be copied to" in err, err
    assert list(into.iterdir()) == []
    code, _, err = run([*ssh, "--copy", a, g, "--dest", str(into)], capfdbinary, monkeypatch)
    assert code == 0, err
    assert sorted(p.name for p in into.iterdir()) == ["f.txt", "g.txt"]
    code, _, err = run([*ssh, "--copy", a, "--dest", "~root/x"], capfdbinary, monkeypatch)
    assert code == 2 and "~root is not expanded on the nodes" in err, err


def test_every_subcommand_and_the_package_say_one_version(capsys):
    import easycluster

    assert easycluster.__version__ == easycluster.VERSION
    for argv in (["--version"], ["shell", "--version"], ["gather", "--version"]):
        assert cli_main(argv) == 0
        assert capsys.readouterr().out.strip() == f"easycluster {easycluster.VERSION}"
