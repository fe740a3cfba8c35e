"""What ``easycluster shell`` reads: the stdin it broadcasts, the commands of an
interactive run, and the operands of ``--copy``/``--rcopy``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, List, Optional, Protocol, Tuple

from ..errors import NodeSetError
from ..nodeset.nodeset import NodeSet
from .exitcodes import INTERRUPTED, USAGE, UsageError

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


class Session(Protocol):
    """What an interactive run needs of the shell: its node list (changed in place),
    whether output is gathered, and two ways to run a command."""

    nodes: List[str]
    gathered: bool

    def run(self, command: str, stdin: Any) -> int: ...
    def run_here(self, command: str) -> int: ...
    def say(self, text: str) -> None: ...


HELP = """commands run on every node; these lines are the shell's own (as clush's):
  +NODESET   add nodes          -NODESET  remove nodes      @NODESET  use these nodes
  ?          show the nodes     =         gather output or not (-b)
  !COMMAND   run COMMAND here   exit, quit, end of input: leave"""


def interactive(session: Session) -> int:
    """Commands read one per line (prompted on a terminal, with line editing and a
    history file), each run on every node, or a line of the shell's own (``HELP``).
    Returns the largest of the commands' exit codes (130 if one was interrupted), so a
    script piped in is never 0 when a line of it failed somewhere."""
    tty = sys.stdin.isatty()
    history = _history() if tty else None
    code = 0
    try:
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
            if not command or command.startswith("#") or _own(session, command):
                continue
            if command.startswith("!"):
                this = session.run_here(command[1:].strip())
            elif not session.nodes:
                session.say("no node to run on: add some with +NODESET or @NODESET")
                this = USAGE
            else:
                this = session.run(command, None)
            code = INTERRUPTED if INTERRUPTED in (code, this) else max(code, this)
    finally:
        if history is not None:
            history()
    return code


def _own(session: Session, line: str) -> bool:
    """Carry out ``line`` if it is one of the shell's own (``HELP``); False if not."""
    head, rest = line[0], line[1:].strip()
    if line in ("?", "help"):
        if line == "help":
            session.say(HELP)
        folded = NodeSet.fromlist(session.nodes) if session.nodes else "(none)"
        session.say(f"nodes: {folded} ({len(session.nodes)})")
        return True
    if line == "=":
        session.gathered = not session.gathered
        session.say(f"gathering (-b) {'on' if session.gathered else 'off'}")
        return True
    if head not in "+-@" or not rest:
        return False
    try:
        names = list(NodeSet(rest))
    except NodeSetError as e:
        session.say(f"{rest}: not a node set ({e}); nothing changed")
        return True
    if head == "+":
        session.nodes.extend(n for n in names if n not in session.nodes)
    elif head == "-":
        gone = set(names)
        session.nodes[:] = [n for n in session.nodes if n not in gone]
    else:
        session.nodes[:] = names
    return True


def _history() -> Optional[Callable[[], None]]:
    """Line editing and a history file for a terminal: returns what saves the history
    (None where ``readline`` is missing). The file is
    ``$XDG_STATE_HOME/easycluster/shell_history`` (``~/.local/state/...``)."""
    try:
        import readline
    except ImportError:
        return None
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    path = os.path.join(state, "easycluster", "shell_history")
    try:
        readline.read_history_file(path)
    except OSError:
        pass  # (none yet, or unreadable: start empty)

    def save() -> None:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            readline.set_history_length(1000)
            readline.write_history_file(path)
        except OSError:
            pass  # (a history is a convenience: never fail a run over it)

    return save


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
