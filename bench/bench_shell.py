"""Cold one-shot fan-out: ``easycluster shell`` against clush and pdsh, same run.

    .venv/bin/python bench/bench_shell.py [--quick] [--runs N]

Starts a throwaway OpenSSH server on a free loopback port (fresh host and user keys in a
temporary directory, ``MaxStartups 200``, the remote shell's ``~/.bashrc`` kept out of
the timings with ``SetEnv SHLVL=1 HOME=...``) and writes two ssh configs in which the 64
aliases ``h1``..``h64`` all reach it with the same options for every tool (``BatchMode
yes``, the throwaway identity, ``StrictHostKeyChecking no``, ``UserKnownHostsFile
/dev/null``, ``LogLevel ERROR``): one with OpenSSH's default key exchange, one with
``KexAlgorithms curve25519-sha256``. For each config it times ``echo ok`` on all 64
hosts at fan-out 64, each run a fresh process (cold connections):

* ours: ``easycluster shell -b -f 64 -o '-F CONFIG' -w h[1-64] echo ok`` (stdin is
  /dev/null, so like clush it broadcasts an empty stdin), and the same with
  ``--nostdin``: the path of an admin at a terminal, where each remote command runs
  under the small sh watcher that kills it if the connection drops;
* clush: ``clush -b -f 64 -o '-F CONFIG' -w h[1-64] echo ok``;
* pdsh: ``pdsh -R ssh -f 64 -w h[1-64] echo ok`` with ``PDSH_SSH_ARGS='-F CONFIG %h'``
  (installed with apt-get when missing and running as root);
* floors: ``pdsh ... python3 -c pass`` (the cheapest any Python agent can be) and 64
  ``ssh -F CONFIG hN true`` started at once from this process and waited for.

Every output is checked (ours: one block ``h[1-64] (64 nodes)`` saying ok, exit 0).
Runs are interleaved round robin over all rows, after one untimed round, and each waits
(up to a few seconds) for the machine to be mostly idle first. The table gives the
median wall time, the range, ratios to pdsh and clush with the same key exchange, the
CPU of the tool's process tree (``getrusage(RUSAGE_CHILDREN)`` deltas: the tool and
its ssh clients) and of the sshd (listener plus reaped per-connection children: the
remote side). The sshd and the temporary files are removed at the end, also on error.
"""

from __future__ import annotations

import argparse
import getpass
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

SSHD = "/usr/sbin/sshd"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
KEX = {"default": None, "curve25519": "curve25519-sha256"}

Check = Callable[[int, str, str], Optional[str]]  # (rc, stdout, stderr) -> problem or None


def program(name: str) -> Optional[str]:
    """``name`` from this interpreter's bin directory, the project's venv, or PATH."""
    for d in (os.path.dirname(sys.executable), os.path.join(ROOT, ".venv", "bin")):
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench-shell", "-f", path],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def write(path: str, text: str, mode: int = 0o600) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


class Sshd:
    """A throwaway loopback sshd and the ssh configs (one per key exchange) reaching it."""

    def __init__(self, workdir: str, hosts: List[str]) -> None:
        self.dir = workdir
        host_key = os.path.join(workdir, "host_key")
        self.identity = os.path.join(workdir, "id_user")
        keygen(host_key)
        keygen(self.identity)
        auth = os.path.join(workdir, "authorized_keys")
        shutil.copy(self.identity + ".pub", auth)
        home = os.path.join(workdir, "home")  # the remote HOME: no ~/.bashrc there
        os.makedirs(home, mode=0o700)
        self.port = free_port()
        user = getpass.getuser()
        self.sshd_config = os.path.join(workdir, "sshd_config")
        write(
            self.sshd_config,
            f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {os.path.join(workdir, "sshd.pid")}
AuthorizedKeysFile {auth}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
PermitRootLogin {"prohibit-password" if os.geteuid() == 0 else "no"}
PrintMotd no
UseDNS no
MaxStartups 200
MaxSessions 200
LogLevel ERROR
SetEnv SHLVL=1 HOME={home}
""",
        )
        self.configs: Dict[str, str] = {}
        for name, kex in KEX.items():
            path = os.path.join(workdir, f"ssh_config.{name}")
            lines = [
                "Host " + " ".join(hosts),
                "    HostName 127.0.0.1",
                f"    Port {self.port}",
                f"    User {user}",
                f"    IdentityFile {self.identity}",
                "    IdentitiesOnly yes",
                "    BatchMode yes",
                "    StrictHostKeyChecking no",
                "    UserKnownHostsFile /dev/null",
                "    LogLevel ERROR",
            ]
            if kex:
                lines.append(f"    KexAlgorithms {kex}")
            write(path, "\n".join(lines) + "\n", 0o644)
            self.configs[name] = path
        self.log = os.path.join(workdir, "sshd.log")
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        if os.geteuid() == 0:  # privilege separation directory
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        subprocess.run([SSHD, "-t", "-f", self.sshd_config], check=True)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", self.sshd_config],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        with open(self.log) as log:
            raise RuntimeError("sshd did not start: " + log.read())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu(self) -> float:
        """CPU seconds of the listener and its reaped children (the remote side)."""
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return sum(int(x) for x in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
        except (OSError, ValueError, IndexError):
            return 0.0

    def settle(self, limit: float = 3.0) -> None:
        """Wait until every connection's sshd child has exited (and its CPU is counted)."""
        assert self.proc is not None
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                with open(path) as f:
                    if not f.read().strip():
                        return
            except OSError:
                return
            time.sleep(0.01)


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    return (sum(vals) - vals[3] - vals[4]) / CLK_TCK


def wait_quiet(threshold: float = 0.3, limit: float = 10.0) -> None:
    """Wait (at most ``limit`` s) until under ``threshold`` of the CPUs are busy."""
    ncpu = os.cpu_count() or 1
    deadline = time.monotonic() + limit
    while True:
        b0, t0 = machine_busy(), time.monotonic()
        time.sleep(0.25)
        busy = (machine_busy() - b0) / ((time.monotonic() - t0) * ncpu)
        if busy < threshold or time.monotonic() > deadline:
            return


def ensure_pdsh() -> Optional[str]:
    """pdsh's path; installed with apt-get when missing and running as root."""
    path = shutil.which("pdsh")
    if path or os.geteuid() != 0 or not shutil.which("apt-get"):
        return path
    print("bench_shell: pdsh missing: running apt-get install -y pdsh", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "env": env}
    if subprocess.run(["apt-get", "install", "-y", "pdsh"], **quiet).returncode != 0:
        print("bench_shell: failed; trying again after apt-get update", file=sys.stderr)
        subprocess.run(["apt-get", "update"], **quiet)
        if subprocess.run(["apt-get", "install", "-y", "pdsh"], **quiet).returncode != 0:
            print("bench_shell: apt-get install pdsh failed", file=sys.stderr)
    return shutil.which("pdsh")


# ---- the rows -------------------------------------------------------------------------


class Row:
    """One thing timed: a command (or a callable) per key exchange, and its check."""

    def __init__(
        self,
        kex: str,
        label: str,
        argv: Optional[List[str]] = None,
        env: Optional[Dict[str, str]] = None,
        check: Optional[Check] = None,
        func: Optional[Callable[[], Optional[str]]] = None,
        missing: Optional[str] = None,
    ) -> None:
        self.kex, self.label, self.argv, self.env = kex, label, argv, env
        self.check, self.func, self.missing = check, func, missing
        self.wall: List[float] = []
        self.client: List[float] = []
        self.server: List[float] = []
        self.foreign: List[float] = []

    def reset(self) -> None:
        for samples in (self.wall, self.client, self.server, self.foreign):
            samples.clear()

    def once(self, sshd: Sshd) -> None:
        """One timed run; raises RuntimeError when the output is not what it should be."""
        wait_quiet()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        s0, m0 = sshd.cpu(), machine_busy()
        t0 = time.perf_counter()
        problem = self.func() if self.func else self._run()
        wall = time.perf_counter() - t0
        sshd.settle()
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        s1, m1 = sshd.cpu(), machine_busy()
        if problem:
            raise RuntimeError(f"{self.kex} {self.label}: {problem}")
        client = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        self.wall.append(wall)
        self.client.append(client)
        self.server.append(s1 - s0)
        self.foreign.append(max(0.0, (m1 - m0) - client - (s1 - s0)))

    def _run(self) -> Optional[str]:
        assert self.argv is not None and self.check is not None
        proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, killed whole on a timeout
        )
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "timed out after 120 s"
        except BaseException:  # SIGTERM, Ctrl-C: leave nothing running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return self.check(proc.returncode, out.decode(errors="replace"), err.decode())


def check_ours(n: int) -> Check:
    def check(rc: int, out: str, err: str) -> Optional[str]:
        lines = out.splitlines()
        if rc != 0 or len(lines) != 2 or f"h[1-{n}] ({n} nodes)" not in lines[0]:
            return f"rc={rc} stdout={out[-500:]!r} stderr={err[-500:]!r}"
        return None if lines[1] == "ok" else f"stdout={out[-500:]!r}"

    return check


def check_clush(n: int) -> Check:
    def check(rc: int, out: str, err: str) -> Optional[str]:
        lines = [x for x in out.splitlines() if not x.startswith("---")]
        if rc != 0 or lines != [f"h[1-{n}] ({n})", "ok"]:
            return f"rc={rc} stdout={out[-500:]!r} stderr={err[-500:]!r}"
        return None

    return check


def check_pdsh(n: int, expect: Optional[str]) -> Check:
    def check(rc: int, out: str, err: str) -> Optional[str]:
        want = set() if expect is None else {f"h{i}: {expect}" for i in range(1, n + 1)}
        got = out.splitlines()
        if rc != 0 or err.strip() or set(got) != want or len(got) != len(want):
            return f"rc={rc} stdout={out[-500:]!r} stderr={err[-500:]!r}"
        return None

    return check


def ssh_floor(config: str, hosts: List[str]) -> Callable[[], Optional[str]]:
    def run() -> Optional[str]:
        procs = [
            subprocess.Popen(
                ["ssh", "-F", config, h, "true"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for h in hosts
        ]
        try:
            codes = [p.wait(120) for p in procs]
        except BaseException:  # a timeout, SIGTERM, Ctrl-C: leave nothing running
            for p in procs:
                p.kill()
                p.wait()
            raise
        bad = [h for h, rc in zip(hosts, codes) if rc]
        return f"ssh failed for {bad}" if bad else None

    return run


def make_rows(sshd: Sshd, n: int, hosts: List[str], pdsh: Optional[str]) -> List[Row]:
    ours, clush = program("easycluster"), program("clush")
    nodeset = f"h[1-{n}]"
    rows: List[Row] = []
    for kex, config in sshd.configs.items():
        common = ["-b", "-f", str(n), "-o", f"-F {config}", "-w", nodeset]
        pdsh_env = dict(os.environ, PDSH_SSH_ARGS=f"-F {config} %h")
        pdsh_argv = [pdsh or "pdsh", "-R", "ssh", "-f", str(n), "-w", nodeset]
        no_pdsh = None if pdsh else "not installed"
        ours_argv = [ours or "easycluster", "shell", *common]
        no_ours = None if ours else "not found"
        rows += [
            Row(kex, "easycluster shell -b", [*ours_argv, "echo", "ok"], None,
                check_ours(n), missing=no_ours),
            Row(kex, "easycluster shell -b --nostdin", [*ours_argv, "--nostdin", "echo", "ok"],
                None, check_ours(n), missing=no_ours),
            Row(kex, "clush -b", [clush or "clush", *common, "echo ok"], None,
                check_clush(n), missing=None if clush else "not found"),
            Row(kex, "pdsh", [*pdsh_argv, "echo", "ok"], pdsh_env,
                check_pdsh(n, "ok"), missing=no_pdsh),
            Row(kex, "floor: pdsh python3 -c pass", [*pdsh_argv, "python3", "-c", "pass"],
                pdsh_env, check_pdsh(n, None), missing=no_pdsh),
            Row(kex, f"floor: {n} x ssh true at once", func=ssh_floor(config, hosts)),
        ]  # fmt: skip
    return rows


# ---- the table ------------------------------------------------------------------------


def ratio(a: float, b: Optional[float]) -> str:
    return f"{a / b:.2f}x" if b else "-"


def table(rows: List[Row]) -> List[str]:
    med: Dict[Tuple[str, str], float] = {
        (r.kex, r.label): statistics.median(r.wall) for r in rows if r.wall
    }
    out = [
        "| kex | command | median s | range s | / pdsh | / clush | tool CPU s | sshd CPU s |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if not r.wall:
            out.append(f"| {r.kex} | {r.label} | {r.missing or 'failed'} | | | | | |")
            continue
        m = med[(r.kex, r.label)]
        pdsh, clush = med.get((r.kex, "pdsh")), med.get((r.kex, "clush -b"))
        out.append(
            f"| {r.kex} | {r.label} | {m:.3f} | {min(r.wall):.2f}-{max(r.wall):.2f} "
            f"| {ratio(m, pdsh)} | {ratio(m, clush)} | {statistics.median(r.client):.2f} "
            f"| {statistics.median(r.server):.2f} |"
        )
    return out


def version(argv: List[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    text = (p.stdout + p.stderr).strip().splitlines()
    return text[0] if text else "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, help="timed runs per row (default 5, --quick 2)")
    ap.add_argument("--quick", action="store_true", help="2 runs per row")
    ap.add_argument("--hosts", type=int, default=64, help="host aliases (64)")
    args = ap.parse_args()
    runs = args.runs or (2 if args.quick else 5)
    if not os.access(SSHD, os.X_OK) or not shutil.which("ssh"):
        print(f"bench_shell: needs {SSHD} and ssh (openssh-server, -client)", file=sys.stderr)
        return 1
    # SIGTERM ends the run through the finally blocks below (sshd stopped, files removed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pdsh = ensure_pdsh()
    hosts = [f"h{i}" for i in range(1, args.hosts + 1)]
    with tempfile.TemporaryDirectory(prefix="bench-shell-") as tmp:
        sshd = Sshd(tmp, hosts)
        sshd.start()
        try:
            rows = make_rows(sshd, args.hosts, hosts, pdsh)
            live = [r for r in rows if not r.missing]
            for rnd in range(runs + 1):  # round 0: untimed warm-up and output check
                for r in live:
                    r.once(sshd)
                    if rnd == 0:
                        r.reset()
                    else:
                        print(
                            f"round {rnd} {r.kex:>10} {r.label:<34} {r.wall[-1]:.3f} s",
                            file=sys.stderr,
                            flush=True,
                        )
            warm = measure_warm(sshd, hosts, runs)
        finally:
            sshd.stop()
    foreign = [x for r in rows for x in r.foreign]
    print(
        f"Cold one-shot fan-out of `echo ok` on {args.hosts} aliases of one loopback sshd, "
        f"fan-out {args.hosts}, median of {runs} runs (interleaved); "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{version(['ssh', '-V'])}, {version([program('clush') or 'clush', '--version'])}, "
        f"{version([pdsh, '-V']) if pdsh else 'pdsh not installed'}."
    )
    print()
    print("\n".join(table(rows)))
    print()
    print(
        "Ratios are to pdsh and clush -b with the same key exchange. tool CPU: the tool "
        "and its ssh clients (RUSAGE_CHILDREN); sshd CPU: the server side, remote "
        "commands included."
    )
    if foreign:
        print(
            f"CPU used by other processes on the machine during a run: median "
            f"{statistics.median(foreign):.2f} s, max {max(foreign):.2f} s."
        )
    print(
        f"Warm: a command on {args.hosts} hosts through sessions kept open "
        f"(`Cluster(...).run('echo ok')`, {WARM_RUNS} runs after the connect): median "
        f"{warm[0] * 1e3:.1f} ms, best {warm[1] * 1e3:.1f} ms (target <= 20 ms; "
        f"parallel-ssh: 130 ms); connecting the {args.hosts} sessions took {warm[2]:.2f} s. "
        "From the command line the same sessions are kept by `easycluster shell --keep` "
        "(bench/bench_shell_warm.py times it)."
    )
    return 0


WARM_RUNS = 50


def measure_warm(sshd: Sshd, hosts: List[str], runs: int) -> Tuple[float, float, float]:
    """(median, best, connect seconds) of ``Cluster.run('echo ok')`` on every host over
    sessions kept open (curve25519 config); each result is checked."""
    from easycluster import Cluster

    config = sshd.configs.get("curve25519") or next(iter(sshd.configs.values()))
    t = time.perf_counter()
    with Cluster(hosts, extra_args=["-F", config], rpython=sys.executable) as cluster:
        connect = time.perf_counter() - t
        if cluster.unreachable:
            raise RuntimeError(f"warm row: unreachable: {sorted(cluster.unreachable)}")
        times = []
        for _ in range(WARM_RUNS):
            t = time.perf_counter()
            r = cluster.run("echo ok")
            times.append(time.perf_counter() - t)
            if r.exit_code() or {v.stdout for v in r.values()} != {b"ok\n"}:
                raise RuntimeError(f"warm row: wrong results: {r.summary()}")
    return statistics.median(times), min(times), connect


if __name__ == "__main__":
    sys.exit(main())
