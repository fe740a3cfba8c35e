"""The ssh bootstrap's bytes (drawn in the package docstring): the stage-0 command line
and the greeting it prints before reading the payload and the session key."""

from __future__ import annotations

import shlex

TYPE_CHECKING = False
if TYPE_CHECKING:
    from re import Match
    from typing import Optional, Tuple, Union

MIN_PYTHON = (3, 9)
GREETING = rb"EASYCLUSTER-BOOT (\d+)\.(\d+)\.(\d+)\r?\n"  # a regular expression
EXIT_TOO_OLD = 3  # stage 0's exit status on a Python older than MIN_PYTHON
KEY_SIZE = 32  # the session key that follows the payload on stdin

# Stage 0: one line, no quotes of its own kind, valid Python 2 and 3 syntax.
_STAGE0 = (
    "import sys,os,zlib;v=tuple(sys.version_info[:3]);"
    'os.write(1,("\\nEASYCLUSTER-BOOT %d.%d.%d\\n"%v).encode());'
    "v<{minimum} and sys.exit({too_old});"
    "exec(zlib.decompress(sys.stdin.buffer.read({size})))"
)


def stage0_command(rpython: str, payload_size: int) -> str:
    """The remote shell command that starts stage 0 with ``rpython``.

    ``rpython`` may hold several words (``"env python3"``); each is quoted with
    ``shlex.quote``, so no part of it is run as shell code. Raises ValueError for an
    empty ``rpython``.
    """
    words = shlex.split(rpython)
    if not words:
        raise ValueError("rpython must name a Python interpreter")
    code = _STAGE0.format(minimum=MIN_PYTHON, too_old=EXIT_TOO_OLD, size=payload_size)
    return " ".join(shlex.quote(w) for w in [*words, "-c", code])


def parse_greeting(data: Union[bytes, bytearray]) -> Optional[Tuple[int, int, int]]:
    """The remote Python version from stage 0's greeting line in ``data``, or None if
    the greeting is not (yet) there. Anything before it (shell noise) is ignored."""
    m = _search(data)
    if m is None:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)))


def greeting_end(data: Union[bytes, bytearray]) -> int:
    """Offset just past the greeting line in ``data``; ValueError if it is not there."""
    m = _search(data)
    if m is None:
        raise ValueError("no greeting")
    return m.end()


def _search(data: Union[bytes, bytearray]) -> Optional[Match[bytes]]:
    # re imported here: this module ships to gateways, and a server's start loads no re
    import re

    return re.search(GREETING, data)
