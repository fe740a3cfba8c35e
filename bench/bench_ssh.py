"""ssh bootstrap benchmark: one command, one table, the ssh floor measured in the same run.

    .venv/bin/python bench/bench_ssh.py [--quick] [--rpython CMD]

Starts the test suite's throwaway sshd on loopback (tests/sshd.py) and measures, as
medians over the runs:

* the floor: ``ssh HOST python3 -c pass`` (ssh connect, auth, a remote Python start);
* bootstrap to first completed call: ``Client(host=HOST, ...)`` (stage 0, payload,
  in-memory imports, handshake, definitions) plus one ``eval``; target <= 1.3x the floor;
* the remote CPU: the remote interpreter's CPU time (``time.process_time()``) when it
  runs our first call, next to the same for the floor's ``python3 -c`` (which prints it
  at its end); target: at most 20 ms above the floor. sshd's own work (key exchange,
  the channel) is alike for both and not counted;
* 32 host aliases connected in parallel (one thread each) plus one call on each, next to
  32 ``ssh HOST python3 -c pass`` run in parallel (the floor for that row);
* the same bootstrap with the opt-in remote cache warm (``remote_cache=``: the code
  stored on the host by an earlier connection, this one sends its digest): its wall time,
  remote CPU and the bytes it sends, next to the bootstrap without it.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from sshd import sshd_missing, start_sshd  # noqa: E402

import easycluster  # noqa: E402
from easycluster.launch import payload  # noqa: E402

QUICK = "--quick" in sys.argv
RUNS = 5 if QUICK else 15
NPAR = 32
RPYTHON = sys.argv[sys.argv.index("--rpython") + 1] if "--rpython" in sys.argv else "python3"


CPU_NOW = "__import__('time').process_time()"


def floor(config: str, host: str) -> Tuple[float, float]:
    """(wall s, remote CPU s) of ``ssh HOST python3 -c ...`` printing its CPU time."""
    t0 = time.perf_counter()
    out = subprocess.run(
        ["ssh", "-F", config, host, f"{RPYTHON} -c {shlex.quote('print(' + CPU_NOW + ')')}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return time.perf_counter() - t0, float(out)


def first_call(config: str, host: str, cache: Optional[str] = None) -> Tuple[float, float]:
    """(wall s, remote CPU s at the first call) of a bootstrap over ssh (with the remote
    cache in folder ``cache``, if given)."""
    t0 = time.perf_counter()
    c = easycluster.Client(
        host=host, extra_args=["-F", config], rpython=RPYTHON, remote_cache=cache
    )
    cpu = c.eval(CPU_NOW)
    t = time.perf_counter() - t0
    c.close()
    return t, cpu


def parallel_floor(config: str, hosts: List[str]) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["ssh", "-F", config, h, RPYTHON, "-c", "pass"]) for h in hosts]
    if any(p.wait() for p in procs):
        raise RuntimeError("ssh failed")
    return time.perf_counter() - t0


def parallel(config: str, hosts: List[str]) -> float:
    def one(h: str) -> easycluster.Client:
        c = easycluster.Client(
            host=h, extra_args=["-F", config], rpython=RPYTHON, connect_timeout=60
        )
        assert c.eval("6 * 7") == 42
        return c

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(len(hosts)) as ex:
        clients = list(ex.map(one, hosts))
    t = time.perf_counter() - t0
    for c in clients:
        c.close()
    return t


def main() -> int:
    why = sshd_missing()
    if why:
        print(f"bench_ssh: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="easycluster-bench-") as tmp:
        server = start_sshd(tmp)
        try:
            cfg, host = server.config, server.aliases[0]
            cache = os.path.join(tmp, "remote-cache")
            first_call(cfg, host)  # warm up: payload cache, page cache
            first_call(cfg, host, cache)  # (and the remote cache)
            floors, firsts, fcpu, cpu, cached, ccpu = [], [], [], [], [], []
            cached_run = functools.partial(first_call, cache=cache)
            for _ in range(RUNS):  # interleaved, so drifts hit all alike
                for out, cpus, run in (
                    (floors, fcpu, floor),
                    (firsts, cpu, first_call),
                    (cached, ccpu, cached_run),
                ):
                    wall, used = run(cfg, host)
                    out.append(wall)
                    cpus.append(used)
            par, parf = [], []
            for _ in range(2 if QUICK else 3):
                parf.append(parallel_floor(cfg, server.aliases[:NPAR]))
                par.append(parallel(cfg, server.aliases[:NPAR]))
        finally:
            server.stop()
    f, b = statistics.median(floors), statistics.median(firsts)
    p, pf = statistics.median(par), statistics.median(parf)
    c, cf_ = statistics.median(cpu), statistics.median(fcpu)
    above = sorted(x - y for x, y in zip(cpu, fcpu))
    rows = [
        ("ssh HOST python3 -c pass (floor)", f * 1e3, "1.00x"),
        ("bootstrap to first completed call", b * 1e3, f"{b / f:.2f}x (target <= 1.30x)"),
        ("remote CPU: python3 -c (floor)", cf_ * 1e3, "1.00x"),
        (
            "remote CPU at our first call",
            c * 1e3,
            f"+{(c - cf_) * 1e3:.1f} ms above the floor (target <= +20; per-run pairs "
            f"{above[0] * 1e3:+.1f} .. {above[-1] * 1e3:+.1f})",
        ),
        (f"{NPAR} x ssh python3 -c pass in parallel", pf * 1e3, "1.00x (parallel floor)"),
        (
            f"{NPAR} aliases in parallel + 1 call each",
            p * 1e3,
            f"{p / pf:.2f}x parallel floor, {p / NPAR * 1e3:.1f} ms/host",
        ),
    ]
    script, code, source = payload.unbundle(payload.payload())
    sent = len(script) + len(code) + 32
    sent_cached = len(payload.stage1_script(True)) + len(payload.cache_request(code, cache)) + 32
    k, kc = statistics.median(cached), statistics.median(ccpu)
    rows += [
        ("bootstrap, remote cache warm", k * 1e3, f"{k / b:.2f}x without it, {k / f:.2f}x floor"),
        ("remote CPU, remote cache warm", kc * 1e3, f"+{(kc - cf_) * 1e3:.1f} ms above the floor"),
        (
            "bytes sent before the handshake (KiB)",
            sent_cached / 1024,
            f"with the cache warm; {sent / 1024:.1f} KiB without it",
        ),
    ]
    print(
        f"ssh bootstrap, loopback sshd, median of {RUNS} runs ({len(par)} for parallel); "
        f"rpython={RPYTHON}; sent {(len(script) + len(code)) / 1024:.1f} KiB zlib "
        f"(stage 1 {len(script) / 1024:.1f} + code {len(code) / 1024:.1f}; source fallback "
        f"{len(source) / 1024:.1f}); {os.cpu_count()} CPUs"
    )
    print(f"{'measure':<42} {'ms':>9}  ratio")
    for name, ms, ratio in rows:
        print(f"{name:<42} {ms:>9.1f}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
