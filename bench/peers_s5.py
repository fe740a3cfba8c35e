"""The side-by-side harness's S5 (one call on each of 50 servers), every peer resident at
once and measured in alternating blocks.

    .venv/bin/python bench/peers_s5.py [--harness DIR] [--peers-python PY]
        [--peers baseline,rpyc,...] [--servers N] [--blocks B] [--rounds R] [--base COMMIT]

The shared harness (``../shared/bench/peers.py``) measures each peer in its turn: ten
rounds on 50 servers, minutes apart from the next peer's, and on this machine the same
code moves by a half between sittings, so its S5 ranking follows the machine rather
than the peers. Here each peer gets a driver process of its own (the peer's interpreter:
``--peers-python`` for the peers, ours for ``ours`` and ``ours-local``) that loads the
harness's own adapter, starts the peer's servers with the harness's ``Servers`` and
connects to them; once every peer is resident, each driver runs the harness's own S5
measure (one round, then the median of the next ten), then the rounds go to the peers
in blocks, in an order reversed at every block (A B C, C B A, ...). Per block: the
round's median, and the whole machine's busy CPU per call (``/proc/stat``, every
process: servers, driver, kernel). The table gives each peer's medians over the blocks
and, against ``ours`` and ``ours-local``, in how many blocks ours had the shorter round.

``--base COMMIT`` adds ``ours@base`` and ``ours-local@base``: our rows again, master and
servers running the package as COMMIT left it (``git archive``, first on the servers'
and the driver's ``PYTHONPATH``), to tell a change from the machine's drift in the same
sitting (``--peers ours,ours@base`` for just those two).

Needs the harness and the peers' venv as the harness's README makes them (defaults:
``../shared/bench`` next to this project and ``/tmp/peers/venv/bin/python``). A peer
whose driver fails to start is reported with the reason and left out.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import IO, Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

OURS = ("ours", "ours-local")
DEFAULT_PEERS = (
    "baseline,rpyc,pyro5,pyro5-marshal,execnet,execnet-socket,mitogen,easycluster,"
    "easycluster-local,ours,ours-local"
)


def option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


# ----------------------------------------------------------------------------- driver


def drive(harness: str, name: str, servers: int, workdir: str, pidlog: str) -> None:
    """One peer's side (``--drive NAME``): start its servers, connect, then answer the
    coordinator's lines on stdin (``fresh``, ``rounds R``, ``end``) with one JSON line each."""
    global _answers
    # The answers get the real stdout; anything a library or a child prints goes to the
    # log (stderr), not into the coordinator's JSON lines.
    _answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.path.insert(0, harness)
    import peers  # the harness: its adapters, its ``Servers``

    adapter = name.split("@")[0]  # (``ours@base``: the adapter of ``ours``, see --base)
    if adapter in OURS:
        peers.load_plugin(os.path.join(harness, "adapter_ours.py"))
    ad = peers.ADAPTERS[adapter]()
    ad.setup(workdir)
    args = [(i, 1) for i in range(servers)]
    expected = [i + 1 for i in range(servers)]

    def one_round() -> float:
        t0 = time.perf_counter()
        got = list(ad.fanout(conns, args))
        wall = time.perf_counter() - t0
        if got != expected:
            raise AssertionError(f"{name}: wrong results {got[:4]}...")
        return wall

    conns: List[Any] = []
    with peers.Servers(ad, servers, workdir, pidlog) as ports:
        try:
            conns.extend(ad.connect(p) for p in ports)
            answer({"ready": True})
            for line in sys.stdin:
                op = line.split()
                if op[0] == "fresh":  # the harness's own S5: a round, then ten
                    one_round()
                    answer({"walls": [one_round() for _ in range(10)]})
                elif op[0] == "rounds":
                    answer({"walls": [one_round() for _ in range(int(op[1]))]})
                else:
                    break
        finally:
            for c in conns:
                try:
                    ad.close(c)
                except Exception:
                    pass


_answers: IO[str] = sys.stdout


def answer(obj: Dict[str, Any]) -> None:
    _answers.write(json.dumps(obj) + "\n")
    _answers.flush()


# ------------------------------------------------------------------------ coordinator


def setup_missing(harness: str, peers_python: str, who: str) -> bool:
    """True, after saying what to give on stderr, if the harness or the peers' interpreter
    is not where the options say."""
    for need, what in (
        (os.path.join(harness, "peers.py"), "--harness DIR"),
        (peers_python, "--peers-python PY"),
    ):
        if not os.path.exists(need):
            print(
                f"{who}: {need} not found: give {what} (see the harness's README)", file=sys.stderr
            )
            return True
    return False


class Driver:
    """A peer's driver process, in a process group of its own (its local servers too)."""

    def __init__(
        self, name: str, python: str, harness: str, servers: int, work: str, env: Dict[str, str]
    ) -> None:
        self.name = name
        self.pidlog = os.path.join(work, f"{name}.pids")  # the harness's servers' groups
        self.log = open(os.path.join(work, f"{name}.log"), "wb")
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "--drive", name, "--harness", harness]
            + ["--servers", str(servers), "--workdir", work, "--pidlog", self.pidlog],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
            cwd=work,
            env=env,
        )

    def ask(self, line: str) -> Dict[str, Any]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(line + "\n")
        stdin.flush()
        return self.reply(stdout)

    def reply(self, stdout: Optional[IO[str]] = None) -> Dict[str, Any]:
        got = (stdout or self.proc.stdout).readline()  # type: ignore[union-attr]
        if not got:
            raise RuntimeError(f"{self.name}: driver ended: {self.log_tail()}")
        return json.loads(got)  # type: ignore[no-any-return]

    def log_tail(self) -> str:
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read()[-600:].decode("utf-8", "replace").strip() or "(no output)"

    def end(self) -> None:
        """Ask the driver to close and stop its servers; then make sure of it."""
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write("end\n")  # type: ignore[union-attr]
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        groups = [self.proc.pid]
        if os.path.exists(self.pidlog):
            with open(self.pidlog) as f:
                groups += [int(x) for x in f.read().split()]
        for g in groups:
            try:
                os.killpg(g, signal.SIGKILL)
            except OSError:
                pass  # (gone already)
        self.proc.wait()
        self.log.close()


def block(d: Driver, rounds: int, servers: int) -> Tuple[float, float]:
    """(machine CPU seconds per call, median round seconds) of one block of a peer."""
    from bench_shell import machine_busy  # (/proc/stat: all processes' CPU)

    busy0 = machine_busy()
    walls = d.ask(f"rounds {rounds}")["walls"]
    busy = machine_busy() - busy0
    return busy / (rounds * servers), statistics.median(walls)


def main() -> int:
    if "--drive" in sys.argv:
        drive(
            option("--harness", ""),
            option("--drive", ""),
            int(option("--servers", "50")),
            option("--workdir", ""),
            option("--pidlog", ""),
        )
        return 0
    # (here, not at the top: the other benches' modules import our package, which a
    # driver under the peers' interpreter must not see in place of theirs)
    sys.path.insert(0, HERE)
    from bench_fanout_cpu import empty_blocks
    from bench_shell import wait_quiet
    from run import print_table

    harness = os.path.abspath(option("--harness", os.path.join(ROOT, "..", "shared", "bench")))
    peers_python = option("--peers-python", "/tmp/peers/venv/bin/python")
    names = option("--peers", DEFAULT_PEERS).split(",")
    servers = int(option("--servers", "50"))
    blocks, rounds = int(option("--blocks", "12")), int(option("--rounds", "60"))
    if setup_missing(harness, peers_python, "peers_s5"):
        return 2
    work = tempfile.mkdtemp(prefix="easycluster-peers-s5-")
    base = option("--base", "")
    envs = {"": dict(os.environ)}
    if base:
        tree = os.path.join(work, "base")
        os.mkdir(tree)
        archive = subprocess.run(
            ["git", "-C", ROOT, "archive", base, "easycluster"], capture_output=True
        )
        if archive.returncode:
            print(f"peers_s5: --base {base}: {archive.stderr.decode().strip()}", file=sys.stderr)
            shutil.rmtree(work, ignore_errors=True)
            return 2
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        envs["base"] = dict(os.environ, PYTHONPATH=tree)
        if "--peers" not in sys.argv:
            names += [f"{n}@base" for n in OURS]
    drivers: List[Driver] = []
    skipped: Dict[str, str] = {}
    try:
        for name in names:  # one at a time: each peer's servers start on a quiet machine
            adapter, _, variant = name.partition("@")
            if variant not in envs or (variant and adapter not in OURS):
                skipped[name] = "no such variant (only ours and ours-local have @base, with --base)"
                continue
            python = sys.executable if adapter in OURS else peers_python
            d = Driver(name, python, harness, servers, work, envs[variant])
            drivers.append(d)
            try:
                d.reply()
            except (RuntimeError, ValueError) as e:
                skipped[name] = str(e).splitlines()[-1][:160]
        live = [d for d in drivers if d.name not in skipped]
        if not live:
            for name, why in skipped.items():
                print(f"peers_s5: {name}: {why}", file=sys.stderr)
            print("peers_s5: no peer to measure", file=sys.stderr)
            return 2
        fresh: Dict[str, float] = {}
        for d in live:  # (on a quiet machine: the last peer's servers may still settle)
            wait_quiet()
            fresh[d.name] = statistics.median(d.ask("fresh")["walls"])
        got: Dict[str, List[Tuple[float, float]]] = {d.name: [] for d in live}
        for b in range(blocks):
            for d in live if b % 2 == 0 else live[::-1]:
                got[d.name].append(block(d, rounds, servers))
        if empty_blocks(got, "peers_s5"):
            return 2
        print(
            f"S5 interleaved: {servers} servers per peer, all resident; harness's measure "
            f"once each, then {blocks} blocks of {rounds} rounds in alternating order"
        )
        print_table(rows(got, fresh, skipped, blocks))
        return 0
    finally:
        for d in drivers:
            d.end()
        shutil.rmtree(work, ignore_errors=True)


def rows(
    got: Dict[str, List[Tuple[float, float]]],
    fresh: Dict[str, float],
    skipped: Dict[str, str],
    blocks: int,
) -> List[Tuple[str, str, str]]:
    """The table: per peer its S5 (harness's measure), block medians, and how often ours
    was faster."""
    out: List[Tuple[str, str, str]] = []
    floor = got.get("baseline")
    for name, runs in got.items():
        cpu = statistics.median(c for c, _ in runs)
        wall = statistics.median(w for _, w in runs)
        vs_floor = ""
        if floor and name != "baseline":
            vs_floor = (
                f"{statistics.median(c / f[0] for (c, _), f in zip(runs, floor)):.2f}x floor CPU"
            )
        out.append((f"{name}: S5 as the harness measures it", f"{fresh[name] * 1e3:.2f} ms", ""))
        out.append((f"{name}: round, median of blocks", f"{wall * 1e3:.2f} ms", ""))
        out.append((f"{name}: machine CPU per call", f"{cpu * 1e6:.1f} us", vs_floor))
    for mine in OURS:
        if mine not in got:
            continue
        for name, runs in got.items():
            if name in OURS:
                continue
            faster = sum(m[1] < p[1] for m, p in zip(got[mine], runs))
            ratio = statistics.median(m[1] / p[1] for m, p in zip(got[mine], runs))
            out.append(
                (f"{mine} / {name}, round", f"{ratio:.2f}", f"faster in {faster} of {blocks}")
            )
    for name, why in skipped.items():
        out.append((f"{name}: left out", "", why))
    return out


if __name__ == "__main__":
    sys.exit(main())
