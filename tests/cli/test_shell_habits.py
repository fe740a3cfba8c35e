"""clush and pssh habits of ``easycluster shell``: ``-n``, ``--hostfile``/``--machinefile``,
``--outdir``/``--errdir`` and ``-d``, with local-exec nodes (real ``sh`` processes)."""

from __future__ import annotations

import io
import os
import subprocess
import time

import pytest
from helpers import SHELL, ctrl_c, wait_until
from helpers import run_shell as run

from easycluster.cli.shellfiles import OutputFiles
from easycluster.cli.shellinput import PROMPT
from easycluster.cli.shellnodes import read_hostfile
from easycluster.cluster.engine import LINE_MAX

pytestmark = pytest.mark.timeout(60)


def test_dash_n_keeps_stdin_from_the_nodes():
    done = subprocess.run(
        [*SHELL, "-n", "-R", "exec", "-L", "-w", "n[1-2]", "wc -c"],
        input=b"x" * 10,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["n1:", "0", "n2:", "0"]


def test_hostfile_words_comments_and_mpi_slots(tmp_path, capfdbinary, monkeypatch):
    hosts = tmp_path / "hosts"
    hosts.write_text("# the rack\nn1 slots=4\nn[2-3]  n5 # spare: n9\n\nn1\n")
    assert read_hostfile(str(hosts)) == ["n1", "n[2-3]", "n5", "n1"]
    more = tmp_path / "more"
    more.write_text("m1\n")
    code, out, err = run(
        ["-R", "exec", "--hostfile", str(hosts), "--machinefile", str(more), "-x", "n3"]
        + ["echo %h"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 0, err
    # n1 is listed twice in the file: it runs twice, as n1 and n1#2
    assert sorted(out.splitlines()) == ["m1: m1", "n1#2: n1", "n1: n1", "n2: n2", "n5: n5"]


def test_hostfile_errors_say_which_file_and_why(tmp_path, capfdbinary, monkeypatch):
    missing = tmp_path / "nope"
    code, _, err = run(["-R", "exec", "--hostfile", str(missing), "true"], capfdbinary, monkeypatch)
    assert code == 2
    assert f"--hostfile {missing}: No such file or directory" in err
    empty = tmp_path / "empty"
    empty.write_text("# nobody yet\n")
    code, _, err = run(["-R", "exec", "--hostfile", str(empty), "true"], capfdbinary, monkeypatch)
    assert code == 2
    assert f"no node in --hostfile {empty}" in err
    code, _, err = run(["-R", "exec", "-w", "", "true"], capfdbinary, monkeypatch)
    assert code == 2 and "no node in -w '' (empty" in err  # (it said "no node in -a")
    binary = tmp_path / "binary"
    binary.write_bytes(b"n1 \xff\n")
    code, _, err = run(["-R", "exec", "--hostfile", str(binary), "true"], capfdbinary, monkeypatch)
    assert code == 2
    assert "not UTF-8" in err


def test_outdir_and_errdir_hold_one_whole_file_per_node(tmp_path, capfdbinary, monkeypatch):
    out_dir, err_dir = tmp_path / "out", tmp_path / "deep" / "err"
    code, out, err = run(
        ["-R", "exec", "-b", "--outdir", str(out_dir), "--errdir", str(err_dir)]
        + ["-w", "n[1-3],n1", "[ %h = n3 ] && exit 0; echo one %h; printf 'two'; echo bad >&2"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 0, err
    assert "--- n1,n1#2 (2 nodes)" in out  # the display is unchanged (both slots of n1)
    assert sorted(os.listdir(out_dir)) == ["n1", "n1#2", "n2", "n3"]
    assert sorted(os.listdir(err_dir)) == ["n1", "n1#2", "n2", "n3"]
    assert (out_dir / "n1").read_bytes() == b"one n1\ntwo\n"
    assert (out_dir / "n1#2").read_bytes() == b"one n1\ntwo\n"
    assert (out_dir / "n3").read_bytes() == b""  # started, printed nothing: an empty file
    assert (err_dir / "n2").read_bytes() == b"bad\n"


def test_outdir_files_of_timed_out_nodes_take_their_names(tmp_path, capfdbinary, monkeypatch):
    code, _, err = run(
        ["-R", "exec", "-u", "0.5", "--outdir", str(tmp_path), "-w", "n[1-2]"]
        + ["echo early %h; [ %h = n2 ] && exec sleep 30; true"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 251, err
    assert sorted(os.listdir(tmp_path)) == ["n1", "n2"]  # no .part file left behind
    assert (tmp_path / "n2").read_bytes() == b"early n2\n"


def test_a_line_longer_than_a_piece_stays_one_line(tmp_path, capfdbinary, monkeypatch):
    long = "y" * (3 * LINE_MAX + 5)
    script = tmp_path / "long"
    script.write_text(f"{long}\nend\n{long}")  # the last line without a newline
    code, out, err = run(
        ["-R", "exec", "--outdir", str(tmp_path / "out"), "-w", "n[1-2]", f"cat {script}"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 0, err
    lines = out.splitlines()
    assert sorted(lines) == sorted(f"n{i}: {x}" for i in (1, 2) for x in (long, "end", long))
    assert (tmp_path / "out" / "n2").read_text() == f"{long}\nend\n{long}\n"


def test_gather_lines_live_by_row_as_clush_bl(capfdbinary, monkeypatch):
    code, out, err = run(
        ["-R", "exec", "-b", "-L", "-w", "n[1-3]"]
        + ["echo same; echo diff %h; echo same2; [ %h = n2 ] && echo extra; true"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 0, err
    assert out == (
        "n[1-3]: same\nn1: diff n1\nn2: diff n2\nn3: diff n3\nn[1-3]: same2\nn2: extra\n"
    )


def test_clush_conf_and_dash_o_settings_with_the_command_line_first(
    tmp_path, capfdbinary, monkeypatch
):
    conf = tmp_path / "clush.conf"
    conf.write_text("[Main]\nfanout: 1\ncommand_timeout: 0.5\nhistory_size: 100\n")
    conf.write_text(conf.read_text() + "command_prefix: exec\nmaxrc: yes\n")
    conf.write_text(conf.read_text() + "[mode:sudo]\ncommand_prefix: sudo\n")  # (not ours)
    base = ["-R", "exec", "--conf", str(conf), "-w", "n[1-2]"]
    code, out, err = run([*base, "-v", "sleep 5"], capfdbinary, monkeypatch)
    assert code == 251  # the file's command_timeout (and its prefix made `exec sleep 5`)
    assert "not used here: history_size" in err and "n[1-2] (2 nodes): timed out" in err
    assert "sections not used here: mode:sudo" in err
    code, out, err = run(
        [*base, "-O", "command_timeout=0", "-u", "0", "sh -c 'exit 3'"], capfdbinary, monkeypatch
    )
    assert code == 3, err  # the file's maxrc: -S
    # -O wins over the file, the command line over -O: -f 2 runs both nodes at once
    code, out, err = run(
        [*base, "-O", "fanout=1", "-f", "2", "-O", "command_timeout=3", "-O", "command_prefix="]
        + ["-b"]
        + [f"touch {tmp_path}/%h.on; sleep 0.5; ls {tmp_path} | grep -c '[.]on$'"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 0, err
    assert out.endswith("\n2\n") and "n[1-2] (2 nodes)" in out


def test_clush_conf_values_read_as_clush_reads_them(tmp_path, capfdbinary, monkeypatch):
    conf = tmp_path / "clush.conf"
    conf.write_text("[Main]\nssh_options: -oControlPath=/tmp/cm-%%h\n")
    # ssh_path is words (sshpass -f FILE ssh); `echo` shows the command line it is given
    base = ["--conf", str(conf), "-O", "ssh_path=echo via", "-w", "n1", "-b"]
    code, out, err = run([*base, "true"], capfdbinary, monkeypatch)
    assert code == 0, err
    assert "via -oControlPath=/tmp/cm-%h -oBatchMode=yes" in out  # %% is one %
    code, out, err = run([*base, "-o", "-p 2222", "true"], capfdbinary, monkeypatch)
    assert "via -p 2222 -oBatchMode=yes" in out and "ControlPath" not in out  # -o replaces
    # a command that cannot start says why (it failed here, not on the node)
    code, _, err = run(
        ["-O", "ssh_path=/nonexistent/ssh", "-w", "n1", "true"], capfdbinary, monkeypatch
    )
    assert code == 254 and "n1: cannot start the command here: [Errno 2]" in err
    assert "n1: could not start here" in err and "exit code 127" not in err


def test_rcopy_into_a_missing_directory_is_refused_before_anything_runs(
    tmp_path, capfdbinary, monkeypatch
):
    dest = tmp_path / "missing"
    argv = ["-w", "n1", "-O", "ssh_path=false", "--rcopy", "/etc/hostname", "--dest", str(dest)]
    code, out, err = run(argv, capfdbinary, monkeypatch)
    assert code == 2 and "no such directory (it must exist)" in err
    assert out == "" and not dest.exists()


def test_gathered_output_ends_a_crlf_line_as_live_output_does(capfdbinary, monkeypatch):
    cmd = ["-R", "exec", "-w", "n[1-2]", "[ %h = n1 ] && printf 'a\\r\\n' || echo a"]
    code, out, _ = run(["-b", *cmd], capfdbinary, monkeypatch)
    assert out == "--- n[1-2] (2 nodes) -------------------------------------------\na\n"


def test_the_unfinished_line_of_a_timed_out_node_is_shown(tmp_path, capfdbinary, monkeypatch):
    command = "echo full; printf 'Password: '; exec sleep 30"
    code, out, _ = run(
        ["-R", "exec", "-u", "1", "--outdir", str(tmp_path), "-w", "n1", command],
        capfdbinary,
        monkeypatch,
    )
    assert code == 251 and out == "n1: full\nn1: Password: \n"
    assert (tmp_path / "n1").read_text() == "full\nPassword: \n"


@pytest.mark.parametrize(
    "setting, said",
    [
        (["-O", "fanout"], "-O takes KEY=VALUE, not 'fanout'"),
        (["-O", "fd_max=9"], "-O fd_max is clush's, not used here"),
        (["-O", "speed=9"], "-O speed is unknown (known: fanout,"),
        (["-O", "color=blue"], "-O: color takes never, always or auto, not 'blue'"),
        (["-O", "command_timeout=-1"], "command_timeout takes seconds (0: none), not '-1'"),
        (["--conf", "/nonexistent/clush.conf"], "--conf /nonexistent/clush.conf: cannot read"),
    ],
)
def test_bad_settings_are_usage_errors(setting, said, capfdbinary, monkeypatch):
    code, _, err = run(["-R", "exec", *setting, "-w", "n1", "true"], capfdbinary, monkeypatch)
    assert code == 2 and said in err


def test_output_files_unfinished_are_removed_when_the_run_breaks(tmp_path):
    files = OutputFiles(str(tmp_path), None)
    files.start("n1")
    files.write("n1", "stdout", b"half")
    files.write("n1", "stderr", b"ignored: no --errdir")
    assert os.listdir(tmp_path) == [".n1.part"]  # written beside the final name
    files.close(complete=False)
    assert os.listdir(tmp_path) == []
    files = OutputFiles(str(tmp_path), None)
    files.write("../x", "stdout", b"a node name with a slash stays inside the directory")
    files.close()
    assert os.listdir(tmp_path) == [".._x"]


def test_outdir_that_cannot_be_made_is_a_usage_error(tmp_path, capfdbinary, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(
        ["-R", "exec", "--outdir", str(blocker / "sub"), "-w", "n1", "true"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 2
    assert f"cannot make the output directory {blocker / 'sub'}" in err


def test_debug_shows_each_node_command_line(capfdbinary, monkeypatch):
    code, out, err = run(["-R", "exec", "-d", "-w", "n[1-2]", "echo %h"], capfdbinary, monkeypatch)
    assert code == 0
    assert "easycluster shell: debug: n1: /bin/sh -c 'echo n1'" in err
    assert "easycluster shell: debug: n2: /bin/sh -c 'echo n2'" in err
    # ssh: the line as it runs (port 1 of loopback refuses: unreachable, at once)
    code, out, err = run(
        ["-d", "-n", "-l", "who", "-t", "3", "-o", "-p 1", "-w", "127.0.0.1", "true"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 252, err
    line = "ssh -p 1 -oBatchMode=yes -oConnectTimeout=3 -l who -- 127.0.0.1 true"
    assert f"easycluster shell: debug: 127.0.0.1: {line}" in err


def test_ssh_options_may_begin_with_a_dash_but_the_command_keeps_its_words():
    from easycluster.cli.shell import build_parser

    parser = build_parser()
    args = parser.parse_args(
        ["-o", "-oStrictHostKeyChecking=accept-new", "-w", "n1", "--options", "-p 2222"]
        + ["-o", "-F cfg", "ssh", "-o", "-p", "x"]
    )
    assert args.options == ["-oStrictHostKeyChecking=accept-new", "-p 2222", "-F cfg"]
    assert args.command == ["ssh", "-o", "-p", "x"]  # the remote command's own -o
    args = parser.parse_args(["-u", "5", "-l", "who", "-w", "n1", "--", "-o", "x"])
    assert (args.user, args.options) == ("who", [])
    assert args.command == ["--", "-o", "x"]  # (after --: the command's)


GROUPS = """[Main]
default: racks

[racks]
map: case $GROUP in rack1) echo n[1-4];; rack2) echo n[5-8];; esac
all: echo n[1-8]
list: echo rack1 rack2

[roles]
map: case $GROUP in io) echo n[7-8];; esac
list: echo io
"""


def test_regroup_and_group_sources(tmp_path, capfdbinary, monkeypatch):
    conf = tmp_path / "groups.conf"
    conf.write_text(GROUPS)
    monkeypatch.setenv("EASYCLUSTER_GROUPS_CONF", str(conf))
    from easycluster.nodeset.std import set_std_group_resolver

    set_std_group_resolver(None)  # (the process-wide resolver reads the file again)
    try:
        code, out, err = run(
            ["-R", "exec", "-b", "-r", "-w", "n[1-6]", "echo hi"], capfdbinary, monkeypatch
        )
        assert code == 0, err
        assert out.startswith("--- @rack1,n[5-6] (6 nodes) ")
        code, out, err = run(
            ["-R", "exec", "-b", "-r", "-s", "racks", "-a", "-X", "roles:io", "echo hi"],
            capfdbinary,
            monkeypatch,
        )
        assert code == 0, err
        assert out.startswith("--- @racks:rack1,n[5-6] (6 nodes) ")  # a named source: prefixed
        code, out, err = run(
            ["-R", "exec", "-b", "-r", "-G", "-s", "roles", "-g", "io", "echo hi"],
            capfdbinary,
            monkeypatch,
        )
        assert out.startswith("--- @io (2 nodes) ")
        # commas separate groups (clush's -g rack1,rack2), outside brackets only
        code, out, err = run(
            ["-R", "exec", "-b", "-g", "rack1,rack2", "-X", "roles:io,rack1", "echo hi"],
            capfdbinary,
            monkeypatch,
        )
        assert code == 0 and out.startswith("--- n[5-6] (2 nodes) "), err
        code, out, err = run(
            ["-R", "exec", "-b", "-g", "rack[1,2]", "echo hi"], capfdbinary, monkeypatch
        )
        assert code == 0 and out.startswith("--- n[1-8] (8 nodes) "), err
        code, _, err = run(
            ["-R", "exec", "-s", "nosuch", "-w", "n1", "true"], capfdbinary, monkeypatch
        )
        assert code == 2
        assert "-s nosuch: unknown group source (known: racks, roles)" in err
    finally:
        set_std_group_resolver(None)


def test_axis_folds_headers_along_some_axes_and_maxrc_is_s(capfdbinary, monkeypatch):
    argv = ["-R", "exec", "-b", "-w", "n[1-2]-[1-3]", "echo hi"]
    code, out, err = run(argv, capfdbinary, monkeypatch)
    assert code == 0 and out.startswith("--- n[1-2]-[1-3] (6 nodes) "), err
    code, out, _ = run(["--axis", "2", *argv], capfdbinary, monkeypatch)
    assert out.startswith("--- n1-[1-3],n2-[1-3] (6 nodes) ")  # clush's own header set
    code, out, _ = run(["--axis", "-1", *argv], capfdbinary, monkeypatch)
    assert out.startswith("--- n1-[1-3],n2-[1-3] (6 nodes) ")  # -1: the last axis
    code, _, err = run(["--axis", "x", *argv], capfdbinary, monkeypatch)
    assert code == 2 and "bad --axis 'x'" in err
    code, _, _ = run(["-R", "exec", "--maxrc", "-w", "n1", "exit 3"], capfdbinary, monkeypatch)
    assert code == 3


def test_a_run_on_the_main_thread_has_a_signal_wakeup_pipe():
    """A Ctrl-C whose C handler ran just before the loop blocked in select (its Python
    handler waits for Python code to run) must still end the wait: while a run goes on,
    the wakeup fd is a pipe the loop watches; the previous one is put back after."""
    import _signal
    import stat

    from easycluster.cluster import EventHandler, Task

    seen = []

    class Look(EventHandler):
        def ev_read(self, worker, node, sname, msg):
            fd = _signal.set_wakeup_fd(-1)  # (read it, then put it back)
            _signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
            seen.append(fd)
            seen.append(stat.S_ISFIFO(os.fstat(fd).st_mode) if fd >= 0 else False)

    previous = _signal.set_wakeup_fd(-1)
    _signal.set_wakeup_fd(previous)
    task = Task()
    task.set_default("backend", "exec")
    task.run("echo go", nodes="n1", handler=Look())
    assert seen[0] >= 0 and seen[1] is True  # a pipe during the run
    assert _signal.set_wakeup_fd(previous) == previous  # and the previous fd after


def test_what_clush_users_met_in_an_audit(tmp_path, capfdbinary, monkeypatch):
    # a node whose output is one empty line is shown; --diff shows a silent node
    code, out, _ = run(["-R", "exec", "-L", "-w", "n[1-2]", "echo"], capfdbinary, monkeypatch)
    assert (code, out) == (0, "n1: \nn2: \n")
    code, out, _ = run(
        ["-R", "exec", "--diff", "-w", "n[1-3]", "[ %h = n2 ] || echo x"], capfdbinary, monkeypatch
    )
    assert "+++ n2" in out and "-x" in out
    # %hosts is refused rather than read as %h and "s"; %%hosts is literal
    code, _, err = run(["-R", "exec", "-w", "n1", "echo %hosts"], capfdbinary, monkeypatch)
    assert code == 2 and "%hosts" in err
    code, out, _ = run(["-R", "exec", "-w", "n1", "echo %%hosts"], capfdbinary, monkeypatch)
    assert out == "n1: %hosts\n"
    # -u 0: no command timeout, as in clush
    code, out, _ = run(["-R", "exec", "-u", "0", "-w", "n1", "echo ok"], capfdbinary, monkeypatch)
    assert (code, out) == (0, "n1: ok\n")
    # one directory for both --outdir and --errdir would mix the files: refused
    code, _, err = run(
        ["-R", "exec", "--outdir", str(tmp_path), "--errdir", f"{tmp_path}/", "-w", "n1", "true"],
        capfdbinary,
        monkeypatch,
    )
    assert code == 2 and "two directories" in err
    # --rcopy into something that is not a directory
    (tmp_path / "file").write_text("")
    code, _, err = run(
        ["-R", "ssh", "-w", "n1", "--rcopy", "/etc/hostname", "--dest", str(tmp_path / "file")],
        capfdbinary,
        monkeypatch,
    )
    assert code == 2 and "not a directory" in err


def test_unknown_groups_are_said_not_silently_empty(tmp_path, capfdbinary, monkeypatch):
    conf = tmp_path / "groups.conf"
    conf.write_text(GROUPS)
    monkeypatch.setenv("EASYCLUSTER_GROUPS_CONF", str(conf))
    from easycluster.nodeset.std import set_std_group_resolver

    set_std_group_resolver(None)
    try:
        code, out, err = run(
            ["-R", "exec", "-w", "n[1-2]", "-x", "@typo", "-X", "typo2", "echo hi"],
            capfdbinary,
            monkeypatch,
        )
        assert code == 0 and sorted(out.splitlines()) == ["n1: hi", "n2: hi"]
        assert "-x @typo: no node in it" in err and "-X typo2: no node in it" in err
        code, _, err = run(["-R", "exec", "-w", "@typo", "echo"], capfdbinary, monkeypatch)
        assert code == 2 and "-w @typo: no node in @typo (an unknown or empty group?)" in err
        # beside real nodes a mistyped group is no smaller run but an error, as in farm
        for argv in (["-w", "n1", "-g", "typo"], ["-w", "n1,@typo"], ["-g", "rack1,typo"]):
            code, out, err = run(["-R", "exec", *argv, "echo hi"], capfdbinary, monkeypatch)
            assert (code, out) == (2, ""), argv
            assert "no node in @typo (an unknown or empty group?)" in err, argv
    finally:
        set_std_group_resolver(None)


def test_a_closed_pipe_is_quiet():
    # | head -1: the reader leaves; no "Broken pipe" message, every command ended
    done = subprocess.run(
        f"{' '.join(SHELL)} -R exec -w n[1-40] 'seq 2000' | head -1",
        shell=True,
        capture_output=True,
        timeout=60,
    )
    assert done.stdout.count(b"\n") == 1
    assert b"Broken pipe" not in done.stderr and b"Traceback" not in done.stderr


def test_interactive_lines_of_the_shell_own_as_clush(tmp_path, capfdbinary, monkeypatch):
    # a terminal's lines (stdin that is not a real file counts as one), history kept
    lines = [
        "echo a %h",
        "?",  # the nodes
        "=",  # gathering on
        "echo b",
        "-n2",
        "!echo here > " + str(tmp_path / "local"),  # run here; its code is not counted
        "!false",
        "@n[5-6]",
        "echo c",
        "-n[5-6]",
        "echo d",  # no node left: said, and the exit code says it
        "+n7",
        "+n[",  # not a node set: said, nothing changed
        "+",  # bare: shows the nodes
        "echo e",
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    code, out, err = run(["-R", "exec", "-w", "n[1-3]"], capfdbinary, monkeypatch)
    out = out.replace(PROMPT, "")
    first = out.splitlines()[:4]  # (live lines come in the order the nodes print them)
    assert sorted(first[:3]) == ["n1: a n1", "n2: a n2", "n3: a n3"]
    assert first[3].startswith("--- n[1-3] (3 nodes) ---")
    assert "\nb\n" in out and "--- n[5-6] (2 nodes) ---" in out and "\nc\n" in out
    assert out.endswith("\ne\n") and "--- n7 ---" in out and "\nd\n" not in out
    assert "nodes: n[1-3] (3)" in err and "gathering (-b) on" in err
    assert "no node to run on" in err and "n[: not a node set" in err and "nodes: n7 (1)" in err
    assert (tmp_path / "local").read_text() == "here\n"
    assert code == 2
    history = (tmp_path / "state" / "easycluster" / "shell_history").read_text()
    assert "echo a %h" in history


def test_a_piped_script_runs_whole_in_each_node_shell_as_clush():
    script = "cd /tmp\npwd\nif [ -d /nonexistent ]; then\necho DANGER\nfi\nfalse\n"
    done = subprocess.run(
        [*SHELL, "-R", "exec", "-w", "n[1-2]"],
        input=script.encode(),
        capture_output=True,
        timeout=60,
    )
    assert sorted(done.stdout.decode().splitlines()) == ["n1: /tmp", "n2: /tmp"]
    assert done.returncode == 250  # the script's own code (its last command's)
    done = subprocess.run(
        [*SHELL, "-n", "-R", "exec", "-w", "n1"], input=b"true\n", capture_output=True
    )
    assert done.returncode == 2 and b"no command given" in done.stderr


def test_ctrl_c_with_bl_prints_the_rows_of_the_nodes_that_finished(tmp_path):
    marks = tmp_path
    proc = subprocess.Popen(
        [*SHELL, "-b", "-L", "-R", "exec", "-w", "n[1-3]"]
        + [f"echo l1; [ %h = n3 ] || {{ echo l2; exit 0; }}; echo $$ > {marks}/n3; exec sleep 60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    def ready():
        assert wait_until(lambda: (marks / "n3").exists(), timeout=30)
        time.sleep(0.5)  # (n1 and n2 have ended by then: their rows wait for n3)

    out, err = ctrl_c(proc, ready)
    assert proc.returncode == 130, err
    assert out.decode().splitlines() == ["n[1-3]: l1", "n[1-2]: l2"]
    assert b"n3: interrupted" in err


def test_dev_null_on_stdin_is_no_stdin(tmp_path, monkeypatch):
    # cron's and CI's stdin: nothing to send, so the nodes' commands keep the surer
    # ssh watcher (the end of the connection, not a poll of the session)
    import argparse

    from easycluster.cli.shellinput import stdin_for_nodes

    args = argparse.Namespace(nostdin=False)
    with open(os.devnull, "rb") as null:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(null))
        assert stdin_for_nodes(args) is None
    data = tmp_path / "data"
    data.write_bytes(b"")
    with open(data, "rb") as f:  # an empty file is still a file to broadcast
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(f))
        assert stdin_for_nodes(args) is not None


def test_copy_operands_after_a_double_dash_are_files():
    import argparse

    from easycluster.cli.shellinput import copy_operands

    args = argparse.Namespace(dest=None, preserve=False)
    assert copy_operands(["a", "--dest", "d", "-p"], args) == (["a"], "d") and args.preserve
    args = argparse.Namespace(dest="d", preserve=False)
    assert copy_operands(["a", "--", "-p", "--dest"], args) == (["a", "-p", "--dest"], "d")
    assert not args.preserve  # (it was read as -p, and "--" as a file, before)
