"""The one map from errors to exit codes, shared by every subcommand.

==== ======================================================================================
code meaning
==== ======================================================================================
0    success
1    a runtime failure (a port in use, a server or group source that failed, systemd not
     running for a service command) or input that cannot be honoured (a node set that
     does not parse)
2    bad usage or configuration: an unknown option or missing argument, a missing key, a
     bad option value, an unreadable key file, a mistake in a configuration file
130  interrupted (Ctrl-C)
==== ======================================================================================

Each subcommand builds its parser with ``parsing.Parser`` (usage mistakes raise
``UsageError``) and runs its body through ``run_command``, which prints one message on
stderr and returns the code.
"""

from __future__ import annotations

import os
import sys
import warnings

from ..errors import ConfigError, EasyClusterError, NodeSetParseError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: the port opens without importing typing)
    from typing import Any, Callable

OK = 0
FAILURE = 1
USAGE = 2
INTERRUPTED = 130


class UsageError(Exception):
    """The command line is wrong: the message says how."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, taken as Ctrl-C is (what runs is killed and cleaned up, what
    finished is reported), but exiting 128 + the signal's number, as a shell reports a
    command it ended. Raised by the handlers ``terminate_as_interrupt`` installs."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"ended by signal {signum}")
        self.signum = signum


def terminate_as_interrupt() -> Callable[[], None]:
    """Until the returned function is called, SIGTERM and SIGHUP raise ``Terminated`` in
    the main thread (where they are still the default action: a caller's own handler is
    left alone), so that a command killed by a batch system or a closed terminal cleans
    up as after Ctrl-C (no temporary file left, no remote command running)."""
    import signal

    def raise_terminated(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    installed = []
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, raise_terminated)
                installed.append(sig)
        except ValueError:  # (not the main thread: nothing to install)
            break

    def restore() -> None:
        for sig in installed:
            signal.signal(sig, signal.SIG_DFL)

    return restore


def exit_code(exc: BaseException) -> int:
    """The exit code for an error that ended a command (see the module docstring)."""
    if isinstance(exc, Terminated):
        return 128 + exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, (UsageError, ConfigError)):
        return USAGE
    return FAILURE


def message(exc: BaseException) -> str:
    """The one line a command prints for ``exc`` after its name."""
    if isinstance(exc, UsageError):
        return f"error: {exc}"
    if isinstance(exc, NodeSetParseError):
        return f"parse error: {exc}"
    return str(exc)


def run_command(prog: str, parser: Any, body: Callable[[], int]) -> int:
    """Run ``body`` and return its exit code, or the code of the error it raised, after
    printing one message naming ``prog`` on stderr (usage errors print the usage line
    first: ``parser``'s ``format_usage()``, an argparse parser's or a stand-in's).
    ``--help`` and ``--version`` return 0. Anything else (a programming error)
    propagates with its traceback.
    """
    try:
        with warnings.catch_warnings():  # a warning reads as one line naming the command
            warnings.showwarning = lambda msg, *_a, **_k: print(
                f"{prog}: warning: {msg}", file=sys.stderr
            )
            return body()
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else OK
    except KeyboardInterrupt as e:
        return exit_code(e)
    except BrokenPipeError:
        # the reader left (``| head``): stop without a message; what was running has been
        # cleaned up on the way out, and the interpreter's own flush at exit must not
        # fail again on the closed pipe
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        return FAILURE
    except (UsageError, EasyClusterError, ValueError, OSError) as e:
        if isinstance(e, UsageError):
            sys.stderr.write(parser.format_usage())
        print(f"{prog}: {message(e)}", file=sys.stderr)
        return exit_code(e)
