"""Whether a stream is a terminal, whether to colour it, and the colours we use.

The decision (``color_enabled``) takes the stream and the environment as arguments, so a
test passes both in and nothing reads globals:

======== =====================================================================
when     colour is used
======== =====================================================================
never    never
always   always (an explicit choice beats ``NO_COLOR``, as no-color.org asks)
auto     when ``NO_COLOR`` is unset or empty, and either ``CLICOLOR_FORCE`` is
         set to something other than ``0`` or the stream is a terminal whose
         ``TERM`` is not ``dumb``
======== =====================================================================

A ``Palette`` wraps text in ANSI escapes for each role (headers, labels, removed and
added diff lines, failures); ``Palette.plain()`` leaves text alone, so display code
never asks "colour or not?" itself.
"""

from __future__ import annotations

from typing import IO, Any, Literal, Mapping, NamedTuple

from .colorchoice import COLOR_CHOICES

__all__ = ["COLOR_CHOICES", "Role", "is_terminal", "color_enabled", "Palette", "palette_for"]

Role = Literal["header", "label", "removed", "added", "failure"]


def is_terminal(stream: IO[Any]) -> bool:
    """True when ``stream`` is open on a terminal (False for closed or fake streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def color_enabled(stream: IO[Any], environ: Mapping[str, str], when: str = "auto") -> bool:
    """Whether to colour what goes to ``stream`` (the table in the module docstring).
    ``when`` is one of ``COLOR_CHOICES``; anything else raises ValueError."""
    if when not in COLOR_CHOICES:
        raise ValueError(f"colour choice must be one of {', '.join(COLOR_CHOICES)}: {when!r}")
    if when != "auto":
        return when == "always"
    if environ.get("NO_COLOR", ""):
        return False
    if environ.get("CLICOLOR_FORCE", "0") not in ("", "0"):
        return True
    return is_terminal(stream) and environ.get("TERM", "") != "dumb"


class Palette(NamedTuple):
    """ANSI sequences per role; empty strings mean no colour. (NamedTuples, not
    dataclasses, in the display modules: `easycluster gather` starts without importing
    dataclasses and inspect.)"""

    header: str = ""
    label: str = ""
    removed: str = ""
    added: str = ""
    failure: str = ""
    reset: str = ""

    @classmethod
    def plain(cls) -> Palette:
        return cls()

    @classmethod
    def ansi(cls) -> Palette:
        return cls(
            header="\x1b[34m",  # blue
            label="\x1b[36m",  # cyan
            removed="\x1b[31m",  # red
            added="\x1b[32m",  # green
            failure="\x1b[1;31m",  # bold red
            reset="\x1b[0m",
        )

    @property
    def enabled(self) -> bool:
        return bool(self.reset)

    def paint(self, role: Role, text: str) -> str:
        """``text`` in the colour of ``role`` (a field name), unchanged when plain."""
        start: str = getattr(self, role)
        return f"{start}{text}{self.reset}" if start else text

    def paint_bytes(self, role: Role, data: bytes) -> bytes:
        """``paint`` for bytes (escapes are ASCII)."""
        start: str = getattr(self, role)
        if not start:
            return data
        return start.encode("ascii") + data + self.reset.encode("ascii")


def palette_for(stream: IO[Any], environ: Mapping[str, str], when: str = "auto") -> Palette:
    """``Palette.ansi()`` when ``color_enabled``, else ``Palette.plain()``."""
    return Palette.ansi() if color_enabled(stream, environ, when) else Palette.plain()
