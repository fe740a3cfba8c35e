"""The progress line (cluster/progress.py) and the colour decision (cluster/terminal.py).

Streams are in-memory; ``TtyStream`` is a StringIO that says it is a terminal (a fake,
since a test cannot count on a real terminal; ``test_a_real_pty_is_a_terminal`` checks
``is_terminal`` against a real pseudo-terminal)."""

from __future__ import annotations

import io
import os
import pty

import pytest

from easycluster.cluster.progress import Progress, progress_text
from easycluster.cluster.terminal import Palette, color_enabled, is_terminal, palette_for

pytestmark = pytest.mark.timeout(30)


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text():
    assert progress_text(3, 10, 1) == "3/10, 1 failed"


def test_nothing_is_written_when_not_a_terminal():
    stream = io.StringIO()
    p = Progress(stream, 5, {})
    p.update(1, 0)
    p.update(2, 1)
    p.clear()
    p.redraw()
    with p.paused():
        pass
    assert stream.getvalue() == "" and not p.enabled and not p.visible


def test_line_is_drawn_in_place_and_cleared():
    stream = TtyStream()
    p = Progress(stream, 12, {"NO_COLOR": "1"}, prefix="shell: ")
    p.update(9, 0)
    p.update(10, 0)
    assert stream.getvalue() == "\rshell: 9/12, 0 failed\rshell: 10/12, 0 failed"
    assert p.visible
    p.clear()
    assert stream.getvalue().endswith("\r" + " " * len("shell: 10/12, 0 failed") + "\r")
    assert not p.visible
    before = stream.getvalue()
    p.clear()  # a second clear writes nothing
    assert stream.getvalue() == before


def test_shorter_line_covers_the_longer_one():
    stream = TtyStream()
    p = Progress(stream, 100, {"NO_COLOR": "1"})
    p.update(99, 10)
    stream.seek(0)
    stream.truncate()
    p.update(100, 9)  # "100/100, 9 failed" is as long as "99/100, 10 failed"
    p.update(1, 0)
    assert stream.getvalue().endswith("\r1/100, 0 failed" + " " * 2)


def test_paused_clears_then_redraws():
    stream = TtyStream()
    p = Progress(stream, 2, {"NO_COLOR": "1"})
    p.update(1, 0)
    with p.paused():
        assert not p.visible
        stream.write("OUTPUT\n")
    assert p.visible
    assert stream.getvalue() == "\r1/2, 0 failed\r" + " " * 13 + "\rOUTPUT\n\r1/2, 0 failed"
    quiet = TtyStream()
    q = Progress(quiet, 2, {})
    with q.paused():  # nothing drawn yet: nothing to clear or redraw
        quiet.write("x")
    assert quiet.getvalue() == "x"


def test_failures_in_colour_on_a_terminal_only():
    stream = TtyStream()
    Progress(stream, 3, {"TERM": "xterm"}).update(2, 1)
    assert stream.getvalue() == "\r2/3, \x1b[1;31m1 failed\x1b[0m"
    plain = TtyStream()
    Progress(plain, 3, {"TERM": "xterm", "NO_COLOR": "x"}).update(2, 1)
    assert plain.getvalue() == "\r2/3, 1 failed"
    none = TtyStream()
    Progress(none, 3, {"TERM": "xterm"}).update(2, 0)
    assert "\x1b" not in none.getvalue()


def test_forced_on_and_off():
    forced = io.StringIO()
    p = Progress(forced, 1, {}, enabled=True, color="never")
    p.update(1, 1)
    assert forced.getvalue() == "\r1/1, 1 failed"
    off = TtyStream()
    Progress(off, 1, {}, enabled=False).update(1, 0)
    assert off.getvalue() == ""


COLOUR_TABLE = [
    # tty, environ, when, expected
    (True, {}, "auto", True),
    (False, {}, "auto", False),
    (True, {"NO_COLOR": "1"}, "auto", False),
    (True, {"NO_COLOR": ""}, "auto", True),  # empty means unset (no-color.org)
    (True, {"TERM": "dumb"}, "auto", False),
    (False, {"CLICOLOR_FORCE": "1"}, "auto", True),
    (False, {"CLICOLOR_FORCE": "0"}, "auto", False),
    (True, {"NO_COLOR": "1", "CLICOLOR_FORCE": "1"}, "auto", False),
    (False, {"NO_COLOR": "1"}, "always", True),
    (True, {}, "never", False),
]


@pytest.mark.parametrize("tty,environ,when,expected", COLOUR_TABLE)
def test_colour_decision(tty, environ, when, expected):
    stream = TtyStream() if tty else io.StringIO()
    assert color_enabled(stream, environ, when) is expected
    assert palette_for(stream, environ, when).enabled is expected


def test_bad_colour_choice():
    with pytest.raises(ValueError, match="colour choice"):
        color_enabled(io.StringIO(), {}, "sometimes")


def test_is_terminal_on_odd_streams():
    closed = io.StringIO()
    closed.close()
    assert is_terminal(closed) is False
    assert is_terminal(object()) is False  # type: ignore[arg-type]


def test_a_real_pty_is_a_terminal():
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            assert is_terminal(tty)
        r, w = os.pipe()
        with os.fdopen(r, "rb") as reader, os.fdopen(w, "wb") as writer:
            assert not is_terminal(reader) and not is_terminal(writer)
    finally:
        os.close(leader)
        os.close(follower)


def test_palette_paints_only_when_enabled():
    assert Palette.plain().paint("header", "x") == "x"
    assert Palette.ansi().paint("header", "x") == "\x1b[34mx\x1b[0m"
    assert Palette.ansi().paint_bytes("label", b"n1:") == b"\x1b[36mn1:\x1b[0m"
