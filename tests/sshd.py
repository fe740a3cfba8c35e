"""A real OpenSSH server on a loopback port, for the ssh tests and the ssh bench.

``start_sshd(workdir)`` writes throwaway host and user keys (``ssh-keygen``), an
``sshd_config`` (loopback only, public keys only, ``AuthorizedKeysFile`` and the remote
``HOME`` in ``workdir``) and an ``ssh_config`` in which every ``sshtest*`` alias is this
server with the host key already trusted and ``StrictHostKeyChecking yes``. Clients reach it
with ``extra_args=["-F", server.config]``. A few more aliases exist for the unhappy paths:
``wrongkey-sshtest`` (an identity the server does not know) and ``badhostkey-sshtest``
(a known_hosts file holding another key for the server); they do not match ``sshtest*``
because ``IdentityFile`` accumulates over matching ``Host`` blocks.

The ``sshd`` fixture (session scope) starts one. Without ``/usr/sbin/sshd`` or ``ssh`` the
ssh tests skip, except under ``CI=true``, where they fail: CI must run them.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import threading
from typing import Dict, List, Optional

import pytest

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    """A loopback TCP port nobody listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "easycluster-test", "-f", path],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    with open(path + ".pub") as f:
        return f.read().strip()


class SshServer:
    """One running sshd; ``config`` is the ssh_config clients pass with ``-F``."""

    def __init__(self, workdir: str, nalias: int = 64):
        self.dir = workdir
        self.user = getpass.getuser()
        self.home = os.path.join(workdir, "home")  # the remote HOME (SetEnv HOME)
        os.makedirs(self.home, mode=0o700, exist_ok=True)
        self.identity = os.path.join(workdir, "id_user")
        self.wrong_identity = os.path.join(workdir, "id_wrong")
        host_key = os.path.join(workdir, "host_key")
        other_host_key = os.path.join(workdir, "other_host_key")
        user_pub = _keygen(self.identity)
        _keygen(self.wrong_identity)
        host_pub = _keygen(host_key)
        other_pub = _keygen(other_host_key)
        self.port = free_port()
        auth = os.path.join(workdir, "authorized_keys")
        _write(auth, user_pub + "\n", 0o600)
        self.known_hosts = os.path.join(workdir, "known_hosts")
        self.bad_known_hosts = os.path.join(workdir, "bad_known_hosts")
        entry = f"[127.0.0.1]:{self.port} "
        _write(self.known_hosts, entry + " ".join(host_pub.split()[:2]) + "\n")
        _write(self.bad_known_hosts, entry + " ".join(other_pub.split()[:2]) + "\n")
        self.sshd_config = os.path.join(workdir, "sshd_config")
        _write(
            self.sshd_config,
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {os.path.join(workdir, 'sshd.pid')}",
                    f"AuthorizedKeysFile {auth}",
                    "AuthenticationMethods publickey",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin " + ("yes" if os.geteuid() == 0 else "no"),
                    "PrintMotd no",
                    "UseDNS no",
                    "MaxStartups 200",
                    "MaxSessions 200",
                    "LogLevel INFO",
                    f"SetEnv HOME={self.home}",
                    "",
                ]
            ),
        )
        self.config = os.path.join(workdir, "ssh_config")
        self.aliases = [f"sshtest{i}" for i in range(nalias)]
        common = [
            "    HostName 127.0.0.1",
            f"    Port {self.port}",
            f"    User {self.user}",
            "    IdentitiesOnly yes",
            "    BatchMode yes",
            "    StrictHostKeyChecking yes",
            "    CheckHostIP no",
            "    LogLevel ERROR",
            "    ConnectTimeout 10",
        ]
        _write(
            self.config,
            "\n".join(
                [
                    "Host wrongkey-sshtest",
                    *common,
                    f"    IdentityFile {self.wrong_identity}",
                    f"    UserKnownHostsFile {self.known_hosts}",
                    "Host badhostkey-sshtest",
                    *common,
                    f"    IdentityFile {self.identity}",
                    f"    UserKnownHostsFile {self.bad_known_hosts}",
                    "Host sshtest*",
                    *common,
                    f"    IdentityFile {self.identity}",
                    f"    UserKnownHostsFile {self.known_hosts}",
                    "",
                ]
            ),
        )
        self.log: List[str] = []
        self._ready = threading.Event()
        self.proc: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None

    def start(self, timeout: float = 15.0) -> SshServer:
        if os.geteuid() == 0:  # sshd's privilege separation directory
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", self.sshd_config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True, name="sshd-log")
        self._reader.start()
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("sshd did not start: " + "".join(self.log))
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with self.proc.stderr as stream:  # closed at end of stream, by the one reading it
            for line in stream:
                self.log.append(line)
                if "Server listening" in line:
                    self._ready.set()
        self._ready.set()  # sshd ended: start() sees it and reports the log

    def client_kw(self, alias: str = "sshtest0", **kw: object) -> Dict[str, object]:
        """Keyword arguments for ``Client(...)`` reaching this server as ``alias``."""
        extra = ["-F", self.config, *kw.pop("extra_args", [])]  # type: ignore[misc]
        return {"host": alias, "extra_args": extra, **kw}

    def home_listing(self) -> List[str]:
        """Every path under the remote HOME, to prove nothing was written there."""
        out = []
        for root, dirs, files in os.walk(self.home):
            out.extend(os.path.join(root, n) for n in dirs + files)
        return sorted(out)

    def stop(self) -> None:
        """Stop sshd, reap it, and wait for the end of its log (which closes the pipe:
        it ends once the session processes sshd forked, which share it, are gone too)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(10)


def _write(path: str, text: str, mode: int = 0o644) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def sshd_missing() -> Optional[str]:
    """Why a real sshd cannot run here, or None."""
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing (install openssh-server)"
    for prog in ("ssh", "ssh-keygen"):
        if shutil.which(prog) is None:
            return f"{prog} is missing (install openssh-client)"
    return None


def start_sshd(workdir: str) -> SshServer:
    """Start a throwaway sshd using ``workdir`` for its files; stop it with ``.stop()``."""
    return SshServer(workdir).start()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A running loopback sshd (``SshServer``) shared by the whole session."""
    why = sshd_missing()
    if why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but the ssh tests cannot run: {why}", pytrace=False)
        pytest.skip(why)
    server = start_sshd(str(tmp_path_factory.mktemp("sshd")))
    yield server
    server.stop()
