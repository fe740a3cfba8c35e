"""Run one of today's benches against the code of an earlier commit, then against ours.

    .venv/bin/python bench/against.py COMMIT BENCH.py [ARGS...]
    e.g. .venv/bin/python bench/against.py 56aad79 bench_many.py --big 1000

A target written as a figure measured on another machine ("30 us per server on 16 cores,
make it 20") can be judged here as a ratio: the same bench, the same run, the code the
target was written against beside the code of now. The earlier code runs from a
detached worktree (made in a temporary directory, removed afterwards) with an interpreter
of its own whose path holds this venv's dependencies but not its editable install of the
package: that install would otherwise win over ``PYTHONPATH``, for the bench and for every
server the bench starts. The bench files are today's, copied beside the old package (they
put their own parent directory first on ``sys.path``), so both runs measure the same way.
Both tables are printed, the earlier one first. Exit code: 0 if both runs exited 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def old_interpreter(workdir: str, tree: str) -> str:
    """A venv in ``workdir`` that sees the package in ``tree`` and this venv's other
    packages, but not this venv's editable install of the package."""
    venv = os.path.join(workdir, "venv")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", venv], check=True)
    py = os.path.join(venv, "bin", "python")
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Plain directory lines: the .pth files in there (the editable finder) are not run.
    # The tree is on the path by this file, not only by PYTHONPATH: some benches clear
    # PYTHONPATH for the commands they time.
    with open(os.path.join(site, "paths.pth"), "w") as f:
        f.write(tree + "\n" + sysconfig.get_paths()["purelib"] + "\n")
    return py


def run(py: str, bench: str, args: List[str], pythonpath: str) -> int:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # (servers' imports count in start-up rows)
    return subprocess.run([py, bench, *args], env=env, cwd=os.path.dirname(bench)).returncode


def main(argv: List[str]) -> int:
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    commit, name, args = argv[0], os.path.basename(argv[1]), argv[2:]
    if not os.path.exists(os.path.join(HERE, name)):
        print(f"against: no bench {name!r} in {HERE}", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="easycluster-against-")
    tree = os.path.join(workdir, "tree")
    try:
        got = subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-q", tree, commit])
        if got.returncode:
            print(f"against: cannot check out {commit!r}", file=sys.stderr)
            return 2
        shutil.copytree(HERE, os.path.join(tree, "bench-now"), dirs_exist_ok=True)
        py = old_interpreter(workdir, tree)
        print(f"== {commit} (bench files of now)", flush=True)
        rc_old = run(py, os.path.join(tree, "bench-now", name), args, tree)
        print("== now", flush=True)
        rc_now = run(sys.executable, os.path.join(HERE, name), args, ROOT)
        return 0 if rc_old == rc_now == 0 else 1
    finally:
        if os.path.isdir(tree):
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], check=False)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
