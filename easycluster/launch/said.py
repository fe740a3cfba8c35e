"""What a quick helper command (a SLURM query, a group source's upcall) printed on
stderr before it was cut off at its timeout: often the only reason there is (SLURM's
"cannot stat file" while it retries reading a wrong ``SLURM_CONF``)."""

from __future__ import annotations


def last_said(exc: BaseException) -> str:
    """``"; it said: LINE"`` with the last line ``exc`` (a ``subprocess.TimeoutExpired``,
    or any error) caught on the command's stderr, or ``""`` when there is none."""
    said = getattr(exc, "stderr", None)
    if isinstance(said, bytes):
        said = said.decode(errors="replace")
    lines = (said or "").strip().splitlines()
    return f"; it said: {lines[-1]}" if lines else ""
