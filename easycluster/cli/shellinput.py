"""What ``easycluster shell`` reads: the stdin it broadcasts, the commands of an
interactive run, and the operands of ``--copy``/``--rcopy``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, List, Optional, Tuple

from .exitcodes import INTERRUPTED, UsageError

PROMPT = "easycluster shell> "


def stdin_for_nodes(args: argparse.Namespace) -> Any:
    """Standard input to broadcast: the file when it is not a terminal, else None."""
    if args.nostdin:
        return None
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):  # no real stdin (embedded, tests)
        return None
    if os.isatty(fd):
        return None
    return sys.stdin.buffer


def interactive(run: Callable[[str, Any], int]) -> int:
    """Commands read one per line (prompted on a terminal), each run on every node.
    Returns the largest of their exit codes (130 if one was interrupted), so a script
    piped in is never 0 when a line of it failed somewhere."""
    tty = sys.stdin.isatty()
    code = 0
    while True:
        try:
            line = input(PROMPT) if tty else sys.stdin.readline()
        except EOFError:
            break
        if not tty and not line:
            break
        command = line.strip()
        if command in ("exit", "quit"):
            break
        if command and not command.startswith("#"):
            this = run(command, None)
            code = INTERRUPTED if INTERRUPTED in (code, this) else max(code, this)
    return code


def copy_operands(words: List[str], args: argparse.Namespace) -> Tuple[List[str], Optional[str]]:
    """The files of ``--copy``/``--rcopy`` and the destination: ``--dest DIR`` and
    ``-p`` may also come after the files, as clush users write them."""
    sources: List[str] = []
    dest = args.dest
    it = iter(words)
    for word in it:
        if word == "--dest":
            dest = next(it, None)
            if dest is None:
                raise UsageError("--dest needs a directory")
        elif word.startswith("--dest="):
            dest = word.split("=", 1)[1]
        elif word in ("-p", "--preserve"):
            args.preserve = True
        else:
            sources.append(word)
    return sources, dest
