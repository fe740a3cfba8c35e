"""``shell --copy`` and ``--rcopy`` over rpc against ssh, same run: a tree and a big file.

    .venv/bin/python bench/bench_copy.py [--runs N] [--files F] [--mib M] [--nodes K]
        [--only tree|big]        (defaults: 2 runs, 5,000 files, 150 MiB, 4 nodes)

Starts K throwaway OpenSSH servers on loopback ports (``tests/sshd.py``: fresh keys,
each with a remote ``HOME`` of its own, so each "node" writes its own copy) and writes
one ssh config in which the aliases ``n1``..``nK`` reach them. Sources: a tree of F
small files (a few hundred random bytes each, in 10 subdirectories, some nested) and
one file of M MiB of random bytes. Everything (sources, the nodes' homes, the local
destination) is on ``/dev/shm`` by default (``--dir``): on this machine's ext4 a file's
creation cost 0.3-0.8 ms of kernel time, varying run to run (``perf``: ext4's
``recently_deleted`` scan of the inode table, after other jobs' churn), which drowned
the copy's own cost (``tar -x`` of the tree: 1.6-4.4 s there, 0.06 s on tmpfs). Each
run is a fresh ``easycluster shell`` process (cold: its connections and, for rpc, its
servers are made in the time), per row:

* push: ``shell -R B -o '-F CONFIG' -w n[1-K] --copy SRC --dest '~/push/'`` (the
  node's ``~/push`` is emptied before each run, outside the time);
* rcopy: ``shell -R B ... --rcopy '~/src/NAME' --dest LOCAL`` (every node's
  ``~/src`` holds the sources; ``LOCAL`` is emptied before each run).

B is ``ssh`` (a ``sh`` receiver or sender per node, ``tar`` on both ends) and ``rpc``
(our server on each node, bootstrapped over the same ssh). Every copy is checked after
its run (file count and a hash of the bytes of every file). Rows take turns round by
round (after the machine is mostly idle: ``bench_shell.wait_quiet``). The table gives
each row's seconds per run (all of them, so the noise shows), the median, and rpc's
median over ssh's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

BACKENDS = ("ssh", "rpc")


def make_tree(root: str, files: int) -> None:
    """``files`` files of 100-600 random bytes in 10 subdirectories (two nested)."""
    rng = random.Random(1)
    dirs = [os.path.join(root, f"d{i}") for i in range(8)]
    dirs += [os.path.join(root, "d0", "deep"), os.path.join(root, "d0", "deep", "er")]
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    for i in range(files):
        with open(os.path.join(dirs[i % len(dirs)], f"f{i}.txt"), "wb") as f:
            f.write(rng.randbytes(rng.randint(100, 600)))


def digest(path: str) -> Tuple[int, str]:
    """(number of files, a hash over their relative names and bytes) of a file or tree."""
    h = hashlib.sha256()
    count = 0
    if os.path.isfile(path):
        walk = [("", [], [path])]
    else:
        walk = sorted((r, [], sorted(f)) for r, _, f in os.walk(path))  # type: ignore[misc]
    for root, _, names in walk:
        for name in names:
            full = os.path.join(root, name)
            h.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            count += 1
    return count, h.hexdigest()


def empty(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def run_once(
    backend: str, op: str, what: str, config: str, nodes: str, local: str
) -> Tuple[float, str]:
    """One cold ``easycluster shell`` copy: (seconds, the problem or "")."""
    words = [sys.executable, "-m", "easycluster", "shell", "-R", backend, "-o", f"-F {config}"]
    words += ["-w", nodes, "-q", "--no-progress", "-f", "64"]
    if op == "push":
        words += ["--copy", what, "--dest", "~/push/"]
    else:
        words += ["--rcopy", f"~/src/{os.path.basename(what)}", "--dest", local]
    env = dict(os.environ, PYTHONPATH=ROOT)
    start = time.perf_counter()
    out = subprocess.run(words, capture_output=True, env=env, cwd=ROOT, timeout=600)
    wall = time.perf_counter() - start
    if out.returncode:
        return wall, f"exit {out.returncode}: {out.stderr.decode()[-500:]}"
    return wall, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--mib", type=int, default=150)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--only", choices=("tree", "big"))
    parser.add_argument(
        "--dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the nodes' homes and the sources go (default: /dev/shm)",
    )
    args = parser.parse_args()

    from bench_shell import wait_quiet
    from sshd import SshServer, sshd_missing

    why = sshd_missing()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    servers: List[SshServer] = []
    with tempfile.TemporaryDirectory(prefix="bench-copy-", dir=args.dir) as tmp:
        try:
            config = os.path.join(tmp, "ssh_config")
            lines = []
            for i in range(1, args.nodes + 1):
                server = SshServer(os.path.join(tmp, f"sshd{i}"), nalias=1)
                servers.append(server.start())
                lines += [
                    f"Host n{i}",
                    "    HostName 127.0.0.1",
                    f"    Port {server.port}",
                    f"    User {server.user}",
                    f"    IdentityFile {server.identity}",
                    f"    UserKnownHostsFile {server.known_hosts}",
                    "    IdentitiesOnly yes",
                    "    BatchMode yes",
                    "    StrictHostKeyChecking yes",
                    "    CheckHostIP no",
                    "    LogLevel ERROR",
                ]
            with open(config, "w") as f:
                f.write("\n".join(lines) + "\n")
            sources: Dict[str, str] = {}
            if args.only in (None, "tree"):
                sources["tree"] = os.path.join(tmp, "tree")
                make_tree(sources["tree"], args.files)
            if args.only in (None, "big"):
                sources["big"] = os.path.join(tmp, "big.bin")
                with open(sources["big"], "wb") as f:
                    for _ in range(args.mib):
                        f.write(os.urandom(1 << 20))
            want = {k: digest(p) for k, p in sources.items()}
            for server in servers:  # (the nodes' copies of the sources, for rcopy)
                src = os.path.join(server.home, "src")
                os.makedirs(src, exist_ok=True)
                for path in sources.values():
                    target = os.path.join(src, os.path.basename(path))
                    if os.path.isdir(path):
                        shutil.copytree(path, target)
                    else:
                        shutil.copyfile(path, target)
            local = os.path.join(tmp, "local")
            nodes = f"n[1-{args.nodes}]"
            rows = [(k, op, b) for k in sources for op in ("push", "rcopy") for b in BACKENDS]
            walls: Dict[Tuple[str, str, str], List[float]] = {row: [] for row in rows}
            for r in range(args.runs):
                for row in rows:
                    what, op, backend = row
                    for server in servers:
                        empty(os.path.join(server.home, "push"))
                    empty(local)
                    wait_quiet()
                    wall, problem = run_once(backend, op, sources[what], config, nodes, local)
                    name = os.path.basename(sources[what])
                    if not problem:
                        if op == "push":
                            got = [os.path.join(s.home, "push", name) for s in servers]
                        else:
                            got = [os.path.join(local, f"{name}.n{i}") for i in
                                   range(1, args.nodes + 1)]  # fmt: skip
                        for path in got:
                            if not os.path.lexists(path) or digest(path) != want[what]:
                                problem = f"{path}: missing or not the source"
                                break
                    if problem:
                        print(f"{what} {op} {backend}: {problem}", file=sys.stderr)
                        return 1
                    walls[row].append(wall)
                    print(f"round {r + 1} {what} {op} {backend}: {wall:.2f} s", file=sys.stderr)
        finally:
            for server in servers:
                server.stop()
    print(
        f"copy to/from {args.nodes} nodes (loopback sshd each), cold `easycluster shell`, "
        f"{args.runs} runs interleaved; tree: {args.files} files of 100-600 B, "
        f"big: {args.mib} MiB"
    )
    print("| source | op | ssh s (runs) | rpc s (runs) | ssh median | rpc median | rpc/ssh |")
    print("|---|---|---|---|---|---|---|")
    for what in sources:
        for op in ("push", "rcopy"):
            ssh, rpc = walls[(what, op, "ssh")], walls[(what, op, "rpc")]
            each = [" ".join(f"{w:.2f}" for w in ws) for ws in (ssh, rpc)]
            ms, mr = statistics.median(ssh), statistics.median(rpc)
            cells = [what, op, *each, f"{ms:.2f}", f"{mr:.2f}", f"{mr / ms:.2f}x"]
            print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
