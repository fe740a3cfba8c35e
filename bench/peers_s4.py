"""The side-by-side harness's S4 (ssh bootstrap: a fresh process imports the library,
connects over ssh, makes a first call), the peers taking turns run by run.

    .venv/bin/python bench/peers_s4.py [--harness DIR] [--peers-python PY]
        [--peers execnet,easycluster,rpyc,mitogen,ours] [--runs N]

The shared harness runs each peer's five S4 samples in a row, minutes apart from the
next peer's, and S4 differs between the first peers by less than the machine drifts in
that time. Here every run has one sample of each peer, in an order reversed at every run
(A B C, C B A, ...), each the harness's own (``peers.py --ssh-once NAME``: its clock
starts before the import and stops after the first call), and one sample of the floor:
``ssh HOST PYTHON -c pass``, its wall time (ssh's connection and a bare remote
interpreter: what no library can go under). The table gives each peer's median and, for
``ours``, in how many runs it was faster than each peer.

Needs the harness's sshd (``bash ../shared/bench/start_sshd.sh``) and its peers' venv.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from peers_s5 import OURS, option, setup_missing  # noqa: E402
from run import print_table  # noqa: E402

FLOOR = "ssh HOST python -c pass"


def one_sample(harness: str, name: str, python: str, ssh: List[str], work: str, n: int) -> float:
    """The harness's S4 measure of one fresh process of peer ``name``, in seconds."""
    out = os.path.join(work, f"{name}-{n}.json")
    cmd = [python, os.path.join(harness, "peers.py")]
    if name in OURS:
        cmd += ["--plugin", os.path.join(harness, "adapter_ours.py")]
    cmd += ["--ssh-once", name, "--ssh-config", ssh[0], "--ssh-host", ssh[1]]
    cmd += ["--remote-python", ssh[2], "--workdir", work, "--out", out]
    cp = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, start_new_session=True, cwd=work
    )
    if cp.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"{name}: rc {cp.returncode}: {(cp.stderr or cp.stdout)[-400:]}")
    with open(out) as f:
        got = json.load(f)
    if got.get("status") == "n/a":
        raise RuntimeError(f"{name}: not applicable: {got.get('reason')}")
    return float(got["total_s"])


def floor_sample(ssh: List[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(["ssh", "-F", ssh[0], ssh[1], ssh[2], "-c", "pass"], check=True, timeout=60)
    return time.perf_counter() - t0


def main() -> int:
    harness = os.path.abspath(option("--harness", os.path.join(ROOT, "..", "shared", "bench")))
    peers_python = option("--peers-python", "/tmp/peers/venv/bin/python")
    names = option("--peers", "execnet,easycluster,rpyc,mitogen,ours").split(",")
    runs = int(option("--runs", "12"))
    remote = option("--remote-python", getattr(sys, "_base_executable", sys.executable))
    ssh = [option("--ssh-config", "/tmp/peers/ssh/config"), option("--ssh-host", "bench"), remote]
    if setup_missing(harness, peers_python, "peers_s4"):
        return 2
    try:
        subprocess.run(
            ["ssh", "-F", ssh[0], "-o", "ConnectTimeout=5", ssh[1], "true"],
            check=True,
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError) as e:
        print(
            f"peers_s4: ssh -F {ssh[0]} {ssh[1]} does not log in ({e}): start the "
            f"harness's sshd first (bash {harness}/start_sshd.sh)",
            file=sys.stderr,
        )
        return 2
    work = tempfile.mkdtemp(prefix="easycluster-peers-s4-")
    got: Dict[str, List[float]] = {name: [] for name in [*names, FLOOR]}
    skipped: Dict[str, str] = {}  # a peer that failed once is left out (its runs too)
    try:
        for n in range(runs):
            for name in names if n % 2 == 0 else names[::-1]:
                if name in skipped:
                    continue
                python = sys.executable if name in OURS else peers_python
                try:
                    got[name].append(one_sample(harness, name, python, ssh, work, n))
                except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as e:
                    skipped[name] = str(e).strip().splitlines()[-1][:160]
                    del got[name]
            got[FLOOR].append(floor_sample(ssh))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        (
            f"{name}: S4, median of {runs}",
            f"{statistics.median(t) * 1e3:.0f} ms",
            f"min {min(t) * 1e3:.0f} ms",
        )
        for name, t in got.items()
    ]
    for mine in OURS:
        if mine not in got:
            continue
        for name, t in got.items():
            if name == mine:
                continue
            faster = sum(m < p for m, p in zip(got[mine], t))
            ratio = statistics.median(m / p for m, p in zip(got[mine], t))
            rows.append((f"{mine} / {name}", f"{ratio:.3f}", f"faster in {faster} of {runs}"))
    rows += [(f"{name}: left out", "", why) for name, why in skipped.items()]
    print(f"S4 ssh bootstrap, peers taking turns: {runs} runs, one sample of each per run")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
