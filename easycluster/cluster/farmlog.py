"""The job farm's files: the joblog, per-job output files and the active-nodes file.

Joblog (``--joblog FILE``): one tab-separated line per attempt, appended and flushed as
the attempt ends, after a header line::

    seq  host  start  duration  exit  class  command

``seq`` is the job's number (1-based, in the order the jobs were given); ``start`` is
the attempt's start in seconds since the epoch (3 decimals), ``duration`` its length in
seconds; ``exit`` the job's exit code, or ``-`` when there was none (lost, stuck);
``class`` is ``done``, ``failed``, ``lost``, ``stuck`` or ``killed`` (abandoned while
running: ``--halt now``, Ctrl-C, SIGTERM; ``exit`` is ``-``); ``command`` the job's command
with tabs, newlines and backslashes escaped (``\\t``, ``\\n``, ``\\\\``).

``read_done(path, jobs)`` gives the jobs a joblog records as done, and refuses a joblog
written for another job list (same seq, other command), so ``--resume`` never skips a
job it did not run.

Files that others read while the farm runs are replaced whole (``write_atomic``: a
temporary file in the same directory, then ``os.replace``), so a reader never sees half
of one.
"""

from __future__ import annotations

import os
import tempfile
from typing import IO, Dict, Iterator, List, Optional, Set, Tuple

HEADER = "seq\thost\tstart\tduration\texit\tclass\tcommand"
CLASSES = ("done", "failed", "lost", "stuck", "killed")


def escape(text: str) -> str:
    """``text`` on one joblog field: backslash, tab and newline escaped."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def unescape(text: str) -> str:
    """The inverse of ``escape``."""
    out: List[str] = []
    it = iter(text)
    for ch in it:
        if ch == "\\":
            nxt = next(it, "")
            out.append({"t": "\t", "n": "\n", "\\": "\\"}.get(nxt, "\\" + nxt))
        else:
            out.append(ch)
    return "".join(out)


class JobLog:
    """An open joblog: ``record`` writes one attempt's line and flushes it, so a master
    killed at any moment leaves whole lines for every attempt that ended before.
    Appending drops a last line cut short first, so the next line starts a line."""

    def __init__(self, path: str, append: bool) -> None:
        self.path = path
        if append:
            drop_cut_line(path)
        fresh = not append or not os.path.exists(path) or os.path.getsize(path) == 0
        self.file: IO[str] = open(path, "a" if append else "w", encoding="utf-8")
        if fresh:
            self.file.write(HEADER + "\n")
            self.file.flush()

    def record(
        self,
        seq: int,
        host: str,
        start: float,
        duration: float,
        code: Optional[int],
        klass: str,
        command: str,
    ) -> None:
        rc = "-" if code is None else str(code)
        self.file.write(
            f"{seq}\t{escape(host)}\t{start:.3f}\t{duration:.3f}\t{rc}\t{klass}\t"
            f"{escape(command)}\n"
        )
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def drop_cut_line(path: str) -> None:
    """Truncate ``path`` after its last newline: a last line without one was cut short
    (the master killed mid-write) and is no record; appended to, it would make the
    next line garbage that ``--resume`` refuses. A missing file is left alone."""
    try:
        f = open(path, "r+b")
    except FileNotFoundError:
        return
    with f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:  # back from the end, a block at a time, to the last newline
            step = min(pos, 65536)
            f.seek(pos - step)
            block = f.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                pos = pos - step + cut + 1
                break
            pos -= step
        if pos != end:
            f.truncate(pos)


class JobLogError(ValueError):
    """A joblog that cannot be used for ``--resume``: the message says why."""


def read_done_hosts(path: str, command: str) -> Set[str]:
    """The hosts a joblog of ``-E command`` records as done (``-E`` runs one copy per
    host, so a copy is done where it ran, whatever its number was); JobLogError for a
    done line of another command or a line that is no joblog line."""
    hosts: Set[str] = set()
    for number, fields in _records(path):
        if fields[5] != "done":
            continue
        if unescape(fields[6]) != command:
            raise JobLogError(
                f"{path}:{number}: {unescape(fields[6])!r} was run there, not -E "
                f"{command!r}: this joblog belongs to another run (use a new --joblog)"
            )
        hosts.add(unescape(fields[1]))
    return hosts


def _records(path: str) -> Iterator[Tuple[int, List[str]]]:
    """``(line number, fields)`` of each whole joblog line (none for a missing file);
    a last line cut short is skipped, a malformed one raises JobLogError."""
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        return
    with f:
        lines = f.read().split("\n")
    # the text after the last newline is a line never finished: not a record
    for number, line in enumerate(lines[:-1], 1):
        if not line or line == HEADER:
            continue
        fields = line.split("\t")
        if len(fields) != 7 or not fields[0].isdigit() or fields[5] not in CLASSES:
            raise JobLogError(
                f"{path}:{number}: not a joblog line ({line[:60]!r}); give --joblog a "
                "file written by easycluster farm, or a new file"
            )
        yield number, fields


def read_done(path: str, commands: Dict[int, str]) -> Set[int]:
    """The seqs a joblog records as done. ``commands`` maps each seq to its command: a
    done line whose command differs means the joblog belongs to another job list, and
    raises ``JobLogError`` (resuming from it would skip jobs never run). A missing file
    records nothing. A last line cut short (the master killed mid-write) is ignored."""
    done: Set[int] = set()
    for number, fields in _records(path):
        if fields[5] != "done":
            continue
        seq, command = int(fields[0]), unescape(fields[6])
        if commands.get(seq) != command:
            raise JobLogError(
                f"{path}:{number}: job {seq} was {command!r} there, but is "
                f"{commands.get(seq)!r} now: this joblog belongs to another job list "
                "(use the same jobs to resume, or a new --joblog without --resume)"
            )
        done.add(seq)
    return done


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole: readers see the old file or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
