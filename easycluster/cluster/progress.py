"""The progress line: ``done/total, N failed`` kept on one line of stderr.

Only on a terminal: when the stream is not one (a file, a pipe, a CI log) every method
does nothing, so a caller never asks. The line is drawn with a carriage return and
redrawn in place; anything else written to the same terminal must come after
``clear()`` (``paused()`` clears, then draws the line again), so the line never mixes
with output. Colour (the failure count in red) follows ``terminal.color_enabled``,
with the stream and the environment passed in.

Pure apart from writing to the stream it is given: no clock (a caller that wants
fewer redraws calls ``update`` less often) and no globals.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import IO, Iterator, Mapping, Optional, Tuple

from .terminal import Palette, is_terminal, palette_for

__all__ = ["Progress", "progress_text"]


def progress_text(done: int, total: int, failed: int) -> str:
    """``done/total, N failed``: the line's text without colour or prefix."""
    return f"{done}/{total}, {failed} failed"


class Progress:
    """A progress line on ``stream`` for ``total`` keys.

    ``enabled`` defaults to whether ``stream`` is a terminal; ``color`` is ``auto``,
    ``always`` or ``never`` (``terminal.color_enabled``). ``prefix`` comes before the
    counts (``"easycluster shell: "``).
    """

    __slots__ = ("_stream", "total", "enabled", "_palette", "_prefix", "_shown", "_state")

    def __init__(
        self,
        stream: IO[str],
        total: int,
        environ: Mapping[str, str],
        prefix: str = "",
        enabled: Optional[bool] = None,
        color: str = "auto",
    ) -> None:
        self._stream = stream
        self.total = total
        self.enabled = is_terminal(stream) if enabled is None else enabled
        self._palette = palette_for(stream, environ, color) if self.enabled else Palette.plain()
        self._prefix = prefix
        self._shown = 0  # visible width of what is on the line now (0: nothing)
        self._state: Optional[Tuple[int, int]] = None

    @property
    def visible(self) -> bool:
        """True while the line is drawn (between ``update`` and ``clear``)."""
        return self._shown > 0

    def update(self, done: int, failed: int) -> None:
        """Draw ``done/total, failed failed`` in place of the previous line."""
        self._state = (done, failed)
        if not self.enabled:
            return
        text = self._prefix + progress_text(done, self.total, failed)
        # pad with spaces over a longer previous line; colour adds no visible width
        pad = " " * max(0, self._shown - len(text))
        shown = text
        if failed:
            count = f"{failed} failed"
            shown = text[: -len(count)] + self._palette.paint("failure", count)
        self._stream.write("\r" + shown + pad)
        self._stream.flush()
        self._shown = len(text)

    def clear(self) -> None:
        """Remove the line (write other output after this); nothing if not drawn."""
        if not self._shown:
            return
        self._stream.write("\r" + " " * self._shown + "\r")
        self._stream.flush()
        self._shown = 0

    def redraw(self) -> None:
        """Draw the last counts again (after ``clear``); nothing before any update."""
        if self._state is not None:
            self.update(*self._state)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """``with progress.paused(): print(...)``: clear, write, draw again."""
        was_visible = self.visible
        self.clear()
        try:
            yield
        finally:
            if was_visible:
                self.redraw()
