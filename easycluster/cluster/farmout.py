"""What ``easycluster farm`` writes: job output, joblog, status line, active-nodes file
and the final summary (``FarmWriter``, a ``FarmObserver``; ``summary_lines``,
``exit_code``).

Job output goes either to per-job files (``outdir``: ``SEQ.out`` and ``SEQ.err``, each
replaced whole when an attempt ends, so the last attempt's output is what stays) or to
two streams, every line prefixed with the job's number and host: ``SEQ HOST: line``.

The status line (done/total, running/slots, failed, hosts retired, rate, ETA) is drawn
on stderr only when asked (the command asks when stderr is a terminal); it is cleared
before anything else is written to stderr. The active-nodes file (clstr's ``-A``)
holds one ``HOST: SEQ COMMAND`` line per running job, is replaced whole when it changes
(at most every tick) and is empty at the end.

Exit codes (``exit_code``): 0 every job done; 250 some job failed by its own non-zero
exit; 251 some job stuck (past ``--timeout``, retries used up); 252 some job lost (its
hosts died under it, retries used up, or poisonous); 254 some job not run (no hosts
left, halted); 130 interrupted. Several: the most severe decides, in the order
interrupted, not run, lost, stuck, failed.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import IO, Dict, Iterator, List, Optional, Set, Tuple

from ..errors import OutputFileError
from ..nodeset.nodeset import NodeSet
from .farm import AttemptEnd, Farm, FarmObserver, Job, seq_of
from .farmlog import JobLog, write_atomic
from .scheduler import Report

OK = 0
JOB_FAILED = 250
JOB_STUCK = 251
JOB_LOST = 252
NOT_RUN = 254
INTERRUPTED = 130
SEVERITY = (INTERRUPTED, NOT_RUN, JOB_LOST, JOB_STUCK, JOB_FAILED)  # first wins
KIND_CODES = {"failed": JOB_FAILED, "stuck": JOB_STUCK, "lost": JOB_LOST, "poisonous": JOB_LOST}


def _prefixed(seq: int, host: str, data: bytes) -> bytes:
    if not data:
        return b""
    head = f"{seq} {host}: ".encode()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join(head + line + b"\n" for line in lines)


def status_text(c: Dict[str, float]) -> str:
    """The status line's text from ``Farm.counts()``."""
    done, total, elapsed = c["done"], c["total"], c["elapsed"]
    rate = done / elapsed if elapsed > 0 else 0.0
    left = total - done - c["failed"] - c["not run"]
    eta = f"{left / rate:.0f}s" if rate > 0 else "?"
    return (
        f"{done:.0f}/{total:.0f} done, {c['running']:.0f}/{c['slots']:.0f} running, "
        f"{c['failed']:.0f} failed, {c['retired']:.0f} hosts retired, "
        f"{rate:.1f}/s, ETA {eta}"
    )


class FarmWriter(FarmObserver):
    """Writes what the farm does (module doc). ``stdout``/``stderr``: where prefixed job
    output goes (None: discarded) unless ``outdir``; ``err`` is the command's own
    stderr (status line, verbose lines)."""

    def __init__(
        self,
        prog: str,
        err: IO[str],
        stdout: Optional[IO[bytes]] = None,
        stderr: Optional[IO[bytes]] = None,
        outdir: Optional[str] = None,
        joblog: Optional[JobLog] = None,
        active_file: Optional[str] = None,
        status: bool = False,
        verbose: int = 0,
    ) -> None:
        self.prog = prog
        self.err = err
        self.stdout = stdout
        self.stderr = stderr
        self.outdir = outdir
        self.joblog = joblog
        self.active_file = active_file
        self.status = status
        self.verbose = verbose
        self._shown = False
        self._active: Optional[bytes] = None

    def attempt_ended(self, end: AttemptEnd) -> None:
        """Log the attempt and write its output. OutputFileError if the joblog or an
        output file cannot be written: the run must stop, since what it would go on
        doing could not be recorded."""
        seq, host = end.job.seq, end.host
        if self.joblog is not None:
            with _writing(self.joblog.path):
                self.joblog.record(
                    seq, host, end.start, end.duration, end.code, end.klass, end.job.command
                )
        if end.klass in ("done", "failed", "stuck"):  # (stuck: where it hung)
            if self.outdir is not None:
                for name, data in ((f"{seq}.out", end.stdout), (f"{seq}.err", end.stderr)):
                    path = os.path.join(self.outdir, name)
                    with _writing(path):
                        write_atomic(path, data)
            else:
                self._stream(self.stdout, seq, host, end.stdout)
                if end.stderr:
                    self._clear()
                self._stream(self.stderr, seq, host, end.stderr)
        if self.verbose >= 2 or (self.verbose and end.klass != "done"):
            code = "" if end.code is None else f" (exit {end.code})"
            self.say(f"job {seq} on {host}: {end.klass}{code} in {end.duration:.3f} s")

    def _stream(self, f: Optional[IO[bytes]], seq: int, host: str, data: bytes) -> None:
        """``data`` to ``f`` as prefixed lines, flushed (so a file shared by -o and -e
        gets each attempt's lines whole, in order)."""
        if f is None or not data:
            return
        with _writing(getattr(f, "name", "output")):
            f.write(_prefixed(seq, host, data))
            f.flush()

    def host_retired(self, host: str, reason: str, detail: str) -> None:
        if self.verbose:
            self.say(f"host {host} retired ({reason}): {detail}")

    def say(self, line: str) -> None:
        self._clear()
        print(f"{self.prog}: {line}", file=self.err, flush=True)

    def _clear(self) -> None:
        if self._shown:
            self.err.write("\r\x1b[2K")
            self.err.flush()
            self._shown = False

    def tick(self, farm: Farm) -> None:
        if self.status:
            self.err.write(f"\r\x1b[2K{self.prog}: {status_text(farm.counts())}")
            self.err.flush()
            self._shown = True
        if self.active_file is not None:
            self.write_active(farm.active())

    def write_active(self, active: List[Tuple[str, Job]]) -> None:
        """Replace the active-nodes file if its text changed. A file that cannot be
        written is warned about once and then left alone: it is a view for people, and
        losing it must not cost the run (the jobs, the joblog, the summary)."""
        if self.active_file is None:
            return  # (no --active-nodes file asked for, or it could not be written)
        text = "".join(f"{host}: {job.seq} {job.command}\n" for host, job in active).encode()
        if text != self._active:
            try:
                write_atomic(self.active_file, text)
            except OSError as e:
                self.say(
                    f"warning: cannot write the active-nodes file {self.active_file} "
                    f"({e.strerror or e}): no more updates to it; the run goes on"
                )
                self.active_file = None
                return
            self._active = text

    def finish(self) -> None:
        """End of run: clear the status line, empty the active-nodes file."""
        self._clear()
        if self.active_file is not None:
            self.write_active([])


@contextmanager
def _writing(path: str) -> Iterator[None]:
    """An OSError inside (but a closed pipe, which the command treats as its reader
    leaving) as OutputFileError naming ``path``."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputFileError(f"cannot write {path}: {e.strerror or e}") from e


class Outcome:
    """Every job's end, for the summary: built from the scheduler's report plus what
    the command knows (jobs skipped by ``--resume``, jobs abandoned while running)."""

    def __init__(
        self,
        jobs: Dict[int, Job],
        report: Report,
        skipped: Set[int],
        unfinished_reason: str,
        killed: Optional[Set[int]] = None,
    ) -> None:
        self.jobs = jobs
        self.total = len(jobs)  # every job given, those skipped by --resume included
        self.skipped = skipped
        self.done = len(report.done) + len(skipped)
        self.failed = {seq_of(k): v for k, v in report.failed.items()}
        self.not_run = {seq_of(k): v for k, v in report.not_run.items()}
        self.killed = set(killed or ())  # abandoned while running: they did run
        for job in report.unfinished:
            self.not_run[seq_of(job)] = unfinished_reason
        self.attempts = {seq_of(k): v for k, v in (report.attempts or {}).items()}
        self.retired = report.retired

    def exit_code(self, interrupted: bool = False) -> int:
        found = {INTERRUPTED} if interrupted else set()
        if self.not_run:
            found.add(NOT_RUN)
        found.update(KIND_CODES.get(kind, JOB_FAILED) for kind, _ in self.failed.values())
        for code in SEVERITY:
            if code in found:
                return code
        return OK

    def _failed_label(self, seq: int, kind: str, code: Optional[int]) -> str:
        """``failed (KIND[, exit N])``; for a job lost each of the N times it ran (it
        takes its hosts down) also ``ran N times, lost each time``."""
        runs, lost = self.attempts.get(seq, (1, 0))
        text = kind + ("" if code is None else f", exit {code}")
        if runs > 1 and lost == runs:
            text += f", ran {runs} times, lost each time"
        return f"failed ({text})"

    def lines(self, prog: str, retired_detail: Dict[str, Tuple[str, str]], limit: int) -> List[str]:
        """The summary: a count line that adds up, then each job not done (at most
        ``limit`` per class; 0: all), then the retired hosts: a line per reason and
        detail (``retired_groups``), its hosts folded as a node set."""
        earlier = f" ({len(self.skipped)} in an earlier run)" if self.skipped else ""
        killed = len(self.killed & set(self.not_run))
        among = f" ({killed} killed while running)" if killed else ""
        out = [
            f"{prog}: {self.total} jobs: {self.done} done{earlier}, "
            f"{len(self.failed)} failed, {len(self.not_run)} not run{among}"
        ]
        groups: Dict[str, List[int]] = {}
        for seq, (kind, code) in sorted(self.failed.items()):
            groups.setdefault(self._failed_label(seq, kind, code), []).append(seq)
        for seq, reason in sorted(self.not_run.items()):
            if seq in self.killed:  # it ran, and was killed: not the same as never started
                label = f"killed while running ({reason.replace(' while running', '')})"
            else:
                label = f"not run ({reason})"
            groups.setdefault(label, []).append(seq)
        for label, seqs in groups.items():
            shown = seqs if not limit else seqs[:limit]
            for seq in shown:
                job = self.jobs[seq]
                where = "" if job.host is None else f" on {job.host}"  # (-E: its host)
                out.append(f"{prog}: {label}: job {seq}{where}: {job.command}")
            if len(shown) < len(seqs):
                out.append(f"{prog}: {label}: ... and {len(seqs) - len(shown)} more (-v: all)")
        for (reason, detail), hosts in retired_groups(self.retired, retired_detail):
            if len(hosts) == 1:  # (its own name reads better than %h)
                detail = detail.replace("%h", hosts[0])
            why = f": {detail}" if detail else ""
            out.append(f"{prog}: hosts retired ({reason}): {NodeSet.fromlist(hosts)}{why}")
        return out


def retired_groups(
    retired: Dict[str, str], detail: Dict[str, Tuple[str, str]]
) -> List[Tuple[Tuple[str, str], List[str]]]:
    """The retired hosts grouped by ``(reason, why)``, sorted: ``why`` is the last line
    of the host's detail (``detail[host][1]``: the error that retired it) with the
    host's own name written ``%h``, so that hosts that failed alike (two names that do
    not resolve) share a line and hosts that failed differently (a changed host key,
    a refused key, a name that does not resolve) do not. An error that begins with the
    host's name (``n2: no sign of life ...``) loses that prefix: the line names the
    hosts first (it read ``n2: n2: ...``, and ``n[1-2]: %h: ...`` for two)."""
    groups: Dict[Tuple[str, str], List[str]] = {}
    for host, reason in retired.items():
        text = detail.get(host, ("", ""))[1].strip().splitlines()
        why = text[-1] if text else ""
        if why.startswith(host + ": "):
            why = why[len(host) + 2 :]
        why = why.replace(host, "%h")
        groups.setdefault((reason, why), []).append(host)
    return sorted(groups.items())
