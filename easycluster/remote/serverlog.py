"""The server side's logger, ``easycluster.server``, with ``logging`` imported on first use.

``logging`` (with traceback, threading and more) costs a server's start-up several
milliseconds: an ssh server that logs nothing never loads it, and ``easycluster -S``
opens its port without it. Shared by the connection code here and the TCP service.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any


class _LazyLogger:
    """Stands for ``logging.getLogger(name)``, importing ``logging`` on first use."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        import logging

        return getattr(logging.getLogger(self.name), attr)


def lazy_logger(name: str) -> logging.Logger:
    """The logger ``name``, as an object that imports ``logging`` when first called (so a
    module may hold its logger without loading ``logging`` at import)."""
    return _LazyLogger(name)  # type: ignore[return-value]  # (it forwards every attribute)


log = lazy_logger("easycluster.server")
