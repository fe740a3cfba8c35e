"""The server side's logger, ``easycluster.server``, with ``logging`` imported on first use.

``logging`` (with traceback, threading and more) costs a server's start-up several
milliseconds: an ssh server that logs nothing never loads it, and ``easycluster -S``
opens its port without it. Shared by the connection code here and the TCP service.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any, Callable, Optional


# Run once, before anything is first logged through a lazy logger (``before_first_log``).
_first_log: list = []


def before_first_log(setup: Optional[Callable[[], None]]) -> None:
    """Have ``setup`` called once, just before the first use of any lazy logger (or
    forget the one pending, with None). ``easycluster -S`` sets ``logging`` up so: a
    listener that is only probed never loads it, and a line logged before any other
    work still has the server's format."""
    _first_log[:] = [setup] if setup is not None else []


def run_first_log_setup() -> None:
    """Call the pending ``before_first_log`` set-up now, if it was not called yet."""
    if _first_log:
        _first_log.pop()()


class _LazyLogger:
    """Stands for ``logging.getLogger(name)``, importing ``logging`` on first use."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        if _first_log:
            run_first_log_setup()
        import logging

        return getattr(logging.getLogger(self.name), attr)


def lazy_logger(name: str) -> logging.Logger:
    """The logger ``name``, as an object that imports ``logging`` when first called (so a
    module may hold its logger without loading ``logging`` at import)."""
    return _LazyLogger(name)  # type: ignore[return-value]  # (it forwards every attribute)


log = lazy_logger("easycluster.server")
