"""The server's named verbs as ``Client`` methods: ``eval``, ``execblock``,
``import_modules``, ``get_global``, ``set_global``, ``get_root`` and the thread controls.

``ServerVerbs`` is a mixin of ``Client``; each method is one ``send_request`` on object
0 (the server's root), so they share its special keywords (``nonblocking``,
``call_timeout``, ``threadid``...).
"""

from __future__ import annotations

from ..objects import definitions
from ..objects.proxy import RootProxy, new_proxy
from ..protocol.messages import CONTROL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Sequence, Union


class ServerVerbs:
    """Root-object verbs for ``Client``."""

    # (set by Client; declared here for the type checker)
    _sent_blocks: int
    _default_thread: int

    send_request: Callable[..., Any]

    def eval(self, expr: str, **opts: Any) -> Any:
        """Evaluate ``expr`` in the server's definitions module."""
        return self.send_request(0, "eval", (expr, "eval"), **opts)

    def execblock(self, code: str, **opts: Any) -> Any:
        """Run ``code`` there; returns None or what it passed to ``exec_return``."""
        return self.send_request(0, "eval", (code, "exec"), **opts)

    def import_modules(self, names: Union[str, Sequence[str]], **opts: Any) -> Any:
        """Import modules on the server and bind them in its definitions module."""
        if isinstance(names, str):
            names = [names]
        return self.send_request(0, "import_modules", (list(names),), **opts)

    def import_module(self, name: str, **opts: Any) -> Any:
        return self.import_modules([name], **opts)

    def update_definitions(self, **opts: Any) -> Any:
        """Send the ``define_common`` blocks added since this client last sent them."""
        end, blocks = definitions.blocks_since(self._sent_blocks)
        self._sent_blocks = end
        return self.send_request(0, "update_definitions", (blocks,), **opts)

    def get_global(self, name: str, **opts: Any) -> Any:
        return self.send_request(0, "get_global", (name,), **opts)

    def set_global(self, name: str, value: Any, **opts: Any) -> Any:
        return self.send_request(0, "set_global", (name, value), **opts)

    def get_root(self) -> Any:
        """A proxy for the server's root object (object id 0)."""
        return new_proxy(RootProxy, self, 0)

    def set_default_thread(self, threadid: int) -> None:
        """Server thread used by calls that give no ``threadid``."""
        self._default_thread = int(threadid)

    def stop_remote_thread(self, threadid: int) -> None:
        """Stop server thread ``threadid`` once its queued calls have run."""
        self.send_request(0, "stop_thread", (int(threadid),), threadid=CONTROL)
