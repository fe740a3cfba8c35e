"""``--outdir DIR`` / ``--errdir DIR``: one file per node with its stdout / stderr.

The habit of pssh and clush users: ``easycluster shell --outdir out -w n[1-64] dmesg``
leaves ``out/n1`` ... ``out/n64`` (``out/n2#2`` for a node's second listing). Each line
is written as it arrives, ended with a newline, into a hidden file beside the final
one (``.NODE.part``), and renamed to ``NODE`` when the node is done (ended, timed out,
or the run was interrupted): a file under a node's name is always complete, and output
beyond the Task's buffer limit is kept too. Every node whose command started gets its
file, empty if it printed nothing. The directory is made if missing; a file of an
earlier run under the same name is replaced.
"""

from __future__ import annotations

import os
from typing import IO, Dict, Iterable, Optional, Tuple

from ..cluster.copy import safe_part
from ..cluster.events import Piece
from .exitcodes import UsageError

SUFFIX = ".part"


class OutputFiles:
    """The per-node files of one run; ``write`` and ``finish`` run on the Task's thread."""

    def __init__(self, outdir: Optional[str], errdir: Optional[str]) -> None:
        self.dirs = {"stdout": outdir, "stderr": errdir}
        for d in (outdir, errdir):
            if d is not None:
                _make_dir(d)
        self._open: Dict[Tuple[str, str], IO[bytes]] = {}  # (node, sname) -> .part file

    def start(self, node: str) -> None:
        """``node``'s command started: open its files (so a silent node gets one)."""
        for sname, d in self.dirs.items():
            if d is not None and (node, sname) not in self._open:
                self._open[node, sname] = open(_part(d, node), "wb")

    def write(self, node: str, sname: str, line: bytes) -> None:
        """A line of ``node``'s ``sname`` (without its end of line), or a ``Piece`` of a
        long one (written without an end of line: the rest follows)."""
        f = self._open.get((node, sname))
        if f is None:
            if self.dirs.get(sname) is None:
                return  # (this stream is not kept)
            self.start(node)
            f = self._open[node, sname]
        f.write(line)
        if not isinstance(line, Piece):
            f.write(b"\n")

    def finish(self, nodes: Iterable[str]) -> None:
        """These nodes are done: their files take their final names."""
        for node in nodes:
            for sname, d in self.dirs.items():
                f = self._open.pop((node, sname), None)
                if f is not None and d is not None:
                    f.close()
                    os.replace(_part(d, node), os.path.join(d, _safe(node)))

    def close(self, complete: bool = True) -> None:
        """The run is over (or interrupted): every file still open takes its name; if
        not ``complete`` (writing failed, or the run broke), they are removed instead."""
        if complete:
            self.finish({node for node, _ in list(self._open)})
            return
        for (node, sname), f in list(self._open.items()):
            f.close()
            try:
                os.unlink(_part(self.dirs[sname] or "", node))
            except OSError:
                pass
        self._open.clear()


def same_dir(a: str, b: str) -> bool:
    """True if the paths name one directory (compared as written, or as found)."""
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _make_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot make the output directory {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write into the output directory {path}")


def _safe(node: str) -> str:
    """A file name for a node key (as ``--rcopy`` names its copies: ``/`` as ``_``);
    node names have no '/', but a host-file typo might."""
    return safe_part(node) if node not in (".", "..") else "_" + node


def _part(directory: str, node: str) -> str:
    return os.path.join(directory, "." + _safe(node) + SUFFIX)
