"""Stage 1 of the ssh bootstrap, on the remote host: import from memory, take over the
pipes, serve.

This file is not imported there: its source travels in the payload (built by
``launch.payload``), followed by a call of ``remote_main(SOURCES)``, and is executed as a
script by stage 0. So at module level it imports only the standard library, and it runs
on Python 3.9. ``SOURCES`` maps module names to ``(is package, source)`` for everything
the server imports; ``remote_main`` puts a finder for them first on ``sys.meta_path``
(tracebacks still show their lines), reads the 32-byte session key that follows the
payload on stdin, moves the protocol off fds 0 and 1 (they point at ``/dev/null``
afterwards, and ``sys.stdout`` is ``sys.stderr``, so a remote ``print`` reaches the
client's stderr instead of corrupting the stream), and runs the ordinary server handshake
and ``serve_connection`` over the two pipes.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple

if TYPE_CHECKING:  # annotations only: stage 1 imports nothing it does not run
    from importlib.machinery import ModuleSpec
    from types import ModuleType

Sources = Dict[str, Tuple[bool, str]]


class ShippedModules:
    """A ``sys.meta_path`` finder and loader for modules whose source came over stdin."""

    def __init__(self, sources: Sources):
        self.sources = sources

    def find_spec(
        self, name: str, path: Optional[Sequence[str]] = None, target: Optional[ModuleType] = None
    ) -> Optional[ModuleSpec]:
        if name not in self.sources:
            return None
        import importlib.machinery

        # The import system takes any object with create_module/exec_module as a loader;
        # the stub wants an importlib.abc.Loader, and importing importlib.abc would cost
        # stage 1 some 9 ms.
        return importlib.machinery.ModuleSpec(
            name,
            self,  # type: ignore[arg-type]
            origin=self._filename(name),
            is_package=self.sources[name][0],
        )

    def create_module(self, spec: ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        code = compile(self.sources[name][1], self._filename(name), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 - the payload the client sent

    def get_source(self, name: str) -> str:
        return self.sources[name][1]

    def _filename(self, name: str) -> str:
        suffix = "/__init__.py" if self.sources[name][0] else ".py"
        return "<easycluster-ssh>/" + name.replace(".", "/") + suffix


def remote_main(sources: Sources) -> None:
    """Stage 1 on the remote host: import from memory, take over the pipes, serve."""
    sys.meta_path.insert(0, ShippedModules(sources))
    from easycluster.protocol.boot import KEY_SIZE

    key = sys.stdin.buffer.read(KEY_SIZE)
    if len(key) != KEY_SIZE:
        sys.exit("easycluster bootstrap: stdin closed before the session key arrived")
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    sys.stdout = sys.stderr

    from easycluster.errors import ConnectionLost
    from easycluster.protocol.handshake import WireOptions
    from easycluster.remote.process import serve_connection
    from easycluster.transport.handshake import server_handshake
    from easycluster.transport.pipes import PipeSocket

    peer = "ssh:" + (os.environ.get("SSH_CLIENT") or "?").split(" ")[0]
    try:
        channel = server_handshake(PipeSocket(rfd, wfd), key, WireOptions(), timeout=30)
    except (OSError, ConnectionLost) as e:
        sys.exit(f"easycluster bootstrap: handshake failed: {e}")
    serve_connection(channel, peer)
