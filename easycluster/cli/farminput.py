"""``easycluster farm``'s input and output files, checked before anything runs.

Every mistake found here is a ``UsageError`` (exit 2) naming the file (and line) or
the option, and saying what to fix, so a run never starts that would stop at its
first write: host and job files that do not read as UTF-8 text, node sets that do not
parse, groups with no node (a typo in ``-g``/``@group`` is not silently dropped, even
next to real hosts), a joblog, ``--outdir`` or ``-A`` file that cannot be written.

``open_outputs`` opens ``-o``/``-e``; when both name one file (clstr users write
``-o LOG -e LOG``) it is opened once and shared, so both streams land in it whole.
"""

from __future__ import annotations

import os
import tempfile
from typing import IO, List, Optional, Tuple

from ..cluster.farmlog import JobLog, write_atomic
from ..errors import NodeSetParseError
from .exitcodes import UsageError
from .shellnodes import check_groups, group_ref


def numbered_lines(path: str, what: str, stdin: IO[str]) -> List[Tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines of ``path`` (``-``: stdin) that do
    not start with ``#``, stripped. UsageError if it cannot be read or is not UTF-8."""
    try:
        if path == "-":
            text = stdin.read()
        else:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {what} file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        line = text_line(e.object, e.start)
        raise UsageError(
            f"{what} file {path}:{line}: not UTF-8 text (byte {e.start}): save it as UTF-8"
        ) from None
    lines = ((n, line.strip()) for n, line in enumerate(text.splitlines(), 1))
    return [(n, line) for n, line in lines if line and not line.startswith("#")]


def text_line(data: bytes, offset: int) -> int:
    """The 1-based line number of byte ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1


def hosts_in(text: str, where: str) -> List[str]:
    """The host slots of node-set ``text`` (``node_list``: duplicates kept), found at
    ``where`` (``-w``, ``FILE:LINE``). UsageError if it does not parse or names a group
    with no node in it."""
    from ..cluster.task import node_list  # the engine loads only once a run starts

    try:
        check_groups(text, where)
        return node_list(text)
    except NodeSetParseError as e:
        # (the parse error says what: a bracket missing, no group source configured)
        raise UsageError(f"{where}: cannot read {text!r} as a node set ({e})") from None


def group_hosts(group: str, source: Optional[str] = None) -> List[str]:
    """``-g GROUP`` (as ``easycluster shell`` reads it: ``a,b`` is two groups): its
    nodes. UsageError for a group with none (unknown, or empty)."""
    text = group_ref(group, source)
    return hosts_in(text, f"-g {group}")


def open_joblog(path: str, append: bool) -> JobLog:
    """The joblog, opened; UsageError naming it if it cannot be."""
    try:
        return JobLog(path, append=append)
    except OSError as e:
        raise UsageError(
            f"--joblog {path}: cannot write it ({e.strerror or e}): give a file in an "
            "existing directory you can write"
        ) from None


def prepare_outdir(path: str) -> None:
    """Make ``--outdir`` if needed and prove it writable; UsageError naming it if not."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except FileExistsError:
        raise UsageError(f"--outdir {path}: exists and is not a directory") from None
    except OSError as e:
        raise UsageError(
            f"--outdir {path}: cannot write files in it ({e.strerror or e}): give a "
            "directory you can write"
        ) from None


def prepare_active(path: str) -> None:
    """Start ``-A`` empty, proving it writable (as it will be written: a temporary file
    beside it, renamed over it); UsageError naming it if not."""
    try:
        write_atomic(path, b"")
    except OSError as e:
        raise UsageError(
            f"-A {path}: cannot write it ({e.strerror or e}): give a file in an existing "
            "directory you can write"
        ) from None


def open_outputs(
    stdout: Optional[str], stderr: Optional[str], default: Tuple[IO[bytes], IO[bytes]]
) -> Tuple[IO[bytes], IO[bytes], List[IO[bytes]]]:
    """``-o``/``-e``: the two streams jobs' output goes to (``default`` for a path not
    given) and the files opened (for the caller to close). Both naming one file: one
    handle for both, since two would each write from their own offset over the other's
    lines. UsageError naming a file that cannot be written."""
    opened: List[IO[bytes]] = []
    out = _open(stdout, opened) if stdout is not None else default[0]
    if stderr is not None and stdout is not None and _same_file(stdout, stderr):
        return out, out, opened
    err = _open(stderr, opened) if stderr is not None else default[1]
    return out, err, opened


def _open(path: str, opened: List[IO[bytes]]) -> IO[bytes]:
    try:
        f = open(path, "wb")
    except OSError as e:
        for g in opened:
            g.close()
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    opened.append(f)
    return f


def _same_file(a: str, b: str) -> bool:
    """``a`` and ``b`` name one file (``a`` exists: it was just opened)."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # (``b`` does not exist yet: another file)
        return False
