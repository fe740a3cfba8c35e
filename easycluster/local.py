"""``spawn_local``: a fresh local server process linked by a socketpair.

The child is a new interpreter (``sys.executable``), not a fork of the master script, so
it inherits none of the master's state. A random key made for this one session travels
over the child's stdin (never argv) and the normal handshake runs over the socketpair.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Optional

from . import definitions
from .client import Client
from .transport import client_handshake, socketpair

_ENTRY = ("import sys; from easycluster.server import main_spawned; "
          "sys.exit(main_spawned(sys.argv[1:]))")
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spawn_local(clientclass: Optional[type] = None, *, verbosity: int = 0,
                definitions: str = definitions.DEFAULT_MODULE,
                enable_compression: bool = False, timeout: float = 30.0,
                **client_kw: Any) -> Any:
    """Start a local server process and return ``clientclass`` (default Client) on it.

    Closing the client ends the process (it exits when its end of the socketpair
    closes) and reaps it.
    """
    cls = clientclass or Client
    key = os.urandom(32)
    mine, theirs = socketpair()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PKG_PARENT, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-u", "-c", _ENTRY, "--fd", str(theirs.fileno())]
    if verbosity:
        argv += ["--verbosity", str(verbosity)]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, pass_fds=(theirs.fileno(),),
                                env=env)
    finally:
        theirs.close()
    assert proc.stdin is not None
    proc.stdin.write(key.hex().encode() + b"\n")
    proc.stdin.close()
    client = cls(key=key, definitions=definitions, enable_compression=enable_compression,
                 **client_kw)
    try:
        channel = client_handshake(mine, key, client._wire_options(), timeout)
    except BaseException:
        mine.close()
        _reap(proc)
        raise
    client._attach(channel, f"local:{proc.pid}", closer=lambda: _reap(proc))
    client.process = proc
    return client


def _reap(proc: subprocess.Popen) -> None:
    """Wait briefly for the server to exit after its socket closed; kill it if it lingers."""
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
