"""What the generated documents need of a command, read from its argparse parser.

``load_commands`` imports each command's module, calls its ``build_parser`` and returns
a ``Command``: the NAME line and the DESCRIPTION from the module's docstring, the usage,
option groups and options from the parser, and the EXIT STATUS from the parser's epilog.
``manpage.py`` and ``completion.py`` turn that into roff and shell scripts;
``docgen.py`` is the command that prints or writes them.

The epilog's ``Exit codes: 0 ok; 1 ...`` sentence is the EXIT STATUS section: every
command states its codes there (the same line ``--help`` prints), and ``exit_codes``
refuses a parser that does not.

The parser is read through argparse's public face only: a ``HelpFormatter`` subclass
records what ``format_help`` hands it (the usage, each group's title and actions, the
texts) instead of formatting it, and each action's public attributes (option strings,
nargs, metavar, choices, help) say the rest. Options whose help is ``SUPPRESS`` are
hidden here as in ``--help``.

The table of commands comes from the caller (``cli/__init__.py`` owns it), so this
module names no command.
"""

from __future__ import annotations

import argparse
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Optional, Tuple

from .exitcodes import USAGE

PROGRAM = "easycluster"

# argparse's own classes of actions that may be given once: anything else (append,
# extend, count, a command's own Action) may be repeated. Compared by class name, since
# the classes themselves are private to argparse.
_SINGLE_ACTIONS = {
    "_StoreAction",
    "_StoreTrueAction",
    "_StoreFalseAction",
    "_StoreConstAction",
    "_VersionAction",
    "_HelpAction",
    "BooleanOptionalAction",
}


@dataclass(frozen=True)
class Option:
    """One documented argument of a command, as argparse knows it.

    ``flags`` is empty for a positional argument. ``takes`` says what its value is for
    completion: ``""`` (no value: a flag), ``"file"``, ``"dir"``, ``"choice"`` (one of
    ``choices``), ``"command"`` (a command line: shell's remainder) or ``"text"``
    (anything: node sets, numbers, ... which are not completed).
    """

    flags: Tuple[str, ...]
    metavar: str
    takes: str
    choices: Tuple[str, ...]
    help: str
    repeatable: bool
    nargs: Any

    @property
    def positional(self) -> bool:
        return not self.flags


@dataclass(frozen=True)
class Section:
    """A group of options as ``--help`` shows it (``options``, ``hosts``, ...)."""

    title: str
    options: Tuple[Option, ...]


@dataclass(frozen=True)
class Command:
    """What the generators need of one command. ``name`` is ``""`` for ``easycluster``
    itself, else the subcommand's name."""

    name: str
    summary: str  # the NAME line: a few words, no final period
    usage: str  # one line, without "usage: "
    description: List[str]  # paragraphs of text (RST-ish: ``literal`` and simple tables)
    sections: Tuple[Section, ...]
    exit_codes: Tuple[Tuple[int, str], ...]
    subcommands: Tuple[Tuple[str, str], ...] = field(default=())  # (name, summary)

    @property
    def prog(self) -> str:
        return f"{PROGRAM} {self.name}" if self.name else PROGRAM

    @property
    def page(self) -> str:
        """The man page's name: ``easycluster`` or ``easycluster-shell``."""
        return f"{PROGRAM}-{self.name}" if self.name else PROGRAM

    @property
    def options(self) -> List[Option]:
        return [o for s in self.sections for o in s.options]


class _Recorder(argparse.HelpFormatter):
    """Records what ``ArgumentParser.format_help`` hands a formatter, in order."""

    def __init__(self, prog: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(prog, *args, **kwargs)
        self.texts: List[Tuple[int, str]] = []  # (sections started before it, text)
        self.sections: List[Tuple[str, List[argparse.Action]]] = []

    def add_text(self, text: Optional[str]) -> None:
        if text and text is not argparse.SUPPRESS:
            self.texts.append((len(self.sections), text))

    def start_section(self, heading: Optional[str]) -> None:
        self.sections.append((heading or "", []))

    def end_section(self) -> None:
        pass

    def add_arguments(self, actions: Iterable[argparse.Action]) -> None:
        if self.sections:
            self.sections[-1][1].extend(actions)

    def format_help(self) -> str:
        return ""


def record(parser: argparse.ArgumentParser) -> _Recorder:
    """Run ``parser.format_help`` with a recording formatter; return the recording. The
    parser is left as it was."""
    made: List[_Recorder] = []

    def formatter(prog: str, *args: Any, **kwargs: Any) -> _Recorder:
        made.append(_Recorder(prog, *args, **kwargs))
        return made[-1]

    saved = parser.formatter_class
    parser.formatter_class = formatter
    try:
        parser.format_help()
    finally:
        parser.formatter_class = saved
    return made[-1]


def help_text(action: argparse.Action, prog: str) -> str:
    """``action.help`` as ``--help`` prints it: ``%(default)s``, ``%(prog)s`` and ``%%``
    expanded the way argparse does, blanks collapsed."""
    text = action.help or ""
    params = dict(vars(action), prog=prog)
    for name, value in list(params.items()):
        if value is argparse.SUPPRESS:
            del params[name]
        elif hasattr(value, "__name__"):  # a type or a function, as argparse names it
            params[name] = value.__name__
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    try:
        text = text % params
    except (KeyError, TypeError, ValueError):
        pass  # a stray '%' that argparse would choke on too: leave the text as written
    return " ".join(text.split())


def option_of(action: argparse.Action, prog: str) -> Optional[Option]:
    """The documented face of ``action``, or None if ``--help`` hides it."""
    if action.help is argparse.SUPPRESS:
        return None
    flags = tuple(action.option_strings)
    choices = tuple(str(c) for c in action.choices) if action.choices else ()
    if isinstance(action.metavar, str):
        metavar = action.metavar
    elif choices:
        metavar = "{" + ",".join(choices) + "}"
    else:
        metavar = action.dest.upper() if flags else action.dest
    if flags and action.nargs == 0:
        takes = ""
    elif choices:
        takes = "choice"
    elif action.nargs == argparse.REMAINDER:
        takes = "command"
    elif re.search(r"FILES?$", metavar.upper()):
        takes = "file"
    elif re.search(r"DIR$", metavar.upper()):
        takes = "dir"
    else:
        takes = "text"
    return Option(
        flags=flags,
        metavar=metavar,
        takes=takes,
        choices=choices,
        help=help_text(action, prog),
        repeatable=type(action).__name__ not in _SINGLE_ACTIONS,
        nargs=action.nargs,
    )


_EXIT_CODE = re.compile(r"(?:^|[;,]\s+)(\d+)\s+")


def exit_codes(epilog: str, prog: str) -> Tuple[Tuple[int, str], ...]:
    """The ``(code, meaning)`` pairs of the epilog's ``Exit codes:`` sentence, which runs
    to the end of the epilog, items separated by ``;`` (or ``,`` when no item has one).
    ValueError if there is none, or if it leaves out 0 or 2 (every command has both)."""
    head, sep, text = epilog.partition("Exit codes:")
    if not sep:
        raise ValueError(f"the epilog of {prog!r} states no 'Exit codes:'")
    text = " ".join(text.split()).rstrip(".")
    separator = ";" if ";" in text else ","
    codes: List[Tuple[int, str]] = []
    for item in text.split(separator):
        m = re.match(r"\s*(\d+)\s+(.+)", item)
        if not m:
            raise ValueError(f"the epilog of {prog!r}: no exit code in {item.strip()!r}")
        codes.append((int(m.group(1)), m.group(2).strip()))
    found = {c for c, _ in codes}
    if not {0, USAGE} <= found:
        raise ValueError(f"the exit codes of {prog!r}, {sorted(found)}, leave out 0 or {USAGE}")
    return tuple(codes)


def strip_markup(text: str) -> str:
    """Text with RST's ``literal`` quotes removed, as a NAME line wants it."""
    return text.replace("``", "")


def summary_of(doc: str, description: str) -> str:
    """The NAME line: from the docstring's first sentence, the part after ``: `` (``The
    ``easycluster shell`` command: run a command on many nodes``); else the parser's
    description's first sentence."""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=[^.])\.(?:\s|$)", first)[0]
    if ": " in sentence:
        text = sentence.split(": ", 1)[1]
    else:
        text = re.split(r"(?<=[^.])\.(?:\s|$)", " ".join(description.split()))[0]
    text = strip_markup(text).strip().rstrip(".")
    return text[:1].lower() + text[1:]


def describe(name: str, module: Any, parser: argparse.ArgumentParser) -> Command:
    """The ``Command`` for ``parser``, built by ``module.build_parser``."""
    rec = record(parser)
    sections = []
    for title, actions in rec.sections:
        options = tuple(o for o in (option_of(a, parser.prog) for a in actions) if o)
        if options:
            sections.append(Section(title, options))
    before = [t for n, t in rec.texts if n == 0]
    after = [t for n, t in rec.texts if n == len(rec.sections)]
    description = " ".join(before[0].split()) if before else ""
    epilog = " ".join(after[-1].split()) if after else ""
    doc = module.__doc__ or ""
    paragraphs = [description] if description else []
    for para in doc.strip().split("\n\n")[1:]:  # the first is the summary
        if not para.lstrip().startswith("Exit codes"):  # EXIT STATUS says it
            paragraphs.append(para.strip("\n"))
    rest = epilog.partition("Exit codes:")[0].strip()
    if rest:
        paragraphs.append(rest)
    usage = " ".join(parser.format_usage().split())
    return Command(
        name=name,
        summary=summary_of(doc, description),
        usage=usage[len("usage: ") :] if usage.startswith("usage: ") else usage,
        description=paragraphs,
        sections=tuple(sections),
        exit_codes=exit_codes(epilog, parser.prog),
    )


def load_commands(subcommands: Mapping[str, str], default: str) -> List[Command]:
    """``easycluster`` itself (the ``default`` module's parser) and each subcommand, in
    the table's order. Each module must have ``build_parser() -> ArgumentParser``."""
    out = []
    for name, modname in [("", default), *subcommands.items()]:
        module = importlib.import_module(modname)
        out.append(describe(name, module, module.build_parser()))
    top = out[0]
    subs = tuple((c.name, c.summary) for c in out[1:])
    out[0] = Command(
        top.name, top.summary, top.usage, top.description, top.sections, top.exit_codes, subs
    )
    return out
