"""A real SLURM on this host, for the SLURM tests and the srun bench.

``SlurmCluster(workdir, nodes=4).start()`` runs, as its own children (foreground flags,
so this process owns and reaps them):

* ``munged -F`` with a fresh key; its socket lives in a directory readable by everyone
  (munged refuses one that is not), the key in a private one;
* ``slurmctld -D -i`` with a minimal ``slurm.conf`` written into ``workdir``: controller
  ``SlurmctldHost=SHORTNAME(127.0.0.1)`` (the name must be ``hostname -s``; the address
  avoids DNS), ``ProctrackType=proctrack/linuxproc`` and ``TaskPlugin=task/none`` (no
  cgroups), ``MailProg=/bin/true``, no accounting, a short ``SlurmdTimeout`` so a dead
  node is declared DOWN in seconds, and one ``NodeName=n[1-N]`` line with a port range;
* one ``slurmd -D -N nX`` per node, each with its spool directory made beforehand.

Everything lives in ``workdir``; ``start`` waits (bounded) until every node is idle, and
``stop`` cancels every job, stops the daemons (TERM, then KILL after a bound) and reaps
them. Clients need ``SLURM_CONF`` (``env``).

The ``slurm_cluster`` fixture (session scope) starts one cluster of 4 nodes; the
``slurm`` fixture is the same cluster with ``SLURM_CONF`` set in ``os.environ`` for one
test (never for the whole session: other tests must not see SLURM's group sources). They
skip when not root or when the programs are missing, except under ``CI=true``, where
they fail: CI must run the SLURM tests (``.ci/sysdeps`` installs ``slurm-wlm`` and
``munge``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Dict, List, Optional

import pytest

PROGRAMS = ("/usr/sbin/munged", "/usr/sbin/mungekey", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
CLIENTS = ("srun", "salloc", "sinfo", "squeue", "scontrol", "scancel")
START_TIMEOUT = 30.0  # every wait in start() together (measured: under 1 s)


def slurm_missing() -> Optional[str]:
    """Why a real SLURM cannot run here, or None."""
    if os.geteuid() != 0:
        return "the SLURM tests run slurmd, which needs root"
    for path in PROGRAMS:
        if not os.access(path, os.X_OK):
            return f"{path} is missing (install slurm-wlm and munge)"
    for prog in CLIENTS:
        if shutil.which(prog) is None:
            return f"{prog} is missing (install slurm-wlm)"
    return None


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports nobody listens on (right now)."""
    for base in range(21000, 60000, 97):
        socks: List[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports")


class SlurmCluster:
    """One running SLURM: munged, slurmctld and ``nodes`` slurmd (``n1``..``nN``)."""

    def __init__(self, workdir: str, nodes: int = 4, partition: str = "debug"):
        self.dir = workdir
        self.count = nodes
        self.partition = partition
        self.names = [f"n{i}" for i in range(1, nodes + 1)]
        self.nodelist = f"n[1-{nodes}]"
        self.shortname = socket.gethostname().split(".")[0]
        self.conf = os.path.join(workdir, "slurm.conf")
        self.munge_dir = os.path.join(workdir, "munge")  # key, pid and seed: private
        # munged wants execute permission for all on every directory above its socket,
        # and pytest's tmp dirs are 0700: the socket gets a short dir of its own in /tmp
        self.socket_dir: Optional[str] = None
        self.munge_socket = ""
        self.logs = os.path.join(workdir, "log")
        self.env: Dict[str, str] = dict(os.environ, SLURM_CONF=self.conf)
        self.munged: Optional[subprocess.Popen] = None
        self.slurmctld: Optional[subprocess.Popen] = None
        self.slurmd: Dict[str, subprocess.Popen] = {}

    # -- starting ----------------------------------------------------------------------

    def start(self) -> SlurmCluster:
        deadline = time.monotonic() + START_TIMEOUT
        try:
            self._write_files()
            self._start_munged(deadline)
            self.slurmctld = self._spawn(
                "slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", self.conf]
            )
            self._wait(deadline, "slurmctld to answer", self._controller_up)
            for name in self.names:
                self.start_slurmd(name)
            self._wait(deadline, "every node to be idle", self.all_idle)
        except BaseException:
            self.stop()
            raise
        return self

    def _write_files(self) -> None:
        os.makedirs(self.munge_dir, mode=0o700, exist_ok=True)
        self.socket_dir = tempfile.mkdtemp(prefix="ec-munge-")
        os.chmod(self.socket_dir, 0o755)
        self.munge_socket = os.path.join(self.socket_dir, "munge.socket")
        for sub in ("state", "log", *(os.path.join("spool", n) for n in self.names)):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        key = os.path.join(self.munge_dir, "munge.key")
        subprocess.run(
            ["/usr/sbin/mungekey", "-c", "-f", "-k", key],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        ctld_port = _free_ports(self.count + 1)  # slurmctld's, then one per slurmd
        base = ctld_port + 1
        d = self.dir
        lines = [
            "ClusterName=ectest",
            f"SlurmctldHost={self.shortname}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "CredType=cred/munge",
            f"StateSaveLocation={d}/state",
            f"SlurmdSpoolDir={d}/spool/%n",
            f"SlurmctldPidFile={d}/slurmctld.pid",
            f"SlurmdPidFile={d}/slurmd-%n.pid",
            f"SlurmctldLogFile={d}/log/slurmctld.log",
            f"SlurmdLogFile={d}/log/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "ReturnToService=2",
            "SlurmctldTimeout=30",
            # a node whose slurmd dies is declared DOWN after this (and a ping interval)
            "SlurmdTimeout=8",
            "InactiveLimit=0",
            "KillWait=2",
            "MinJobAge=30",
            f"NodeName=n[1-{self.count}] NodeHostname={self.shortname} NodeAddr=127.0.0.1 "
            f"Port=[{base}-{base + self.count - 1}] CPUs=2 RealMemory=1000 State=UNKNOWN",
            f"PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines))

    def _start_munged(self, deadline: float) -> None:
        m = self.munge_dir
        self.munged = self._spawn(
            "munged",
            [
                "/usr/sbin/munged",
                "-F",
                f"--key-file={m}/munge.key",
                f"--socket={self.munge_socket}",
                f"--pid-file={m}/munged.pid",
                f"--log-file={self.logs}/munged.log",
                f"--seed-file={m}/munged.seed",
                "--origin=127.0.0.1",
            ],
        )
        self._wait(deadline, "munged's socket", lambda: os.path.exists(self.munge_socket))

    def _spawn(self, what: str, argv: List[str]) -> subprocess.Popen:
        with open(os.path.join(self.logs, f"{what}.out"), "ab") as out:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def start_slurmd(self, name: str) -> None:
        """(Re)start node ``name``'s slurmd."""
        old = self.slurmd.get(name)
        if old is not None and old.poll() is None:
            return
        self.slurmd[name] = self._spawn(
            f"slurmd-{name}", ["/usr/sbin/slurmd", "-D", "-N", name, "-f", self.conf]
        )

    def _wait(self, deadline: float, what: str, check) -> None:
        delay = 0.01
        while not check():
            for proc in (self.munged, self.slurmctld, *self.slurmd.values()):
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"a SLURM daemon exited ({proc.args[0]}): {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}: {self.log_tail()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    # -- questions ---------------------------------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float = 30.0) -> str:
        """Run a SLURM client command against this cluster; return its stdout."""
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def _controller_up(self) -> bool:
        proc = subprocess.run(
            ["scontrol", "ping"], env=self.env, capture_output=True, text=True, timeout=10
        )
        return proc.returncode == 0 and "UP" in proc.stdout

    def node_states(self) -> Dict[str, str]:
        """``{node: state}`` as sinfo prints it (``idle``, ``alloc``, ``down*``...)."""
        out = self.run("sinfo", "-h", "-N", "-o", "%N %t")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def all_idle(self) -> bool:
        states = self.node_states()
        return len(states) == self.count and all(s == "idle" for s in states.values())

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for name in sorted(os.listdir(self.logs)):
            with open(os.path.join(self.logs, name), errors="replace") as f:
                tail = f.read().splitlines()[-lines:]
            out.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(out)

    # -- allocations -------------------------------------------------------------------

    def allocate(self, nodes: int, *extra: str) -> str:
        """Make an allocation of ``nodes`` nodes without a shell; return its job id.

        ``--no-kill`` keeps it alive when one of its nodes fails (it shrinks)."""
        proc = subprocess.run(
            ["salloc", "--no-shell", "-N", str(nodes), "--no-kill", "--exclusive", *extra],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        for word in (proc.stderr + proc.stdout).split():
            if word.isdigit():
                return word  # "salloc: Granted job allocation 12"
        raise RuntimeError(f"salloc failed ({proc.returncode}): {proc.stderr}")

    def job_env(self, jobid: str) -> Dict[str, str]:
        """The variables a shell inside allocation ``jobid`` would see (the ones we use)."""
        nodes = self.run("squeue", "-h", "-j", jobid, "-o", "%N").strip()
        return {"SLURM_JOB_ID": jobid, "SLURM_JOB_NODELIST": nodes, "SLURM_CONF": self.conf}

    def cancel_all(self, timeout: float = 20.0) -> None:
        """Cancel every job and wait (bounded) until none is left."""
        self.run("scancel", "--user", "root", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run("squeue", "-h", "-o", "%i %T", check=False)
            if not out.strip():
                return
            time.sleep(0.1)

    def stray_steps(self) -> List[int]:
        """Pids of this cluster's slurmstepd processes (an open file in ``workdir``: its
        node's log or spool socket) and of everything they started. A step whose slurmd
        was killed outlives the job (nobody tells it to stop), and so does its task."""
        steps = []
        parents: Dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
                parents[pid] = int(fields[1])
                if fields[0] == "Z":
                    continue
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() != "slurmstepd":
                        continue
                fds = os.listdir(f"/proc/{pid}/fd")
                if any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith(self.dir) for fd in fds):
                    steps.append(pid)
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
        found, todo = [], list(steps)
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(child for child, parent in parents.items() if parent == pid)
        return found

    def kill_stray_steps(self, timeout: float = 10.0) -> None:
        """SIGKILL ``stray_steps()`` (tasks first) and wait (bounded) until they are gone
        or zombies (their parent is PID 1, which reaps them, or not: not ours to reap)."""
        pids = self.stray_steps()
        for pid in reversed(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for pid in pids:
            while time.monotonic() < deadline:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().rpartition(")")[2].split()[0] == "Z":
                            break
                except OSError:
                    break
                time.sleep(0.02)

    def heal(self, timeout: float = 60.0) -> None:
        """After a test broke nodes: cancel jobs, end steps left by killed slurmd, restart
        dead slurmd, resume DOWN nodes, and wait (bounded) until every node is idle."""
        self.cancel_all()
        self.kill_stray_steps()
        for name in self.names:
            self.start_slurmd(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.node_states()
            bad = [n for n, s in states.items() if s.startswith(("down", "drain", "fail"))]
            if bad:
                self.run(
                    "scontrol", "update", f"nodename={','.join(bad)}", "state=resume", check=False
                )
            if self.all_idle():
                return
            time.sleep(0.2)
        raise RuntimeError(f"nodes did not come back: {self.node_states()}")

    # -- stopping ----------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel every job, then stop and reap every daemon this cluster started."""
        if self.slurmctld is not None and self.slurmctld.poll() is None:
            try:
                self.cancel_all(10.0)
            except (OSError, subprocess.SubprocessError):
                pass
        procs = [*self.slurmd.values(), self.slurmctld, self.munged]
        self.kill_stray_steps()
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running SLURM of 4 nodes (``SlurmCluster``) for the whole session."""
    why = slurm_missing()
    if why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but the SLURM tests cannot run: {why}", pytrace=False)
        pytest.skip(why)
    cluster = SlurmCluster(str(tmp_path_factory.mktemp("slurm"))).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm(slurm_cluster, monkeypatch):
    """``slurm_cluster`` with ``SLURM_CONF`` set in ``os.environ`` for this test only
    (so SLURM's commands, and our group sources, reach it)."""
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.conf)
    return slurm_cluster


@pytest.fixture
def inside(slurm, monkeypatch):
    """``inside(n, cpus=None)``: allocate ``n`` nodes and make this test run "inside"
    that allocation, as a shell in ``salloc`` would (``SLURM_JOB_ID``,
    ``SLURM_JOB_NODELIST``; with ``cpus``, ``SLURM_JOB_CPUS_PER_NODE`` as salloc sets it
    for an exclusive job); returns the job id. Jobs are cancelled afterwards."""

    def enter(count: int, cpus: Optional[int] = None) -> str:
        job = slurm.allocate(count)
        env = slurm.job_env(job)
        if cpus is not None:
            env["SLURM_JOB_CPUS_PER_NODE"] = f"{cpus}(x{count})"
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return job

    yield enter
    slurm.cancel_all()


@pytest.fixture
def healed(slurm):
    """For tests that break nodes: every node idle again afterwards."""
    yield slurm
    slurm.heal()
