"""What a ``Cluster`` operation gives (``session.py``): per slot a value, or the
exception in its place (``NodeResults``), a command's ``CommandResult``, and the outcome
each slot ends in (``summary.py``'s classes): how a connect failure, a call and a
command are judged.
"""

from __future__ import annotations

import subprocess
from typing import Any, Dict, Iterator, Mapping

from ..errors import CallTimeout, ConnectionLost
from .summary import Outcome, Summary


class CommandResult:
    """What a command printed and how it ended on one node."""

    __slots__ = ("rc", "stdout", "stderr")

    def __init__(self, rc: int, stdout: bytes, stderr: bytes) -> None:
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"CommandResult(rc={self.rc}, stdout={self.stdout[:40]!r}...)"


class NodeResults(Mapping[str, Any]):
    """Per-slot results of one operation: ``results[key]`` (also ``data[key]``) is the
    value, or the exception that took its place; ``outcomes[key]`` says how it ended (a
    call that raised is ``raised``: exit code ``EXIT_FAILED``, 250)."""

    def __init__(self, values: Dict[str, Any], outcomes: Dict[str, Outcome]) -> None:
        self.data = values
        self.outcomes = outcomes

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def succeeded(self) -> Dict[str, Any]:
        """``{key: value}`` of the slots that succeeded."""
        return {k: v for k, v in self.data.items() if self.outcomes[k].succeeded}

    @property
    def failed(self) -> Dict[str, Any]:
        """``{key: exception or CommandResult}`` of the slots that did not succeed."""
        return {k: v for k, v in self.data.items() if not self.outcomes[k].succeeded}

    def summary(self) -> str:
        """One line per failure class with its folded slots, then a count; "" if all
        succeeded."""
        return "\n".join(Summary(self.outcomes).lines())

    def exit_code(self, maxrc: bool = False) -> int:
        """The exit code ``easycluster shell`` would give (``summary.py``)."""
        return Summary(self.outcomes).exit_code(maxrc)


def connect_outcome(exc: BaseException) -> Outcome:
    text = str(exc)
    if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION" in text:
        return Outcome.hostkey()
    return Outcome.unreachable()


def call_outcome(value: Any, raised: bool) -> Outcome:
    """A returned value (whatever it is: an exception object too) is a success; a
    raise is ``raised`` (exit code ``EXIT_FAILED``: a call has no exit status)."""
    if not raised:
        return Outcome.ok()
    if isinstance(value, CallTimeout):
        return Outcome.timeout()
    if isinstance(value, ConnectionLost):  # (the session died: as run() counts it)
        return Outcome.unreachable()
    return Outcome.raised()


def command_outcome(value: Any, raised: bool) -> Outcome:
    if not raised and isinstance(value, CommandResult):
        return Outcome.from_exit(value.rc)
    if isinstance(value, (CallTimeout, subprocess.TimeoutExpired)):
        return Outcome.timeout()
    return Outcome.unreachable()  # the session died during the command
