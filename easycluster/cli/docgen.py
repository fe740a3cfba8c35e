"""``easycluster --completion bash|zsh`` and ``easycluster --man-pages DIR``.

Prints a completion script, or writes the man pages, generated from the commands' own
parsers (``commandinfo.py``, ``completion.py``, ``manpage.py``). The copies committed
under ``docs/man/`` and ``docs/completion/`` are ``generated_files``, and a test
regenerates and compares them, so a new option reaches ``--help``, the man page and
the completion together. To refresh them after changing a parser::

    easycluster --man-pages docs/man
    easycluster --completion bash > docs/completion/easycluster.bash
    easycluster --completion zsh > docs/completion/_easycluster

Start-up: the subcommands' modules import only what their parsers need, so this loads
no client or engine code.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Mapping, Sequence

from .commandinfo import PROGRAM, Command, load_commands
from .completion import SHELLS, script
from .exitcodes import run_command
from .manpage import man_pages
from .parsing import Parser

# Where the committed copies live, relative to the repository root, by generated name.
MAN_DIR = os.path.join("docs", "man")
COMPLETION_DIR = os.path.join("docs", "completion")
COMPLETION_FILES = {"bash": "easycluster.bash", "zsh": "_easycluster"}


def generated_files(commands: Sequence[Command]) -> Dict[str, str]:
    """Every generated file by its path under the repository root (``docs/...``)."""
    files = {os.path.join(MAN_DIR, n): text for n, text in man_pages(commands).items()}
    for shell, name in COMPLETION_FILES.items():
        files[os.path.join(COMPLETION_DIR, name)] = script(shell, commands)
    return files


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``easycluster --completion SHELL`` and ``--man-pages DIR``."""
    p = Parser(prog=PROGRAM, description="Print a completion script or write the man pages.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--completion", choices=SHELLS, help="print the completion script")
    what.add_argument("--man-pages", metavar="DIR", help="write the man pages into DIR")
    return p


def main(argv: List[str], subcommands: Mapping[str, str], default: str) -> int:
    """``easycluster --completion SHELL`` or ``easycluster --man-pages DIR`` (the commands
    are those of ``subcommands`` and ``default``, as ``cli/__init__.py`` dispatches
    them); return the exit code."""
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        commands = load_commands(subcommands, default)
        if args.completion:
            sys.stdout.write(script(args.completion, commands))
            return 0
        os.makedirs(args.man_pages, exist_ok=True)
        for name, text in man_pages(commands).items():
            with open(os.path.join(args.man_pages, name), "w", encoding="utf-8") as f:
                f.write(text)
        return 0

    return run_command(PROGRAM, parser, body)
