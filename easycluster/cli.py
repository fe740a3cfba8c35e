"""The ``easycluster`` command: ``main(argv) -> int`` and the one map from errors to exit codes.

Exit codes: 0 success; 1 a runtime failure (port in use, server error); 2 bad usage or
configuration (missing key, bad option value, unreadable key file).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from . import keys
from .errors import ConfigError, EasyClusterError
from .server import VERSION
from .service import DEFAULT_PORT, ServerOptions, run_server


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="easycluster",
        description="EasyCluster standalone server and tools. "
                    "Subcommand: 'easycluster nodeset ...' (see 'easycluster nodeset -h').")
    p.add_argument("--version", action="version", version=f"easycluster {VERSION}")
    p.add_argument("-S", "--serve", action="store_true", help="run the standalone server")
    keys.add_key_options(p)
    p.add_argument("-g", "--generate", metavar="FILE", help="write a new random key file")
    p.add_argument("-O", "--overwrite", action="store_true", help="let -g replace a file")
    p.add_argument("-p", "--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("-b", "--bind", metavar="ADDR", help="address to listen on (default: all)")
    p.add_argument("-N", "--no-ipv6", action="store_true", help="listen on IPv4 only")
    p.add_argument("-a", "--allow", metavar="NET", action="append", default=[],
                   help="only accept clients from this address or network (repeatable)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log connections (-v) and every request (-vv)")
    p.add_argument("-c", "--class", dest="server_class", help=argparse.SUPPRESS)
    p.add_argument("-d", "--daemonize", action="store_true", help="detach and run in background")
    p.add_argument("-P", "--pidfile", metavar="FILE", help="write the server's pid here")
    p.add_argument("--handshake-timeout", type=float, default=10.0,
                   help="seconds an unauthenticated socket may take to authenticate")
    p.add_argument("--max-pending", type=int, default=64,
                   help="most unauthenticated sockets waiting at once")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command with ``argv`` (default sys.argv[1:]); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "nodeset":
        from .nodeset_cmd import main as nodeset_main

        return nodeset_main(argv[1:])
    try:
        return _run(_parser().parse_args(argv))
    except ConfigError as e:
        print(f"easycluster: {e}", file=sys.stderr)
        return 2
    except (EasyClusterError, OSError) as e:
        print(f"easycluster: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.generate:
        if not keys.write_key_file(args.generate, overwrite=args.overwrite):
            raise ConfigError(f"{args.generate} already exists; add -O to replace it")
        print(f"wrote a new key to {args.generate} (mode 0600)")
        return 0
    if not args.serve:
        _parser().print_usage(sys.stderr)
        raise ConfigError("nothing to do: use -S to serve or -g FILE to make a key")
    key = keys.key_from_options(args)
    if not key:
        raise ConfigError("refusing to serve without a key. Make one with "
                          "'easycluster -g KEYFILE', then run 'easycluster -S -k KEYFILE'")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"bad port {args.port}: expected 0-65535")
    try:
        from .listener import parse_allow

        parse_allow(args.allow)
    except ValueError as e:
        raise ConfigError(str(e))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        stream=sys.stderr, format="easycluster[%(process)d]: %(message)s")
    opts = ServerOptions(key=key, port=args.port, bind=args.bind, allow=tuple(args.allow),
                         ipv6=not args.no_ipv6, verbosity=args.verbose,
                         handshake_timeout=args.handshake_timeout,
                         max_pending=args.max_pending, pidfile=args.pidfile,
                         daemonize=args.daemonize)
    return run_server(opts)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
