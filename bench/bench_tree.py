"""Flat against tree for one shell command on N nodes, measured at the admin node.

    sudo .venv/bin/python bench/bench_tree.py [N] [GATEWAYS]     (defaults: 64 and 8)

Builds the namespace network of tests/netns.py (root needed): GATEWAYS gateways with
N/GATEWAYS nodes each, a real sshd in every namespace. Then, each in a fresh process so
the figures are its own:

* flat: the admin runs ``ssh node uname -r`` on every node (the cluster ``Task``, fan-out
  64); for this the gateways forward packets in the kernel (``allow_direct``), no
  gateway process is involved;
* tree: the same ``Task.shell`` with ``Task.load_topology`` (the tree worker): through
  the gateways, each bootstrapped over ssh with nothing installed, running the command
  on its nodes and sending back groomed batches (identical output under one node set,
  at most one batch per 0.25 s per gateway).

Columns: the admin's peak of established ssh connections (sampled from /proc/net/tcp
every 5 ms), its CPU seconds (itself and its children: the ssh clients), its peak
resident memory (itself; and the largest child), wall time, and the distinct output
groups it received. Wall time on this 2-core machine includes every sshd and gateway
sharing the same cores: compare the admin's costs, not wall-clock wins. ``batches`` and
``entries``: what the admin received from the gateways (replies, and output plus end
entries in them), against N nodes.

    sudo .venv/bin/python bench/bench_tree.py --scale [N ...]

measures flat and tree once at each N (default 8 64 256 1000; 8 gateways; the network
rebuilt per N; N = 8, one node per gateway, measures what a level costs), for the shell
command and for one Python call on every node (``Cluster(...).call(platform.release)``,
flat or with the topology: connecting included, as a script would), writes
the rows to ``bench/results/tree-scale.json`` and a plot to
``bench/results/tree-scale.png`` (matplotlib: ``pip install matplotlib``, or the
``bench`` extra): the admin's ssh connections, CPU seconds and wall time against N, the
measured points and a model extrapolated to 10,000 and 100,000 nodes. The model: flat
opens one connection per node and its CPU and wall grow linearly (least squares on the
measured points); tree opens one per gateway (8, or K per level with K gateways each)
and its admin CPU grows with the batches it receives, which grooming keeps near one per
gateway per 0.25 s, fitted the same way; each extra level of gateways adds the
per-level cost measured as tree wall minus the slowest gateway's share.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

COMMAND = "uname -r"
# Hundreds of nodes booting at once on this 2-core machine (8 gateways each opening up
# to 64 sessions) starve each other: ssh and our server take far longer than on a real
# cluster, so nodes get a minute rather than the 10 s default (the "not ok" column
# counts any that still failed).
CONNECT_TIMEOUT = 60.0
# Sessions a gateway opens at once, in tree modes: the flat fan-out (64) shared by the
# gateways, so the namespaces (all on these 2 cores) see as many ssh handshakes at once
# whichever the mode. On a real cluster each gateway has cores of its own and would take
# the full 64.
FLAT_FANOUT = 64


def ssh_connections() -> int:
    """Established TCP connections to port 22 in this namespace (all of them are ours:
    the admin holds no others to the test prefix)."""
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[2].endswith(":0016") and parts[3] == "01":
                count += 1
    return count


def measure(mode: str, config: str, nodes: str, topology: str) -> dict:
    base = ssh_connections()  # (others' connections, e.g. an earlier run's leftovers)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], ssh_connections())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    if mode.endswith("-call"):
        groups, bad, stats, why = python_call(mode, config, nodes, topology)
    else:
        groups, bad, stats, why = shell_command(mode, config, nodes, topology)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "mode": mode,
        "connections": max(0, peak[0] - base),
        "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        "rss_mb": me.ru_maxrss / 1024,
        "child_rss_mb": kids.ru_maxrss / 1024,
        "wall": wall,
        "groups": groups,
        "not_ok": bad,
        "batches": sum(s[0] for s in stats),
        "entries": sum(s[1] + s[2] for s in stats),
        "failures": why,
    }


def gateway_fanout(topology: str) -> int:
    """Each gateway's share of the flat fan-out (see ``FLAT_FANOUT``)."""
    gateways = sum(1 for line in topology.splitlines() if line and not line.startswith("admin"))
    return max(1, FLAT_FANOUT // max(1, gateways))


def kinds(reasons: Sequence[str]) -> Dict[str, int]:
    """Failure reasons counted, node names and numbers blurred so alike ones add up."""
    out: Dict[str, int] = {}
    for r in reasons:
        key = re.sub(r"\d+", "N", r)[:120]
        out[key] = out.get(key, 0) + 1
    return out


def python_call(
    mode: str, config: str, nodes: str, topology: str
) -> Tuple[int, int, list, Dict[str, int]]:
    """``platform.release()`` on every node (connect, call, gather the distinct values)
    through ``Cluster``: flat, or with the topology."""
    import platform

    from easycluster.cluster.session import Cluster

    tree = topology if mode.startswith("tree") else None
    with Cluster(
        nodes,
        topology=tree,
        extra_args=["-F", config],
        connect_timeout=CONNECT_TIMEOUT,
        fanout=gateway_fanout(topology) if tree else FLAT_FANOUT,
    ) as cluster:
        got = cluster.call(platform.release)
        values = {repr(v) for k, v in got.items() if got.outcomes[k].succeeded}
        why = kinds([f"{type(e).__name__}: {e}" for e in got.failed.values()])
        return len(values), len(got.failed), [], why  # (unreachable slots are among them)


def shell_command(
    mode: str, config: str, nodes: str, topology: str
) -> Tuple[int, int, list, Dict[str, int]]:
    """``uname -r`` on every node through a ``Task``, flat or with the topology."""
    from easycluster.cluster.task import Task

    task = Task()
    task.set_info("fanout", FLAT_FANOUT)
    task.set_info("connect_timeout", CONNECT_TIMEOUT)
    task.set_info("ssh_options", f"-F {config}")
    if mode == "tree":
        task.load_topology(topology)
        task.set_info("fanout", gateway_fanout(topology))
    worker = task.shell(COMMAND, nodes=nodes)
    task.resume()
    groups = len(list(task.iter_buffers()))
    failed = [(s, k) for s, k in task.iter_status() if s != "hup"]
    bad = sum(len(k) for _, k in failed)
    why = kinds([f"{s}: {task.node_error(n)!r}" for s, k in failed for n in k])
    stats = list(worker.run.stats.values()) if mode == "tree" else []  # type: ignore[attr-defined]
    return groups, bad, stats, why


def run_modes(n: int, k: int, modes: Sequence[str]) -> Tuple[float, List[dict]]:
    """Build the network of ``n`` nodes behind ``k`` gateways and measure each mode in
    ``modes`` in a fresh process; returns the build time and the rows."""
    from netns import build_network

    per = n // k
    groups = [([f"gw{g + 1}"], [f"node{g * per + j + 1}" for j in range(per)]) for g in range(k)]
    topology = f"admin: gw[1-{k}]\n" + "".join(
        f"gw{g + 1}: node[{g * per + 1}-{(g + 1) * per}]\n" for g in range(k)
    )
    nodes = f"node[1-{k * per}]"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with build_network(tmp, groups) as net:
            built = time.perf_counter() - t0
            net.allow_direct()
            for mode in modes:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, net.config, nodes, topology],
                    capture_output=True,
                    text=True,
                    timeout=1800,
                )
                if out.returncode:
                    raise RuntimeError(f"{mode} at N={n} failed:\n{out.stderr}")
                row = json.loads(out.stdout)
                row["n"] = k * per
                rows.append(row)
    return built, rows


def fit(points: Sequence[Tuple[float, float]]) -> Tuple[float, float]:
    """Least-squares line ``a + b * x`` through ``points``; returns (a, b)."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0
    return my - b * mx, b


FANOUT = 64  # children per gateway below the first level, in the model


def model(rows: List[dict], k: int, sizes: Sequence[int]) -> Dict[str, List[float]]:
    """The admin's costs extrapolated to ``sizes`` (see the module docstring).

    Flat: connections = N; CPU and wall fitted linearly on the measured points. Tree:
    the admin talks to its ``k`` gateways whatever N is; its CPU fitted linearly (the
    slope is small: it receives groomed batches); levels = the fewest L with
    ``k * FANOUT**(L-1) * m >= N``, ``m`` the most nodes per gateway measured; wall (on
    machines of their own, gateways working in parallel) = the flat wall of ``m`` nodes
    plus L times the per-level cost, measured at the smallest N (one node per gateway
    when N = k) as tree wall minus flat wall: what a level adds (bootstrapping the
    gateways, their batching) when no CPU is short.
    """
    flat = [r for r in rows if r["mode"] == "flat"]
    tree = [r for r in rows if r["mode"] == "tree"]
    out: Dict[str, List[float]] = {"n": [float(n) for n in sizes]}
    fa, fb = fit([(r["n"], r["cpu"]) for r in flat])
    ta, tb = fit([(r["n"], r["cpu"]) for r in tree])
    wa, wb = fit([(r["n"], r["wall"]) for r in flat])
    if tb < 0:  # (noise around a constant: bootstrapping the gateways dominates)
        ta, tb = sum(r["cpu"] for r in tree) / len(tree), 0.0
    out["flat_cpu"] = [max(fa + fb * n, 0.0) for n in sizes]
    out["tree_cpu"] = [ta + tb * n for n in sizes]
    out["flat_wall"] = [max(wa + wb * n, 0.0) for n in sizes]
    biggest = max(tree, key=lambda r: r["n"])
    m = biggest["n"] / k  # nodes per gateway
    small = min(r["n"] for r in tree)
    level_cost = max(
        min(r["wall"] for r in tree if r["n"] == small)
        - min(r["wall"] for r in flat if r["n"] == small),
        0.0,
    )
    levels = []
    for n in sizes:
        lv = 1
        while k * FANOUT ** (lv - 1) * m < n:
            lv += 1
        levels.append(float(lv))
    out["levels"] = levels
    out["level_cost"] = [level_cost] * len(sizes)
    out["tree_wall"] = [(wa + wb * min(m, n / k)) + lv * level_cost for n, lv in zip(sizes, levels)]
    out["flat_connections"] = [float(n) for n in sizes]
    out["tree_connections"] = [float(k)] * len(sizes)
    return out


def plot(rows: List[dict], k: int, path: str) -> Optional[str]:
    """Write the PNG; None, or why it could not be written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    sizes = sorted({r["n"] for r in rows} | {10_000, 100_000})
    m = model(rows, k, sizes)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = (
        ("connections", "ssh connections opened by the admin", "flat_connections"),
        ("cpu", "admin CPU seconds (itself + its ssh clients)", "flat_cpu"),
        ("wall", "wall seconds (2 cores shared by every node)", "flat_wall"),
    )
    for ax, (key, title, _) in zip(axes, panels):
        for mode, color in (("flat", "tab:red"), ("tree", "tab:blue")):
            pts = [
                (r["n"], r["n"] if key == "connections" and mode == "flat" else r[key])
                for r in rows
                if r["mode"] == mode
            ]
            if key == "connections" and mode == "tree":
                pts = [(n, float(k)) for n, _ in pts]
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                "o",
                color=color,
                label=f"{mode}, measured",
            )
            ys = m[f"{mode}_{key}"]
            ax.plot(m["n"], ys, "--", color=color, label=f"{mode}, model")
            calls = [r for r in rows if r["mode"] == f"{mode}-call"]
            if calls and key != "connections":
                ax.plot(
                    [r["n"] for r in calls],
                    [r[key] for r in calls],
                    "x",
                    color=color,
                    label=f"{mode}, Python call",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Flat vs tree ({k} gateways), one shell command (o) and one Python call (x) on "
        "every node; dashed lines: the model (shell command)",
        fontsize=11,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    return None


def scale(sizes: List[int], k: int = 8) -> int:
    rows: List[dict] = []
    for n in sizes:
        built, got = run_modes(n, k, ("flat", "tree", "flat-call", "tree-call"))
        print(f"N = {n}: network built in {built:.1f} s", file=sys.stderr)
        rows += got
    print_rows(rows)
    out_dir = os.path.join(ROOT, "bench", "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tree-scale.json"), "w") as f:
        json.dump(rows, f, indent=1)
    png = os.path.join(out_dir, "tree-scale.png")
    why = plot(rows, k, png)
    print(f"plot: {png}" if why is None else f"no plot: {why}")
    m = model(rows, k, [10_000, 100_000])
    for i, n in enumerate(m["n"]):
        print(
            f"model N={n:,.0f}: flat {m['flat_connections'][i]:,.0f} conns, "
            f"{m['flat_cpu'][i]:,.0f} CPU s; tree {m['tree_connections'][i]:,.0f} conns, "
            f"{m['tree_cpu'][i]:,.1f} CPU s, {m['levels'][i]:.0f} level(s), "
            f"wall {m['tree_wall'][i]:.1f} s at {m['level_cost'][i]:.2f} s per level"
        )
    return 0


def print_rows(rows: List[dict]) -> None:
    head = (
        "N      mode      ssh conns  CPU s  RSS MB  child RSS MB  wall s  groups  not ok  "
        "batches  entries"
    )
    print(head)
    for r in rows:
        print(
            f"{r.get('n', 0):<6} {r['mode']:<9} {r['connections']:>9} {r['cpu']:>6.2f}"
            f" {r['rss_mb']:>7.1f} {r['child_rss_mb']:>13.1f} {r['wall']:>7.2f}"
            f" {r['groups']:>7} {r['not_ok']:>7} {r['batches']:>8} {r['entries']:>8}"
        )
    for r in rows:
        for why, count in sorted(r.get("failures", {}).items(), key=lambda kv: -kv[1])[:5]:
            print(f"  N={r.get('n', 0)} {r['mode']}: {count} x {why}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure(*sys.argv[2:6])))
        return 0
    from netns import build_network, netns_missing

    why = netns_missing()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    if len(sys.argv) > 1 and sys.argv[1] == "--scale":
        return scale([int(a) for a in sys.argv[2:]] or [8, 64, 256, 1000])
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    per = n // k
    groups = [([f"gw{g + 1}"], [f"node{g * per + j + 1}" for j in range(per)]) for g in range(k)]
    topology = f"admin: gw[1-{k}]\n" + "".join(
        f"gw{g + 1}: node[{g * per + 1}-{(g + 1) * per}]\n" for g in range(k)
    )
    nodes = f"node[1-{k * per}]"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with build_network(tmp, groups) as net:
            built = time.perf_counter() - t0
            net.allow_direct()
            rows = []
            for mode in ("flat", "tree", "flat", "tree"):  # second round: warm caches
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, net.config, nodes, topology],
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if out.returncode:
                    print(out.stderr, file=sys.stderr)
                    return 1
                rows.append(json.loads(out.stdout))
    print(f"N = {k * per} nodes behind {k} gateways (network built in {built:.1f} s)")
    head = "mode  ssh conns  CPU s  RSS MB  child RSS MB  wall s  groups  not ok  batches  entries"
    print(head)
    for r in rows:
        print(
            f"{r['mode']:<5} {r['connections']:>9} {r['cpu']:>6.2f} {r['rss_mb']:>7.1f}"
            f" {r['child_rss_mb']:>13.1f} {r['wall']:>7.2f} {r['groups']:>7} {r['not_ok']:>7}"
            f" {r['batches']:>8} {r['entries']:>8}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
