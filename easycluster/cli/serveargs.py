"""``easycluster -S``'s usual command lines, read without argparse.

A standalone server is started often (a fleet of them on one machine, each by a
script), and argparse with what it loads (``re``, ``gettext``, ``locale``: about 5 ms
of CPU here, a sixth of the start to a listening port) is there only to read a few
words. ``quick_args`` reads an argument list made of ``-S`` and the serving options in
``VALUES`` and ``FLAGS``, each as ``-x VALUE``, ``-xVALUE``, ``--name VALUE`` or
``--name=VALUE`` (``-v`` also repeated: ``-vv``). For anything else (help, a mistake, an
abbreviation, another action, a value that begins with ``-`` or that argparse would
refuse) it returns None, and argparse (``serve.build_parser``) reads the line and
reports as always. Both give the same namespace: ``tests/cli/test_serveargs.py``
compares them on many lines, and ``DEFAULTS`` with the parser's defaults.
"""

from __future__ import annotations

from types import SimpleNamespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

# Every option's destination and default, as the parser has them.
DEFAULTS: Dict[str, Any] = {
    "completion": None,
    "man_pages": None,
    "serve": False,
    "key": None,
    "keyfile": None,
    "generate": None,
    "overwrite": False,
    "config": None,
    "port": None,
    "bind": None,
    "no_ipv6": False,
    "allow": [],
    "verbose": None,
    "server_class": None,
    "daemonize": False,
    "pidfile": None,
    "logfile": None,
    "handshake_timeout": None,
    "max_pending": None,
    "max_connections": None,
    "grace": None,
    "install": False,
    "uninstall": False,
    "start": False,
    "stop": False,
    "status": False,
    "query_installed": False,
    "purge": False,
    "root": None,
}
# The options read here that take a value: the word -> its destination.
VALUES = {
    "-p": "port",
    "--port": "port",
    "-b": "bind",
    "--bind": "bind",
    "-k": "keyfile",
    "--keyfile": "keyfile",
    "--config": "config",
    "-a": "allow",
    "--allow": "allow",
    "-P": "pidfile",
    "--pidfile": "pidfile",
    "-L": "logfile",
    "--logfile": "logfile",
}
FLAGS = {
    "-S": "serve",
    "--serve": "serve",
    "-N": "no_ipv6",
    "--no-ipv6": "no_ipv6",
    "-d": "daemonize",
    "--daemonize": "daemonize",
}


def quick_args(argv: List[str]) -> Optional[SimpleNamespace]:
    """The namespace argparse would make of ``argv`` if it is a plain ``-S`` line (see
    the module docstring), else None."""
    found: Dict[str, Any] = {"allow": []}
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word in FLAGS:
            found[FLAGS[word]] = True
            continue
        if word == "--verbose" or (len(word) > 1 and word[0] == "-" and not word[1:].strip("v")):
            found["verbose"] = (found.get("verbose") or 0) + (
                1 if word == "--verbose" else len(word) - 1
            )
            continue
        name, eq, value = word.partition("=")
        if eq and name.startswith("--") and name in VALUES:
            pass  # --name=VALUE
        elif word in VALUES:
            if i == len(argv):
                return None  # (argparse says what is missing)
            name, value = word, argv[i]
            i += 1
        elif len(word) > 2 and word[:2] in VALUES and not word.startswith("--"):
            name, value = word[:2], word[2:]  # -xVALUE
        else:
            return None
        if not value or value[0] in "-=":  # (-x=VALUE, an empty or option-like value)
            return None
        dest = VALUES[name]
        if dest == "port":
            try:
                found["port"] = int(value)
            except ValueError:
                return None
        elif dest == "allow":
            found["allow"].append(value)
        else:
            found[dest] = value
    if not found.get("serve"):
        return None
    return SimpleNamespace(**{**DEFAULTS, **found})
