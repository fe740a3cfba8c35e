"""``easycluster farm``'s output files, checked before anything runs.

A ``--outdir`` or ``-A`` file that cannot be written is a ``UsageError`` (exit 2)
naming it and saying what to fix, found before any job runs, so a run never starts
that would stop at its first write.
"""

from __future__ import annotations

import os
import tempfile

from ..cluster.farmlog import write_atomic
from .exitcodes import UsageError


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
