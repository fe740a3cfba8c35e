"""The ``easycluster`` command: ``main(argv) -> int`` dispatches to the subcommands.

``easycluster nodeset ...`` runs ``cli/nodeset.py`` (likewise ``gather``, ``shell`` and
``farm``); ``--completion SHELL`` and ``--man-pages DIR`` print or write the generated
documents (``cli/docgen.py``); anything else is the server, key and boot-service command
(``cli/serve.py``). A subcommand's module is imported only when it runs. Every
subcommand maps errors to exit codes the same way (``cli/exitcodes.py``).
"""

from __future__ import annotations

import importlib
import sys

from ..version import VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: the port opens without importing typing)
    from typing import List, Optional

SUBCOMMANDS = {
    "nodeset": "easycluster.cli.nodeset",
    "gather": "easycluster.cli.gather",
    "shell": "easycluster.cli.shell",
    "farm": "easycluster.cli.farm",
}
DEFAULT = "easycluster.cli.serve"
# Generated documents (``--completion SHELL``, ``--man-pages DIR``): built from the
# parsers of the commands above, without loading the client stack or the engine.
DOCGEN = "easycluster.cli.docgen"
DOCGEN_OPTIONS = ("--completion", "--man-pages")
# A subcommand asked for its help or version builds its parser alone, from a module that
# imports next to nothing: the command's own modules (node sets, the Task, gathering)
# cost ~25 ms more, for a page of text.
PARSERS = {
    "shell": "easycluster.cli.shellparser",
    "farm": "easycluster.cli.farmparser",
    "gather": "easycluster.cli.gatherparser",
}
HELP_WORDS = frozenset(("-h", "--help", "--version"))


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``easycluster`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # answered without loading the server's command
        print(f"easycluster {VERSION}")
        return 0
    if argv and argv[0].partition("=")[0] in DOCGEN_OPTIONS:
        docgen: int = importlib.import_module(DOCGEN).main(argv, SUBCOMMANDS, DEFAULT)
        return docgen
    if argv and argv[0] in PARSERS and HELP_WORDS.intersection(argv[1:]):
        answered = _help_only(PARSERS[argv[0]], argv[1:])
        if answered is not None:
            return answered
    if argv and argv[0] in SUBCOMMANDS:
        module, argv = SUBCOMMANDS[argv[0]], argv[1:]
    else:
        module = DEFAULT
    code: int = importlib.import_module(module).main(argv)
    return code


def _help_only(module: str, argv: List[str]) -> Optional[int]:
    """Parse ``argv`` with ``module``'s ``build_parser()``: the exit code if that printed
    the help or the version, else None (the words were a command's, as in ``shell -w n1
    ls --help``, or a mistake): the command then parses them again and reports as usual,
    so both paths answer alike."""
    parser = importlib.import_module(module).build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as e:  # (the parser printed its help or version)
        return e.code if isinstance(e.code, int) else 0
    except Exception:  # noqa: BLE001 - usage errors and the like: the command says them
        return None
    return None


def run() -> None:
    """The console script's entry point (and ``python -m easycluster``'s): exit with
    ``main()``'s code. This module imports next to nothing: each subcommand's modules
    are imported inside ``main``, where a Ctrl-C (or a ``Terminated``) that lands during
    those imports, before any command could catch it, exits 130 (128 + the signal)
    without a word, as an interrupted command does, instead of a traceback."""
    try:
        code = main()
    except KeyboardInterrupt as e:
        code = 128 + getattr(e, "signum", 2)  # (exitcodes.Terminated's signal; else SIGINT)
    sys.exit(code)
