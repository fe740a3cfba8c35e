"""The exec backends' pure parts: placeholder substitution, ssh's argv, and the
classification of ssh's exit; and how ``nodes=`` becomes slots. No processes."""

from __future__ import annotations

import pytest

from easycluster.cluster.backends import EXIT, HOSTKEY, UNREACHABLE, ExecBackend, substitute
from easycluster.cluster.sshexec import SshBackend, classify_ssh, watched
from easycluster.cluster.task import Task, node_list


@pytest.mark.parametrize(
    "template, expected",
    [
        ("docker exec %h uname", "docker exec n1 uname"),
        ("echo %host %rank %n", "echo n1 4 4"),
        ("printf '100%%'", "printf '100%'"),
        ("echo %%h", "echo %h"),
        ("echo %x %", "echo %x %"),  # unknown placeholders stay as they are
    ],
)
def test_exec_substitution(template, expected):
    assert substitute(template, "n1", 4) == expected


def test_a_host_is_shell_quoted_in_the_command():
    assert substitute("ping %h", "a b;rm", 0) == "ping 'a b;rm'"
    assert ExecBackend().argv("n1", 0, "echo %h") == ["/bin/sh", "-c", "echo n1"]


def test_ssh_argv_puts_the_callers_options_first():
    b = SshBackend(user="root", options=["-F", "cfg", "-oBatchMode=no"], connect_timeout=2.5)
    assert b.argv("n1", "uptime") == [
        "ssh",
        "-F",
        "cfg",
        "-oBatchMode=no",  # first: OpenSSH keeps the first value, so the caller's wins
        "-oBatchMode=yes",
        "-oConnectTimeout=3",
        "-l",
        "root",
        "--",
        "n1",
        "uptime",
    ]
    assert SshBackend(connect_timeout=None).argv("h", "c") == [
        "ssh",
        "-oBatchMode=yes",
        "--",
        "h",
        "c",
    ]


def test_ssh_never_takes_a_host_for_an_option():
    with pytest.raises(OSError, match="bad ssh host name"):
        SshBackend().argv("-oProxyCommand=x", "c")


def test_the_remote_watcher_keeps_the_command_intact():
    wrapped = watched("echo 'it''s' $HOME")
    assert wrapped.startswith("exec sh -c '") and wrapped.endswith(
        "sh 'echo '\"'\"'it'\"'\"''\"'\"'s'\"'\"' $HOME'"
    )


@pytest.mark.parametrize(
    "rc, stderr, verdict",
    [
        (0, b"", EXIT),
        (1, b"ssh: connect to host x port 22: Connection refused", EXIT),  # not ssh's 255
        (255, b"ssh: connect to host x port 1: Connection refused\r\n", UNREACHABLE),
        (255, b"ssh: Could not resolve hostname nosuch: Name or service not known", UNREACHABLE),
        (255, b"user@127.0.0.1: Permission denied (publickey).", UNREACHABLE),
        (255, b"command-line: line 0: Bad configuration option: foo\r\n", UNREACHABLE),
        (255, b"Can't open user config file /x: No such file or directory", UNREACHABLE),
        (255, b"Connection timed out during banner exchange", UNREACHABLE),
        (255, b"client_loop: send disconnect: Broken pipe\r\n", UNREACHABLE),
        (
            255,
            b"No ED25519 host key is known for [127.0.0.1]:2222 and you have requested "
            b"strict checking.\r\nHost key verification failed.\r\n",
            HOSTKEY,
        ),
        (255, b"@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @", HOSTKEY),
        (255, b"my script failed", EXIT),  # the remote command's own 255
        (255, b"", EXIT),
    ],
)
def test_ssh_exit_classification(rc, stderr, verdict):
    assert classify_ssh(rc, stderr) == verdict


@pytest.mark.parametrize(
    "rc, stderr, spoke, verdict",
    [
        (255, b"", False, EXIT),  # a silent 255 is the command's (ssh has its words)
        (255, b"", True, EXIT),  # the command printed, then exited 255 itself
        (255, b"ssh: connect to host x port 1: Connection refused\n", True, EXIT),  # nested
        (255, b"working\nConnection to 10.0.0.5 closed by remote host.\r\n", True, UNREACHABLE),
        (255, b"client_loop: send disconnect: Broken pipe\n", True, UNREACHABLE),
        (255, b"Connection to x closed by remote host.\nthen my own error\n", True, EXIT),
        (3, b"Connection to x closed by remote host.\n", True, EXIT),  # not ssh's 255
        (255, b"my script failed", False, EXIT),
    ],
)
def test_ssh_verdict_knows_a_lost_connection_from_a_nested_ssh(rc, stderr, spoke, verdict):
    assert SshBackend().verdict(rc, stderr, spoke) == verdict


@pytest.mark.parametrize(
    "nodes, expected",
    [
        ("n[1-3]", ["n1", "n2", "n3"]),
        ("n[1-2],n1", ["n1", "n2", "n1"]),
        ("b,a,b", ["b", "a", "b"]),
        ("n[1-4]!n2", ["n1", "n3", "n4"]),
        (["x", "n[1-2]", "x"], ["x", "n1", "n2", "x"]),
        (None, []),
    ],
)
def test_nodes_become_slots_in_order_with_duplicates(nodes, expected):
    assert node_list(nodes) == expected


def test_shell_names_slots_and_a_new_run_starts_fresh():
    task = Task()
    w = task.shell("true", nodes="n1,n2,n1", backend="exec")
    assert w.keys == ["n1", "n2", "n1#2"] and w.host_of("n1#2") == "n1"
    w2 = task.shell("true", nodes="n1", backend="exec")
    assert w2.keys == ["n1#3"]  # same run: never merged
    task.abort()  # (before resume: drops what was scheduled)
    assert task.node_status("n1") == "aborted"


def test_backend_names_and_info_keys():
    task = Task()
    task.set_info("ssh_user", "admin")
    task.set_info("ssh_options", "-F '/a b/cfg' -p 2222")
    task.set_info("connect_timeout", 4)
    b = task.backend("ssh")
    assert isinstance(b, SshBackend)
    assert b.argv("n1", "c")[:4] == ["ssh", "-F", "/a b/cfg", "-p"]
    assert "-oConnectTimeout=4" in b.argv("n1", "c") and b.user == "admin"
    assert isinstance(task.backend("exec"), ExecBackend)
    with pytest.raises(ValueError, match="unknown backend"):
        task.backend("telnet")
    with pytest.raises(ValueError, match="fanout must be a positive integer"):
        task.set_info("fanout", 0)


def test_which_backends_substitute_placeholders():
    """The rule in backends.py's docstring: exec and rpc substitute, ssh does not, and
    ``literal`` runs a command as written on each."""
    from easycluster.cluster.rpc import RpcBackend

    assert SshBackend().argv("n1", "date +%h")[-1] == "date +%h"
    assert SshBackend().literal("date +%h") == "date +%h"
    for backend in (ExecBackend(), RpcBackend(connect=lambda node: None)):
        assert substitute(backend.literal("echo %h 100%"), "n1", 0) == "echo %h 100%"


def test_copy_commands_per_backend():
    from easycluster.cluster.copy import pull_command, push_command
    from easycluster.cluster.rpc import RemoteCall, RpcBackend

    args = ("/d", "f", 10, 0o100644, "f", True, 1e9)
    assert SshBackend().push_command(*args) == push_command(*args)
    assert ExecBackend().pull_command("/s%h") == pull_command("/s%h").replace("%", "%%")
    rpc = RpcBackend(connect=lambda node: None)
    push = rpc.push_command(*args)
    assert isinstance(push, RemoteCall) and push == push_command(*args)
    assert (push.func, push.args) == ("push_start", ("/d", "f", 10, 0o644, "f", True, 1e9, "d"))
    pull = rpc.pull_command("/s")
    assert isinstance(pull, RemoteCall) and (pull.func, pull.args) == ("pull_start", ("/s",))
    with pytest.raises(ValueError):
        rpc.push_command("", "f", 1, 0o644, "f", False, 0)


def test_open_pipes_gives_the_pipes_asked_for_and_closes_them_on_failure(monkeypatch):
    import os

    from easycluster.cluster import backends

    out, none, other = backends.open_pipes(True, False, True)
    assert none is None and out is not None and other is not None
    backends.close_pipes([out, none, other])
    for fd in (*out, *other):
        with pytest.raises(OSError):
            os.fstat(fd)
    made = []
    real_pipe = os.pipe

    def pipe_then_fail():
        if made:
            raise OSError(24, "Too many open files")
        made.append(real_pipe())
        return made[-1]

    monkeypatch.setattr(backends.os, "pipe", pipe_then_fail)  # (running out is hard to cause)
    with pytest.raises(OSError, match="Too many"):
        backends.open_pipes(True, True)
    for fd in made[0]:
        with pytest.raises(OSError):
            os.fstat(fd)


class Posted:
    """A command as a ``Mailbox`` sees it: only ``closed``."""

    def __init__(self) -> None:
        self.closed = False


def readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def test_a_mailbox_gives_what_was_posted_in_order_and_wakes_once_per_batch():
    from easycluster.cluster.backends import Mailbox

    box = Mailbox()
    try:
        a, b = Posted(), Posted()
        assert not readable(box.fd) and box.take() == []
        box.post(a, "stdout", b"1")
        box.post(b, "stderr", b"x")
        box.post(a, "stdout", b"2")
        box.post(a, None, b"")
        assert readable(box.fd)
        assert box.take() == [
            (a, "stdout", b"1"),
            (b, "stderr", b"x"),
            (a, "stdout", b"2"),
            (a, None, b""),
        ]
        assert not readable(box.fd)  # (the one wake-up byte was read with the batch)
        box.post(b, None, b"")  # a post after a take wakes the engine again
        assert readable(box.fd) and box.take() == [(b, None, b"")]
    finally:
        box.close()


def test_a_mailbox_drops_posts_of_a_closed_command_and_after_close():
    from easycluster.cluster.backends import Mailbox

    box = Mailbox()
    gone, live = Posted(), Posted()
    gone.closed = True
    box.post(gone, "stdout", b"late")
    box.post(live, "stdout", b"kept")
    assert box.take() == [(live, "stdout", b"kept")]
    box.close()
    box.post(live, "stdout", b"after")  # (no write to a closed descriptor)
    box.close()  # twice is fine


def test_a_full_mailbox_holds_output_until_taken_but_never_an_end():
    import threading

    from easycluster.cluster.backends import Mailbox

    box = Mailbox(limit=4)
    try:
        cmd = Posted()
        box.post(cmd, "stdout", b"12345")  # over the limit now
        box.post(cmd, None, b"")  # an end never waits
        posted = threading.Event()

        def more() -> None:
            box.post(cmd, "stdout", b"6")
            posted.set()

        t = threading.Thread(target=more)
        t.start()
        try:
            assert not posted.wait(0.2)  # held while the mailbox is full
            assert box.take() == [(cmd, "stdout", b"12345"), (cmd, None, b"")]
            assert posted.wait(10)
            assert box.take() == [(cmd, "stdout", b"6")]
        finally:
            cmd.closed = True  # (lets a held post go, whatever happened)
            t.join(10)
        blocked = threading.Thread(target=box.post, args=(cmd, "stdout", b"x"))
        box.post(Posted(), "stdout", b"12345")
        blocked.start()  # a closed command's post returns at once, full or not
        blocked.join(10)
        assert not blocked.is_alive()
    finally:
        box.close()


def test_rpc_messages_leave_the_node_to_the_line_they_go_in():
    """``without_node``: the launcher's and client's mention of the node goes, once;
    what ssh said stays, and so does a TCP peer's ``host:port``."""
    from easycluster.cluster.rpcsessions import without_node
    from easycluster.errors import ConnectError

    def text(message: str, node: str = "bad1") -> str:
        return without_node(ConnectError(message), node)

    assert text("ssh cannot connect to bad1: ssh: Could not resolve hostname bad1: x") == (
        "ssh cannot connect: ssh: Could not resolve hostname bad1: x"
    )
    assert text("bad1: the peer closed the connection") == "the peer closed the connection"
    assert text("ssh to me@bad1: authentication refused: y") == "ssh: authentication refused: y"
    assert text("python3 not found on bad1 (rpython='python3')") == (
        "python3 not found (rpython='python3')"
    )
    assert text("connecting to bad1 over ssh timed out after 3.0 s") == (
        "connecting over ssh timed out after 3.0 s"
    )
    assert text("cannot connect to bad1:7000: refused") == "cannot connect to bad1:7000: refused"
    assert text("ssh cannot connect to bad10: z") == "ssh cannot connect to bad10: z"


def test_the_rpc_backend_gets_the_tasks_ssh_settings_as_the_ssh_backend_does():
    """``ssh_path`` (shell words) is the program its sessions' ssh runs, and
    ``connect_timeout`` becomes ssh's ConnectTimeout, after the caller's options (ssh
    keeps the first value)."""
    from easycluster.cluster import Task
    from easycluster.launch.ssh import ssh_argv

    task = Task()
    task.set_info("ssh_path", "sshpass -f '/my file' ssh")
    task.set_info("ssh_options", "-F cfg")
    task.set_info("connect_timeout", 2.5)
    rpc = task.rpc_backend()
    options = rpc.connect_options
    assert options["ssh"] == ["sshpass", "-f", "/my file", "ssh"]
    assert options["extra_args"] == ["-F", "cfg", "-oConnectTimeout=3"]
    assert options["connect_timeout"] == 2.5
    argv = ssh_argv("n1", "cmd", ssh=options["ssh"], extra_args=options["extra_args"])
    assert argv[:7] == ["sshpass", "-f", "/my file", "ssh", "-F", "cfg", "-oConnectTimeout=3"]
    ssh = task.backend("ssh")
    assert isinstance(ssh, SshBackend) and "-oConnectTimeout=3" in ssh.argv("n1", "cmd")


def test_an_rpc_ssh_program_that_is_not_there_could_not_start_here():
    """As with the ssh backend, a wrong ``ssh_path`` is the node's "could not start
    here" (OSError from ``start``), not an unreachable node."""
    from easycluster.cluster.rpc import RpcBackend

    with pytest.raises(FileNotFoundError, match="/nonexistent/ssh"):
        RpcBackend(ssh=["/nonexistent/ssh", "-x"]).start("n1", 0, "true", False, True)
