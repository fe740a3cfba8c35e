"""What ``easycluster shell`` reads: the stdin it broadcasts, the commands of an
interactive run, and the operands of ``--copy``/``--rcopy``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Protocol, Tuple

from ..cluster.copy import base_name, check_remote_path
from ..errors import NodeSetError
from ..nodeset.nodeset import NodeSet
from .exitcodes import INTERRUPTED, USAGE, UsageError

PROMPT = "easycluster shell> "

# What runs on each node when a script is piped in without a command: the login shell
# reading the script on its stdin (clush's ``ssh host`` with the script as its input).
SCRIPT = 'exec "${SHELL:-/bin/sh}" -s'


def stdin_is_terminal() -> bool:
    """Standard input is a terminal (or there is no real one: nothing is piped in, as
    when embedded or under a test runner)."""
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, ValueError, OSError):
        return True


def stdin_for_nodes(args: argparse.Namespace) -> Any:
    """Standard input to broadcast: the file when it is not a terminal, else None. Also
    None for /dev/null (cron's, CI's stdin): nothing to send, and a node given no stdin
    has its command watched by the end of its ssh connection itself, the surer way
    (``sshexec.watched``)."""
    if args.nostdin or stdin_is_terminal() or stdin_is_null():
        return None
    return sys.stdin.buffer


def stdin_is_null() -> bool:
    """Standard input is /dev/null."""
    try:
        mine, null = os.fstat(sys.stdin.fileno()), os.stat(os.devnull)
    except (AttributeError, ValueError, OSError):
        return False
    return (mine.st_dev, mine.st_ino, mine.st_rdev) == (null.st_dev, null.st_ino, null.st_rdev)


class Session(Protocol):
    """What an interactive run needs of the shell: its node list (changed in place),
    whether ``-b`` gathers output, and two ways to run a command."""

    nodes: List[str]
    gather: bool

    def run(self, command: str, stdin: Any) -> int: ...
    def run_here(self, command: str) -> int: ...
    def say(self, text: str) -> None: ...


HELP = """commands run on every node; these lines are the shell's own (as clush's):
  +NODESET   add nodes          -NODESET  remove nodes      @NODESET  use these nodes
  ?          show the nodes     =         gathering (-b) on or off
  !COMMAND   run COMMAND here   exit, quit (bare), Ctrl-D: leave"""


def interactive(session: Session) -> int:
    """Commands typed at a terminal, one per line (line editing, a history file), each
    run on every node, or a line of the shell's own (``HELP``). Ctrl-C ends the command
    running, not the session. Returns the largest exit code of the commands run on the
    nodes (130 if one was interrupted; ``!COMMAND``'s own codes are not counted)."""
    history = History()
    code = 0
    try:
        while True:
            try:
                line = input(PROMPT)
            except EOFError:
                break
            command = line.strip()
            if command:
                history.add(command)
            if command in ("exit", "quit"):
                break
            if not command or command.startswith("#") or _own(session, command):
                continue
            if command.startswith("!"):
                session.run_here(command[1:].strip())
                continue
            if not session.nodes:
                session.say("no node to run on: add some with +NODESET or @NODESET")
                this = USAGE
            else:
                this = session.run(command, None)
            code = INTERRUPTED if INTERRUPTED in (code, this) else max(code, this)
    finally:
        history.save()
    return code


def _own(session: Session, line: str) -> bool:
    """Carry out ``line`` if it is one of the shell's own (``HELP``); False if not."""
    head, rest = line[0], line[1:].strip()
    if line == "=":
        session.gather = not session.gather
        session.say(f"gathering (-b) {'on' if session.gather else 'off'}")
        return True
    if line in ("?", "help") or (head in "+-@" and not rest):  # (a bare +, - or @: show)
        if line == "help":
            session.say(HELP)
        folded = NodeSet.fromlist(session.nodes) if session.nodes else "(none)"
        session.say(f"nodes: {folded} ({len(session.nodes)})")
        return True
    if head not in "+-@":
        return False
    try:
        names = list(NodeSet(rest))
    except NodeSetError as e:
        session.say(f"{rest}: not a node set ({e}); nothing changed")
        return True
    if not names:
        session.say(f"no node in {rest} (an empty or unknown group?); nothing changed")
        return True
    if head == "+":
        session.nodes.extend(n for n in names if n not in session.nodes)
    elif head == "-":
        gone = set(names)
        session.nodes[:] = [n for n in session.nodes if n not in gone]
    else:
        session.nodes[:] = names
    return True


class History:
    """Line editing and a history file for the interactive shell (where ``readline``
    is): ``$XDG_STATE_HOME/easycluster/shell_history`` (``~/.local/state/...``), read at
    the start, each command added, written at the end. Never fails a run."""

    def __init__(self) -> None:
        try:
            import readline
        except ImportError:
            self.readline: Any = None
            return
        self.readline = readline
        state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        self.path = os.path.join(state, "easycluster", "shell_history")
        readline.set_auto_history(False)  # (what is added is up to add())
        try:
            readline.read_history_file(self.path)
        except OSError:
            pass  # (none yet, or unreadable: start empty)

    def add(self, line: str) -> None:
        if self.readline is not None:
            self.readline.add_history(line)

    def save(self) -> None:
        if self.readline is None:
            return
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.readline.set_history_length(1000)
            self.readline.write_history_file(self.path)
        except OSError:
            pass  # (a history is a convenience)


def copy_operands(words: List[str], args: argparse.Namespace) -> Tuple[List[str], Optional[str]]:
    """The files of ``--copy``/``--rcopy`` and the destination: ``--dest DIR`` and
    ``-p`` may also come after the files, as clush users write them; after ``--`` every
    word is a file (one named ``-p``, say)."""
    sources: List[str] = []
    dest = args.dest
    it = iter(words)
    for word in it:
        if word == "--":
            sources += it
        elif word == "--dest":
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


def copy_landings(sources: List[str], dest: Optional[str], reverse: bool) -> Optional[str]:
    """Check where the sources of one ``--copy``/``--rcopy`` land, before anything runs
    (UsageError): two that would land on one name are refused, naming both, and so is a
    node's path that starts with ``~user``. Returns the
    destination to give every copy: with two or more sources and a ``--dest``, it must be
    an existing directory (as for scp), so a push's gets a ``/`` (the node then refuses
    a missing one or a file; an rcopy's ``--dest`` is checked here already)."""
    seen: Dict[str, str] = {}
    for src in sources:
        try:
            for path in [src] if reverse else [dest] if dest else []:
                check_remote_path(path)  # (~user is refused, ~ and ~/ are the node's home)
            if reverse or dest:
                where = base_name(src if reverse else os.path.abspath(src))
            else:
                where = os.path.abspath(src)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if where in seen:
            into = f" in {dest}" if dest else ""
            raise UsageError(f"{seen[where]} and {src} would both be copied to {where}{into}")
        seen[where] = src
    if dest and len(sources) > 1 and not reverse and not dest.endswith("/"):
        return dest + "/"
    return dest
