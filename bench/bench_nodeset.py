"""Node set speed: EasyCluster against ClusterShell 1.10, measured in the same run.

Run: ``.venv/bin/python bench/bench_nodeset.py [--repeat N]``

Prints one table: each operation, ClusterShell's time, ours, the speedup
(ClusterShell / ours), the target speedup and PASS/FAIL. Times are the best of
``--repeat`` runs (default 3) of each side, alternating, on the same inputs; both
sides must give the same answer or the row says MISMATCH.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from typing import Callable, List, Tuple

from ClusterShell.NodeSet import NodeSet as CSNodeSet

from easycluster.nodeset import NodeSet


def best_time(func: Callable[[], object], repeat: int) -> Tuple[float, object]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def cases(rnd: random.Random) -> List[Tuple[str, float, Callable, Callable]]:
    """(label, target speedup, ClusterShell callable, our callable)."""
    shuffled = [f"node{i}" for i in rnd.sample(range(1, 111112), 100000)]
    rnd.shuffle(shuffled)

    grid = [f"r{r}n{n}" for r in range(1, 101) for n in range(1, 501)]
    rnd.shuffle(grid)

    cells = [(r, n) for r in range(1, 106) for n in range(1, 121)]
    racks = [f"rack{r}-node{n}" for r, n in rnd.sample(cells, 10000)]
    rnd.shuffle(racks)

    set_a = [f"node{i}" for i in rnd.sample(range(1, 200001), 100000)]
    set_b = [f"node{i}" for i in rnd.sample(range(1, 200001), 100000)]
    cs_a, cs_b = CSNodeSet.fromlist(set_a), CSNodeSet.fromlist(set_b)
    our_a, our_b = NodeSet.fromlist(set_a), NodeSet.fromlist(set_b)

    big = "node[1-1000000]"
    rows = [
        (
            "fold 100k shuffled names, 10% holes",
            5.0,
            lambda: str(CSNodeSet.fromlist(shuffled)),
            lambda: str(NodeSet.fromlist(shuffled)),
        ),
        (
            "expand + count node[1-1000000]",
            5.0,
            lambda: len(list(CSNodeSet(big))),
            lambda: len(list(NodeSet(big))),
        ),
        (
            "parse + len node[1-1000000]",
            5.0,
            lambda: len(CSNodeSet(big)),
            lambda: len(NodeSet(big)),
        ),
        (
            "fold back 50k names of r[1-100]n[1-500]",
            5.0,
            lambda: str(CSNodeSet.fromlist(grid)),
            lambda: str(NodeSet.fromlist(grid)),
        ),
        (
            "fold 10k rack<R>-node<N>, random 2-D holes",
            5.0,
            lambda: str(CSNodeSet.fromlist(racks)),
            lambda: str(NodeSet.fromlist(racks)),
        ),
    ]
    for label, name in (
        ("union", "union"),
        ("intersection", "intersection"),
        ("difference", "difference"),
        ("symmetric diff", "symmetric_difference"),
    ):
        rows.append(
            (
                f"{label} of two 100k sets (+len)",
                1.0,
                (lambda n=name: len(getattr(cs_a, n)(cs_b))),
                (lambda n=name: len(getattr(our_a, n)(our_b))),
            )
        )
    return rows


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rows = []
    failed = 0
    for label, target, theirs, ours in cases(random.Random(args.seed)):
        cs_time, cs_result = best_time(theirs, args.repeat)
        our_time, our_result = best_time(ours, args.repeat)
        if cs_time < 0.05:  # millisecond cases are noisy: take more samples of both
            cs_time = min(cs_time, best_time(theirs, 4 * args.repeat)[0])
            our_time = min(our_time, best_time(ours, 4 * args.repeat)[0])
        ratio = cs_time / our_time if our_time > 0 else float("inf")
        verdict = "PASS" if ratio >= target else "FAIL"
        if cs_result != our_result:
            verdict = "MISMATCH"
        failed += verdict != "PASS"
        rows.append(
            (label, f"{cs_time:.4f}", f"{our_time:.4f}", f"{ratio:.1f}x", f">={target:g}x", verdict)
        )
    header = ("operation", "ClusterShell s", "ours s", "speedup", "target", "result")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join("{:<" + str(w) + "}" for w in widths)
    print(f"python {sys.version.split()[0]}, best of {args.repeat}")
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
