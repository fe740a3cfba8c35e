"""argparse as every command of ours uses it: ``Parser`` (mistakes raise
``exitcodes.UsageError``) and its ``HelpFormatter``. Apart from ``exitcodes`` so that a
command that reads its line without argparse (``easycluster -S``: ``serveargs.py``)
can report its errors without loading it."""

from __future__ import annotations

import argparse
import os
import sys

from .exitcodes import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only)
    from typing import Any, List, NoReturn, Optional, Sequence, Tuple


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, sized as ``shutil.get_terminal_size`` would size it but
    without importing ``shutil`` (argparse makes one for every option it adds, and for
    the help: shutil, with zlib, bz2 and lzma, costs about 3 ms of a command's start)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24):
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2)


def _columns() -> int:
    """The terminal's width: $COLUMNS, else the width of stdout's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose mistakes raise ``UsageError`` instead of exiting.

    ``dash_values``: options whose value may itself begin with ``-`` (ssh options:
    ``-o '-p 2222'``, ``-o -oStrictHostKeyChecking=accept-new``). argparse would read
    such a value as an option of ours (``-p``, ``-o``) and stop with "expected one
    argument"; ``parse_args`` glues the value to its option (``-o=VALUE``) first, among
    the options only: the words of a trailing command are left alone.
    """

    dash_values: Tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def parse_known_args(  # type: ignore[override]
        self, args: Optional[Sequence[str]] = None, namespace: Any = None
    ) -> Tuple[Any, List[str]]:
        if self.dash_values and args is not None:
            args = self._glue(list(args))
        return super().parse_known_args(args, namespace)

    def _glue(self, args: List[str]) -> List[str]:
        actions = self._option_string_actions
        i = 0
        while i < len(args):
            word = args[i]
            if word == "--" or not word.startswith("-") or word == "-":
                break  # the command (or a positional) begins: its words are its own
            if word in self.dash_values and i + 1 < len(args):
                args[i : i + 2] = [f"{word}={args[i + 1]}"]
            elif word in actions:
                nargs = actions[word].nargs
                if nargs is None or nargs == 1:
                    i += 1  # (its value, whatever it looks like)
                elif nargs == "?" and i + 1 < len(args) and not args[i + 1].startswith("-"):
                    i += 1  # (as argparse takes an optional value)
            i += 1
        return args
