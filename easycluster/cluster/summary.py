"""Outcomes per key, the final summary for stderr, and the exit code a script can trust.

Each key (a slot: ``slots``) ends in one ``Outcome``: ``ok``; ``failed`` (the command
ran and exited non-zero, with that code); ``timeout`` (the command timeout passed and
the command was killed); ``unreachable`` (no connection, refused, authentication
failed, or the connection died before the command finished); ``hostkey`` (ssh refused
the host key: unknown or changed); ``nostart`` (the command could not be started here:
a wrong ``ssh_path``, no more processes or descriptors; its reason is the node's error
line); ``interrupted`` (still running when the user pressed Ctrl-C); ``raised`` (a
Python call of ``Cluster.call`` raised: no exit code of its own). ``Summary`` lists
every key that did not succeed exactly once, grouped by class (``failed`` by exit code),
each group folded as a node set.

Exit codes of a run (``Summary.exit_code``); 0, 1, 2 and 130 mean what they mean for
every ``easycluster`` command (``cli/exitcodes.py``), the others are the run's own:

==== =========================================================================
code meaning
==== =========================================================================
0    every key ran its command and exited 0 (or there was no key)
1    easycluster itself failed (``exitcodes.FAILURE``; never from a node's result)
2    bad usage (``exitcodes.USAGE``)
130  interrupted: Ctrl-C before every key finished (``exitcodes.INTERRUPTED``)
250  some key's command exited non-zero (without ``-S``), or its call raised
251  some key's command timed out
252  some key was unreachable
253  some key's host key was refused (unknown or changed)
254  some key's command could not be started here
N    with ``-S`` (``maxrc=True``): the largest exit code of the failed keys,
     when failures are the worst that happened
==== =========================================================================

When several classes occur, the most severe one decides, in this order:
interrupted, nostart, hostkey, unreachable, timeout, raised, failed. A run that did not reach or did
not finish every node is incomplete, so its code says so even with ``-S``: a script
reading ``grep``'s 1 through ``-S`` must not take "unreachable" for "not found". A
failed key never gives 0 (clush without ``-S`` exits 0 when nodes fail: ClusterShell
issues #48 and #383).

Why 250-254: they must not be 0, 1, 2 or 130, and with ``-S`` a remote code shares the
exit status with them, so they sit where commands rarely exit: above the signal codes
(128 + N for the usual signals), apart from 126/127 (the shell's "cannot execute" and
"not found"), from 124 (``timeout(1)``) and from ssh's own 255.
"""

from __future__ import annotations

from enum import Enum
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

from .slots import fold_keys, natural_sorted

__all__ = [
    "Kind",
    "Outcome",
    "Group",
    "Summary",
    "EXIT_OK",
    "EXIT_INTERRUPTED",
    "EXIT_FAILED",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "EXIT_HOSTKEY",
    "EXIT_NOSTART",
    "RESERVED_CODES",
]

EXIT_OK = 0
EXIT_INTERRUPTED = 130
EXIT_FAILED = 250
EXIT_TIMEOUT = 251
EXIT_UNREACHABLE = 252
EXIT_HOSTKEY = 253
EXIT_NOSTART = 254
# Codes every easycluster command gives the same meaning (cli/exitcodes.py, which sits
# above this layer and cannot be imported here; a test checks the two agree).
RESERVED_CODES = {0: "success", 1: "failure", 2: "usage", 130: "interrupted"}


class Kind(Enum):
    """How a key's run ended, least severe first (``Summary``'s order)."""

    OK = "ok"
    FAILED = "failed"
    RAISED = "raised"  # (a Python call through ``Cluster.call``: it raised, no exit code)
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    HOSTKEY = "hostkey"
    NOSTART = "nostart"  # (a local cause: the fix is here, whatever the nodes do)
    INTERRUPTED = "interrupted"


_SEVERITY = {kind: rank for rank, kind in enumerate(Kind)}
_EXIT = {
    Kind.FAILED: EXIT_FAILED,
    Kind.RAISED: EXIT_FAILED,
    Kind.TIMEOUT: EXIT_TIMEOUT,
    Kind.UNREACHABLE: EXIT_UNREACHABLE,
    Kind.HOSTKEY: EXIT_HOSTKEY,
    Kind.NOSTART: EXIT_NOSTART,
    Kind.INTERRUPTED: EXIT_INTERRUPTED,
}
_TEXT = {
    Kind.RAISED: "raised an exception",
    Kind.TIMEOUT: "timed out",
    Kind.UNREACHABLE: "unreachable",
    Kind.HOSTKEY: "host key unknown or changed",
    Kind.NOSTART: "could not start here (the reason is on its error line)",
    Kind.INTERRUPTED: "interrupted before it finished",
}


class _OutcomeFields(NamedTuple):
    kind: Kind
    code: int = 0


class Outcome(_OutcomeFields):
    """One key's end. ``code`` is the exit code (1-255) for ``FAILED``, 0 otherwise;
    anything else raises ValueError. Build with the class methods. (A NamedTuple, not a
    dataclass: the display modules load without dataclasses and inspect.)"""

    __slots__ = ()

    def __new__(cls, kind: Kind, code: int = 0) -> Outcome:
        if kind is Kind.FAILED:
            if not 1 <= code <= 255:
                raise ValueError(f"a failed command's exit code is 1-255, not {code}")
        elif code != 0:
            raise ValueError(f"only a failed outcome has an exit code ({kind.value})")
        return super().__new__(cls, kind, code)

    @property
    def succeeded(self) -> bool:
        return self.kind is Kind.OK

    @classmethod
    def ok(cls) -> Outcome:
        return cls(Kind.OK)

    @classmethod
    def failed(cls, code: int) -> Outcome:
        """A non-zero exit; a negative code -N (subprocess's "killed by signal N")
        becomes 128 + N, as a shell reports it."""
        return cls(Kind.FAILED, 128 - code if code < 0 else code)

    @classmethod
    def raised(cls) -> Outcome:
        """A Python call that raised (``Cluster.call``): exit code 250, as ``failed``,
        but told apart from a command that exited 250."""
        return cls(Kind.RAISED)

    @classmethod
    def from_exit(cls, code: int) -> Outcome:
        """``ok`` for 0, else ``failed(code)``."""
        return cls.ok() if code == 0 else cls.failed(code)

    @classmethod
    def timeout(cls) -> Outcome:
        return cls(Kind.TIMEOUT)

    @classmethod
    def unreachable(cls) -> Outcome:
        return cls(Kind.UNREACHABLE)

    @classmethod
    def hostkey(cls) -> Outcome:
        return cls(Kind.HOSTKEY)

    @classmethod
    def nostart(cls) -> Outcome:
        return cls(Kind.NOSTART)

    @classmethod
    def interrupted(cls) -> Outcome:
        return cls(Kind.INTERRUPTED)

    @classmethod
    def of_slot(cls, status: str, rc: Optional[int]) -> Outcome:
        """A Task slot's end: its final state (``nodestate.py``'s names) and return code
        (``failed``, a command that could not start here, is ``nostart``; "aborted", or
        a state not final, is ``interrupted``)."""
        if status == "hup" and rc is not None:
            return cls.from_exit(rc)
        if status == "failed":
            return cls.nostart()
        if status == "timeout":
            return cls.timeout()
        if status == "unreachable":
            return cls.unreachable()
        if status == "hostkey":
            return cls.hostkey()
        return cls.interrupted()  # aborted, or still running when Ctrl-C came


class Group(NamedTuple):
    """Keys that ended the same way: ``kind`` and (for ``FAILED``) ``code``; ``keys``
    in natural order, ``nodes`` their folded text."""

    kind: Kind
    code: int
    keys: Tuple[str, ...]
    nodes: str

    def text(self) -> str:
        """``NODES (N nodes): what happened``."""
        what = f"exit code {self.code}" if self.kind is Kind.FAILED else _TEXT[self.kind]
        size = f" ({len(self.keys)} nodes)" if len(self.keys) > 1 else ""
        return f"{self.nodes}{size}: {what}"


class Summary:
    """The end of a run: which keys succeeded, the groups of those that did not, the
    lines to print and the exit code (module docstring)."""

    def __init__(self, outcomes: Mapping[str, Outcome]) -> None:
        self.total = len(outcomes)
        self.succeeded: List[str] = natural_sorted(k for k, o in outcomes.items() if o.succeeded)
        self.unsuccessful: List[str] = natural_sorted(
            k for k, o in outcomes.items() if not o.succeeded
        )
        by_class: Dict[Tuple[int, int], List[str]] = {}
        for key in self.unsuccessful:
            outcome = outcomes[key]
            by_class.setdefault((_SEVERITY[outcome.kind], outcome.code), []).append(key)
        kinds = list(Kind)
        self.groups: List[Group] = [
            Group(kinds[rank], code, tuple(keys), fold_keys(keys))
            for (rank, code), keys in sorted(by_class.items())
        ]

    @property
    def max_code(self) -> Optional[int]:
        """The largest exit code among failed keys, None if none failed."""
        codes = [g.code for g in self.groups if g.kind is Kind.FAILED]
        return max(codes) if codes else None

    def lines(self, prog: str = "") -> List[str]:
        """The summary for stderr, one line per group (failed ones by code, then
        timeout, unreachable, hostkey, nostart, interrupted), then a count; nothing when
        every key succeeded. Each line starts with ``prog: `` when ``prog`` is set."""
        if not self.groups:
            return []
        lead = f"{prog}: " if prog else ""
        out = [lead + group.text() for group in self.groups]
        out.append(f"{lead}{len(self.unsuccessful)} of {self.total} did not succeed")
        return out

    def exit_code(self, maxrc: bool = False) -> int:
        """The exit code of the run (the table in the module docstring); ``maxrc`` is
        ``-S``."""
        if not self.groups:
            return EXIT_OK
        worst = self.groups[-1]  # groups are sorted by severity
        if worst.kind is Kind.FAILED and maxrc:
            return self.max_code or EXIT_FAILED
        return _EXIT[worst.kind]
