"""Job farm benchmark: tiny jobs over loopback ssh hosts, ours next to GNU parallel.

    .venv/bin/python bench/bench_farm.py [--quick] [--jobs N]

Starts the test suite's throwaway sshd on loopback (tests/sshd.py): 8 host aliases of
it, 2 slots each (16 slots). Runs N jobs of ``true`` (10,000; ``--quick``: 1,000), each
whole command measured from start to exit, in the same run:

* ``easycluster farm`` over ssh: one warm session per host, a job is a round trip;
* ``easycluster farm -R local``: the same over local servers (no ssh at all), the floor
  of our own per-job cost;
* GNU parallel ``--sshlogin 2/HOST,...`` (one ssh per job), when installed (Debian
  package ``parallel``). It costs tens of ms a job here, so it runs a sample (1,000
  jobs; ``--quick``: 200) and its time is scaled to N.
* clstr 0.1 (``pip install clstr==0.1.0``, GPLv2; kept out of our venv: put it in its
  own, ``python3 -m venv V && V/bin/pip install clstr==0.1.0``, and pass
  ``--clstr V/bin/clstr`` or set ``CLSTR``; else ``clstr`` on PATH), on the same sample
  and the same hosts with 2 slots each (``-n`` names each alias twice). clstr runs
  plain ``ssh HOST JOB`` and ``ping HOST``, so it gets two shims first in PATH: ``ssh``
  adds ``-F`` with the bench's ssh_config, and ``ping`` succeeds (the aliases exist
  only in that ssh_config; its ICMP check is not what is measured). clstr opens
  ``/dev/tty`` even without ``-s`` (its defect 1), so it runs in a new session with a
  pseudo-terminal as its controlling terminal, stdin ``/dev/null`` (its defect 3:
  jobs sharing a terminal as stdin hang it now and then).

Per job = wall time / N (the jobs run 16 at a time, so this is the cost a job adds to
the whole run, startup included). Target: ours <= 1 ms a job. Figures are ratios against
GNU parallel measured here; this machine's cores are shared, so absolute numbers move.
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from sshd import sshd_missing, start_sshd  # noqa: E402

QUICK = "--quick" in sys.argv
NJOBS = int(sys.argv[sys.argv.index("--jobs") + 1]) if "--jobs" in sys.argv else 0
NJOBS = NJOBS or (1000 if QUICK else 10_000)
# GNU parallel starts one ssh per job (tens of ms here): it runs a sample of the jobs
PEER_JOBS = min(NJOBS, 200 if QUICK else 1000)
HOSTS = [f"sshtest{i}" for i in range(8)]
SLOTS = 2


def timed(argv: List[str], stdin: Optional[str] = None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        argv,
        input=stdin,
        text=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    t = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]}... exited {done.returncode}: {done.stderr[-2000:]}")
    return t


def ours(config: str, jobfile: str, local: bool) -> float:
    argv = [sys.executable, "-m", "easycluster.cli.farm", "-n", *HOSTS, "--slots", str(SLOTS)]
    argv += ["-J", jobfile, "-o", "-e", "--no-status"]
    argv += ["-R", "local"] if local else ["--ssh-options", f"-F {config}"]
    return timed(argv)


def gnu_parallel(config: str, jobfile: str) -> float:
    """Seconds for ``PEER_JOBS`` jobs (the first lines of ``jobfile``)."""
    logins = ",".join(f"{SLOTS}/{h}" for h in HOSTS)
    argv = ["parallel", "--will-cite", "--ssh", f"ssh -F {config}", "-S", logins]
    argv += ["--arg-file", jobfile]
    return timed(argv)


def clstr_program() -> Optional[str]:
    """Where clstr is: ``--clstr PATH``, ``$CLSTR``, or ``clstr`` on PATH."""
    if "--clstr" in sys.argv:
        return sys.argv[sys.argv.index("--clstr") + 1]
    return os.environ.get("CLSTR") or shutil.which("clstr")


def clstr(program: str, config: str, jobfile: str, work: str) -> float:
    """Seconds for clstr to run the jobs of ``jobfile`` (see the module docstring)."""
    shims = os.path.join(work, "clstr-shims")
    os.makedirs(shims, exist_ok=True)
    for name, body in (("ssh", f'exec ssh -F "{config}" "$@"'), ("ping", "exit 0")):
        path = os.path.join(shims, name)
        with open(path, "w") as f:
            # (the ssh shim drops its own directory from PATH, so "ssh" is the real one)
            f.write(f'#!/bin/sh\nPATH="{os.environ.get("PATH", "")}"\n{body}\n')
        os.chmod(path, 0o755)
    env = dict(os.environ, PATH=shims + os.pathsep + os.environ.get("PATH", ""))
    hosts = [h for h in HOSTS for _ in range(SLOTS)]  # a host named N times: N slots
    argv = [program, "-n", *hosts, "-J", jobfile, "-o", "-e"]
    controller, terminal = pty.openpty()
    tty_name = os.ttyname(terminal)

    def take_terminal() -> None:  # in the child, after setsid(): it becomes the ctty
        os.close(os.open(tty_name, os.O_RDWR))

    try:
        t0 = time.perf_counter()
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
        t = time.perf_counter() - t0
    finally:
        os.close(terminal)
        os.close(controller)
    if done.returncode != 0:
        raise RuntimeError(f"clstr exited {done.returncode}: {done.stderr[-2000:]!r}")
    return t


def main() -> int:
    why = sshd_missing()
    if why:
        print(f"bench_farm: cannot run: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-farm-") as work:
        server = start_sshd(os.path.join(work, "sshd"))
        try:
            jobfile = os.path.join(work, "jobs")
            with open(jobfile, "w") as f:
                f.write("true\n" * NJOBS)
            peerfile = os.path.join(work, "peer-jobs")
            with open(peerfile, "w") as f:
                f.write("true\n" * PEER_JOBS)
            rows = [
                ("easycluster farm (ssh, warm sessions)", ours(server.config, jobfile, False)),
                ("easycluster farm -R local (no ssh)", ours(server.config, jobfile, True)),
            ]
            if shutil.which("parallel"):
                peer = gnu_parallel(server.config, peerfile)
                rows.append(("GNU parallel --sshlogin", peer * NJOBS / PEER_JOBS))
            else:
                rows.append(("GNU parallel (not installed: apt-get install parallel)", 0.0))
            program = clstr_program()
            if program:
                took = clstr(program, server.config, peerfile, work)
                rows.append(("clstr 0.1 (one ssh per job)", took * NJOBS / PEER_JOBS))
            else:
                rows.append(("clstr 0.1 (not installed: see this file's docstring)", 0.0))
        finally:
            server.stop()
    peer = rows[2][1]
    slow = rows[3][1]
    print(f"{NJOBS} jobs of 'true' on {len(HOSTS)} loopback ssh hosts x {SLOTS} slots")
    if PEER_JOBS < NJOBS:
        print(f"(GNU parallel and clstr ran {PEER_JOBS} of them; time scaled to {NJOBS})")
    print(f"{'runner':<52} {'wall s':>8} {'ms/job':>8} {'vs parallel':>12} {'vs clstr':>9}")
    for name, wall in rows:
        if not wall:
            print(f"{name:<52} {'-':>8} {'-':>8} {'-':>12} {'-':>9}")
            continue
        ratio = f"{wall / peer:.3f}x" if peer else "-"
        ratio2 = f"{wall / slow:.4f}x" if slow else "-"
        print(f"{name:<52} {wall:>8.2f} {wall / NJOBS * 1000:>8.3f} {ratio:>12} {ratio2:>9}")
    print("target: easycluster farm (ssh) <= 1 ms/job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
