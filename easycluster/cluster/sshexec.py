"""``SshBackend``: a plain ``ssh [options] host command`` per slot (clush's and pdsh's
cold path: nothing needed on the node but sshd and a shell), and how its failures are
told apart from the command's own (``classify_ssh``)."""

from __future__ import annotations

import shlex
from typing import List, Optional, Sequence, Union

from .backends import EXIT, HOSTKEY, SSH_FAILED, UNREACHABLE, Backend, Command, spawn

# ssh's messages when it, not the remote command, failed (it then exits 255).
HOSTKEY_SIGNS = (
    b"Host key verification failed",
    b"REMOTE HOST IDENTIFICATION HAS CHANGED",
    b"No matching host key",
    b"host key is known for",
)
UNREACHABLE_SIGNS = (
    b"ssh: ",  # "ssh: connect to host ...", "ssh: Could not resolve hostname ..."
    b"Connection refused",
    b"Connection timed out",
    b"Connection reset",
    b"Connection closed by",
    b"closed by remote host",
    b"Permission denied",
    b"Too many authentication failures",
    b"No route to host",
    b"Network is unreachable",
    b"kex_exchange_identification",
    b"banner exchange",
    b"Received disconnect",
    b"client_loop: send disconnect",  # (the connection lost before the command said a word)
    b"Broken pipe",
    # (ssh's own configuration, given with -o or -F, is wrong: it never tried to connect)
    b"Bad configuration option",
    b"bad configuration options",
    b"Can't open user config file",
)

# What ssh says, as its last line, when an established connection is lost
LOST_SIGNS = (
    b"closed by remote host",  # "Connection to HOST closed by remote host."
    b"client_loop: send disconnect",
    b"Connection reset by",
    b"Broken pipe",
)

# The remote wrapper that ends the command when the ssh connection goes away (sshd leaves
# a command without a terminal running when its client dies). A background subshell
# reads a copy of stdin, which ssh holds open and nobody writes; EOF comes only when the
# channel closes, and if the command (this shell's pid, the leader of the process group
# sshd made) still runs then, the whole group is killed. POSIX sh; no single quotes.
_WATCH = (
    "exec 3<&0; "
    "(cat <&3 >/dev/null 2>&1; kill -0 $$ 2>/dev/null && kill -9 -$$) >/dev/null 2>&1 & "
    'exec 3<&-; exec sh -c "$1" </dev/null'
)


# The same for a command fed stdin, whose stdin cannot be watched (its EOF is the end of
# the data, not of the connection): a background loop checks once a second that the
# parent sshd session (which exits when its connection is lost) is still there. A parent
# of 1 means the session was gone before this shell started (the connection was cut
# during the login): init never goes, so the command is not run at all.
_WATCH_FED = (
    'p=$PPID; [ "$p" = 1 ] && exit 255; '
    "(while kill -0 $p; do sleep 1; done; kill -0 $$ && kill -9 -$$) "
    '</dev/null >/dev/null 2>&1 & exec sh -c "$1"'
)


def watched(command: str, fed: bool = False) -> str:
    """``command`` wrapped so that it is killed when its ssh connection ends (``fed``: the
    command reads the stdin ssh carries; it is then killed within about a second)."""
    return f"exec sh -c '{_WATCH_FED if fed else _WATCH}' sh {shlex.quote(command)}"


class SshBackend(Backend):
    """``ssh [options] host command`` per node (nothing needed remotely but a shell).

    ``options`` come first (OpenSSH keeps the first value of an option, so the caller's
    win), then ``-oBatchMode=yes`` (never a password prompt), ``-oConnectTimeout``,
    ``-l user``. Host key checking is left as the caller's ssh configuration says: an
    unknown or changed key is reported per host (``hostkey``), never switched off here;
    pass ``-oStrictHostKeyChecking=accept-new`` in ``options`` to accept new keys.

    ``kill_remote`` (default True): when the Task kills a command (timeout, abort), the
    remote command dies too; without a terminal sshd would leave it running. It wraps a
    command in a small POSIX sh watcher (``watched``), so it needs a POSIX login shell
    remotely. A command that reads no stdin dies as soon as its connection ends; one fed
    stdin within about a second (its watcher polls the sshd session).
    """

    name = "ssh"

    def __init__(
        self,
        user: Optional[str] = None,
        options: Sequence[str] = (),
        path: Union[str, Sequence[str]] = "ssh",
        connect_timeout: Optional[float] = 10,
        kill_remote: bool = True,
    ) -> None:
        self.user = user
        self.options = list(options)
        # (a program, or its words: sshpass -f FILE ssh)
        self.path = [path] if isinstance(path, str) else list(path)
        self.connect_timeout = connect_timeout
        self.kill_remote = kill_remote

    def argv(self, node: str, command: str) -> List[str]:
        if not node or node.startswith("-"):
            raise OSError(f"bad ssh host name {node!r}")
        argv = [*self.path, *self.options, "-oBatchMode=yes"]
        if self.connect_timeout:
            argv.append(connect_timeout_option(self.connect_timeout))
        if self.user:
            argv += ["-l", self.user]
        return [*argv, "--", node, command]

    def start(self, node: str, rank: int, command: str, stdin: bool, stderr: bool) -> Command:
        hold = self.kill_remote and not stdin
        remote = watched(command, fed=stdin) if self.kill_remote else command
        return spawn(self.argv(node, remote), stdin, stderr, hold_stdin=hold)

    def classify(self, rc: int, tail: bytes) -> str:
        return classify_ssh(rc, tail)

    def verdict(self, rc: int, tail: bytes, spoke: bool) -> str:
        """A node whose command printed was reached: its 255 with ssh's connect-time words
        on stderr is its own (a nested ssh's, say), unless ssh's last line says the
        connection was lost (the node rebooted or died mid-command: ``unreachable``).
        Otherwise ``classify_ssh``: ssh's words decide (told to keep quiet, with
        ``-oLogLevel=QUIET`` or ``-q``, ssh says none, and its failures read as the
        command's own 255)."""
        if rc != SSH_FAILED:
            return EXIT
        if spoke:
            last = tail.rstrip().rsplit(b"\n", 1)[-1]
            return UNREACHABLE if any(s in last for s in LOST_SIGNS) else EXIT
        return classify_ssh(rc, tail)


def connect_timeout_option(seconds: float) -> str:
    """ssh's option for a connect timeout of ``seconds`` (whole seconds, rounded up, at
    least 1: what ssh takes); the ssh and rpc backends both pass it."""
    return f"-oConnectTimeout={max(1, int(seconds + 0.999))}"


def classify_ssh(rc: int, tail: bytes) -> str:
    """``hostkey``, ``unreachable`` or ``exit`` from ssh's return code and stderr's end."""
    if rc != SSH_FAILED:
        return EXIT
    if any(s in tail for s in HOSTKEY_SIGNS):
        return HOSTKEY
    if any(s in tail for s in UNREACHABLE_SIGNS):
        return UNREACHABLE
    return EXIT  # the remote command itself exited 255
