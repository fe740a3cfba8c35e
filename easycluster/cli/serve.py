"""``easycluster`` without a subcommand: the standalone server (``-S``), key files
(``-g``) and the boot service (``--install`` & co.). Exit codes: ``exitcodes``."""

from __future__ import annotations

import errno
import importlib.machinery
import os
import socket
import sys

from .. import keys
from ..errors import ConfigError, EasyClusterError
from ..protocol.messages import DEFAULT_PORT
from ..service import config
from ..service.options import ServerOptions
from ..service.tcpserver import run_server
from ..version import VERSION
from .exitcodes import run_command
from .serveargs import quick_args

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: the port opens without importing typing)
    import argparse
    from types import SimpleNamespace
    from typing import Any, Callable, Dict, List, Optional, Union

    Args = Union[argparse.Namespace, SimpleNamespace]  # (``serveargs`` makes the latter)

SERVICE_ACTIONS = ("install", "uninstall", "start", "stop", "status", "query_installed")


def _checked(name: str) -> Callable[[str], Any]:
    """An argparse type that parses like the configuration file's ``name`` key."""
    parse = config.PARSERS[name]

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            import argparse  # (only ever called by argparse, which has loaded it)

            raise argparse.ArgumentTypeError(f"{text!r}: {e}")

    return convert


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``easycluster`` without a subcommand (also read by ``commandinfo``;
    the usual ``-S`` lines are read without it: ``serveargs.py``)."""
    import argparse

    from .parsing import Parser

    p = Parser(
        prog="easycluster",
        description="EasyCluster standalone server and tools. Subcommands: nodeset, "
        "gather, shell, farm (see 'easycluster SUBCOMMAND -h').",
        epilog="Exit codes: 0 ok; 1 failure (a port in use, a failed service command, "
        "--query-installed when not installed); 2 usage or configuration (a bad option, "
        "a missing or unreadable key); 130 interrupted.",
    )
    p.add_argument("--version", action="version", version=f"easycluster {VERSION}")
    # Answered by cli/__init__.py before this parser runs (docgen.py); listed here so
    # that --help, the man page and the completion show them.
    p.add_argument(
        "--completion", choices=("bash", "zsh"), help="print the shell completion script"
    )
    p.add_argument("--man-pages", metavar="DIR", help="write the man pages into DIR")
    p.add_argument("-S", "--serve", action="store_true", help="run the standalone server")
    keys.add_key_options(p)
    p.add_argument("-g", "--generate", metavar="FILE", help="write a new random key file")
    p.add_argument(
        "-O",
        "--overwrite",
        action="store_true",
        help="let -g replace a file, --install a configuration or key",
    )
    p.add_argument(
        "--config", metavar="FILE", help="read server settings from FILE (options given here win)"
    )
    p.add_argument(
        "-p",
        "--port",
        type=int,
        default=None,
        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.add_argument(
        "-b",
        "--bind",
        metavar="ADDR",
        help="address to listen on ('*': all; default: all, or loopback with --config)",
    )
    p.add_argument("-N", "--no-ipv6", action="store_true", help="listen on IPv4 only")
    p.add_argument(
        "-a",
        "--allow",
        metavar="NET",
        action="append",
        default=[],
        help="only accept clients from this address or network (repeatable)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=None,
        help="log connections (-v) and every request (-vv)",
    )
    p.add_argument("-c", "--class", dest="server_class", help=argparse.SUPPRESS)
    p.add_argument("-d", "--daemonize", action="store_true", help="detach and run in background")
    p.add_argument(
        "-P", "--pidfile", metavar="FILE", help="write the server's pid here (removed on exit)"
    )
    p.add_argument(
        "-L",
        "--logfile",
        metavar="FILE",
        help="append the log (and anything written to stderr) to FILE instead of the "
        "terminal; with -d and no --logfile, the log is discarded",
    )
    p.add_argument(
        "--handshake-timeout",
        type=_checked("handshake_timeout"),
        default=None,
        help="seconds an unauthenticated socket may take to authenticate (10)",
    )
    p.add_argument(
        "--max-pending",
        type=_checked("max_pending"),
        default=None,
        help="most unauthenticated sockets waiting at once (64)",
    )
    p.add_argument(
        "--max-connections",
        type=_checked("max_connections"),
        default=None,
        metavar="N",
        help="most connections served at once (default 0: no limit)",
    )
    p.add_argument(
        "--grace",
        type=_checked("grace"),
        default=None,
        metavar="S",
        help="seconds SIGTERM lets open connections finish (10)",
    )
    svc = p.add_argument_group("boot service (systemd)")
    acts = svc.add_mutually_exclusive_group()
    acts.add_argument(
        "-i",
        "--install",
        action="store_true",
        help="install and enable the systemd unit, configuration and key "
        "(-k FILE: install a copy of that key; -b/-p/-a...: settings)",
    )
    acts.add_argument(
        "-u",
        "--uninstall",
        action="store_true",
        help="stop, disable and remove the unit (keeps key and configuration)",
    )
    acts.add_argument("--start", action="store_true", help="start the service")
    acts.add_argument("--stop", action="store_true", help="stop the service")
    acts.add_argument("--status", action="store_true", help="show the service's status")
    acts.add_argument(
        "--query-installed",
        action="store_true",
        help="exit 0 if the service is installed, 1 if not",
    )
    svc.add_argument(
        "--purge",
        action="store_true",
        help="with --uninstall: remove the key and configuration too",
    )
    svc.add_argument(
        "--root",
        metavar="DIR",
        help="install into (or query) a staging root; needs no running systemd",
    )
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command with ``argv`` (default sys.argv[1:]); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    quick = quick_args(argv)  # (a usual -S line, read without argparse: serveargs.py)
    if quick is not None:
        return run_command("easycluster", _Usage(), lambda: _run(quick))
    parser = build_parser()
    return run_command("easycluster", parser, lambda: _run(parser.parse_args(argv)))


class _Usage:
    """``run_command``'s parser for a line read without one: the usage line, made when
    asked."""

    def format_usage(self) -> str:
        return build_parser().format_usage()


def _run(args: Args) -> int:
    if args.completion or args.man_pages:
        raise ConfigError("--completion and --man-pages take no other options")
    if args.generate:
        if not keys.write_key_file(args.generate, overwrite=args.overwrite):
            raise ConfigError(f"{args.generate} already exists; add -O to replace it")
        print(f"wrote a new key to {args.generate} (mode 0600)")
        return 0
    action = next((a for a in SERVICE_ACTIONS if getattr(args, a)), None)
    if action:
        if args.serve:
            raise ConfigError(f"-S cannot be combined with --{action.replace('_', '-')}")
        return _service(action, args)
    if args.purge or args.root:
        raise ConfigError("--purge and --root go with --install, --uninstall or --query-installed")
    if not args.serve:
        build_parser().print_usage(sys.stderr)
        raise ConfigError("nothing to do: use -S to serve or -g FILE to make a key")
    return _serve(args)


def _cli_settings(args: Args) -> Dict[str, Any]:
    """The server settings given on the command line (None: not given)."""
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError(f"bad port {args.port}: expected 0-65535")
    try:
        allow = config.PARSERS["allow"](",".join(args.allow)) if args.allow else None
    except ValueError as e:
        raise ConfigError(str(e))
    return {
        "port": args.port,
        "bind": args.bind,
        "keyfile": args.keyfile,
        "allow": allow,
        "verbosity": args.verbose,
        "max_connections": args.max_connections,
        "handshake_timeout": args.handshake_timeout,
        "max_pending": args.max_pending,
        "grace": args.grace,
        "ipv6": False if args.no_ipv6 else None,
    }


class _Setup:
    """Builds ``ServerOptions`` from the command line, the configuration file and the key
    file; ``options`` runs again on SIGHUP. ``settings`` says where each value came from."""

    def __init__(self, args: Args):
        # Absolute paths: -d changes directory to /, and SIGHUP reads them again.
        for name in ("config", "keyfile"):
            if getattr(args, name):
                setattr(args, name, os.path.abspath(getattr(args, name)))
        self.args = args
        self.cli = _cli_settings(args)
        self.settings = config.Settings({})
        self.log_level = "WARNING"
        self.logging_started = False

    def options(self, first: bool = False) -> ServerOptions:
        args = self.args
        settings = config.resolve(args.config, self.cli)
        if args.key and not args.keyfile:
            key = keys.key_from_options(args, warn=first)
        else:
            key = config.load_key(settings)
        if not key:
            raise ConfigError(
                "refusing to serve without a key. Make one with "
                "'easycluster -g KEYFILE', then run 'easycluster -S -k KEYFILE'"
                + (f" or set 'keyfile = KEYFILE' in {args.config}" if args.config else "")
            )
        self.log_level = "INFO" if settings["verbosity"] else "WARNING"
        if self.logging_started:  # (a reload: the level may have changed)
            self.start_logging()
        self.settings = settings
        return config.server_options(settings, key, pidfile=args.pidfile, daemonize=args.daemonize)

    def start_logging(self) -> None:
        """Send the log to stderr at the configured level. Called just before the
        server first logs, in the process that logs (``TCPServer.serve_forever``):
        ``logging`` (with traceback, threading & co.) is not loaded before."""
        import logging

        logging.basicConfig(stream=sys.stderr, format="easycluster[%(process)d]: %(message)s")
        logging.getLogger().setLevel(self.log_level)
        self.logging_started = True


def _serve(args: Args) -> int:
    if args.logfile:
        _log_to(os.path.abspath(args.logfile))
    if not _importable("cloudpickle"):
        raise EasyClusterError(
            f"cloudpickle is not installed for {sys.executable}: the server needs it to "
            "run calls; install the package with its dependencies (pip install easycluster)"
        )
    setup = _Setup(args)
    opts = setup.options(first=True)
    try:
        return run_server(opts, reload=setup.options, before_work=setup.start_logging)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise EasyClusterError(
                f"{_where(setup.settings, 'port')}port {opts.port} is "
                "already in use: is another server running? Stop it or "
                "choose another port"
            )
        if e.errno == errno.EADDRNOTAVAIL or isinstance(e, socket.gaierror):
            raise EasyClusterError(
                f"{_where(setup.settings, 'bind')}cannot listen on {opts.bind!r}: {e.strerror or e}"
            )
        raise


def _importable(name: str) -> bool:
    """True if module ``name`` can be imported (found, not imported). The path finder
    answers for a normal install; ``importlib.util`` (which loads contextlib & co.,
    about 2 ms) asks the other finders only when it finds nothing."""
    if importlib.machinery.PathFinder.find_spec(name) is not None:
        return True
    from importlib.util import find_spec

    return find_spec(name) is not None


def _log_to(path: str) -> None:
    """Send stderr (and so the log, and any stray output of the code clients run) to
    ``path``, appended, from now on: a daemon keeps writing there, not to a terminal
    that may be gone."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    except OSError as e:
        raise ConfigError(f"cannot open the log file {path}: {e.strerror or e}")
    sys.stderr.flush()
    os.dup2(fd, 2)
    os.close(fd)


def _where(settings: config.Settings, name: str) -> str:
    origin = settings.origin(name)
    return "" if origin in ("default", "command line") else f"{origin}: "


def _service(action: str, args: Args) -> int:
    from ..service import systemd  # (only the boot-service actions need it)

    layout = systemd.Layout(root=args.root)
    if args.purge and action != "uninstall":
        raise ConfigError("--purge goes with --uninstall")
    if action == "install":
        if args.config:
            raise ConfigError(
                f"--install writes its configuration to {layout.config}; --config is for -S"
            )
        if args.key:
            raise ConfigError("--install takes a key file (-k FILE), not a key on the command line")
        values = {
            name: _config_text(value)
            for name, value in _cli_settings(args).items()
            if value is not None and name != "keyfile"
        }
        return systemd.install(
            layout, keyfile=args.keyfile, overwrite=args.overwrite, config_values=values
        )
    if action == "uninstall":
        return systemd.uninstall(layout, purge=args.purge)
    if action == "query_installed":
        return systemd.query_installed(layout)
    if args.root:
        raise ConfigError(f"--{action} acts on this machine's systemd; drop --root")
    return systemd.control(action, layout)


def _config_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)
