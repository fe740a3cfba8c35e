"""Remote ``print``: what code on a server writes to ``sys.stdout``/``sys.stderr`` goes to
the client over the connection (FT_OUTPUT frames), the same way on every transport.

The client asks for it in its hello (``Client(remote_output=...)``, on by default) and
prints each line prefixed with the host, like clush. Text travels as whole lines as
soon as a line is complete; a partial line waits for its newline, a ``flush()``, the
next reply from this connection (so it arrives before that reply), or the end of the
process. Partial lines are kept per thread, so threads printing at once never split
each other's lines. Frames are posted in the order written, behind anything posted before them, so
a call's output always reaches the client before the call's reply.

Only Python-level writes are forwarded: output written to file descriptors 1 and 2
directly (C extensions, child processes, ``os.system``) goes where the server's
descriptors point, as before (``fileno()`` returns them): the master's terminal for a
local server, the client's stderr over ssh, the log of ``easycluster -S``.
"""

from __future__ import annotations

import io
import sys
import threading

from ..errors import ConnectionLost
from ..protocol import frames

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional

    Post = Callable[[bytes], None]

STDOUT, STDERR = 1, 2
_PARTIAL_MAX = 1 << 16  # a partial line this long goes out without waiting for its end


class RemoteOutput(io.TextIOBase):
    """A text stream whose complete lines are posted to the client (see the module)."""

    def __init__(self, post: Post, stream: int, original: Any) -> None:
        super().__init__()
        self._post = post
        self._tag = bytes((stream,))
        self._original = original  # for fileno(): where descriptor-level output goes
        self._lock = threading.Lock()
        self._partial: Dict[int, str] = {}  # by thread: text after its last newline
        self.pending = False  # a partial line waits (checked before every reply)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> Optional[str]:  # type: ignore[override]
        return "replace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return int(self._original.fileno())

    @property
    def buffer(self) -> _BinaryOutput:
        """Bytes written here are decoded (utf-8, replacing) and forwarded as text."""
        return _BinaryOutput(self)

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if not s:
            return 0
        me = threading.get_ident()
        with self._lock:
            # A partial line per thread: print() writes its text and its newline in two
            # calls, and another thread's line must not land between them.
            text = self._partial.pop(me, "") + s
            end = text.rfind("\n") + 1
            if end < len(text):
                rest = text[end:]
                if len(rest) < _PARTIAL_MAX:
                    self._partial[me] = rest
                    text = text[:end]
            self.pending = bool(self._partial)
            if text:
                self._send(text)  # under the lock: frames leave in the order written
        return len(s)

    def flush(self) -> None:
        """Send the partial lines now (a later write continues them on a new line there)."""
        if self.pending:
            with self._lock:
                parts, self._partial, self.pending = self._partial, {}, False
                for text in parts.values():
                    self._send(text)

    def _send(self, text: str) -> None:
        try:
            self._post(self._tag + text.encode("utf-8", "replace"))
        except ConnectionLost:
            pass  # the client is gone: nobody to print for


class _BinaryOutput:
    """``sys.stdout.buffer`` of a ``RemoteOutput``."""

    def __init__(self, text: RemoteOutput) -> None:
        self._text = text

    def write(self, b: bytes) -> int:
        self._text.write(bytes(b).decode("utf-8", "replace"))
        return len(b)

    def flush(self) -> None:
        self._text.flush()


class Forwarding:
    """The two streams of one connection once installed; ``flush_partial()`` before a
    reply sends the partial lines written so far, so they arrive before it."""

    def __init__(self, out: RemoteOutput, err: RemoteOutput, saved: Any = (None, None)) -> None:
        self.out = out
        self.err = err
        self.saved = saved  # (sys.stdout, sys.stderr) before install

    def flush_partial(self) -> None:
        self.out.flush()
        self.err.flush()

    def uninstall(self) -> None:
        """The connection ended: send what is left if the client is still there, and
        give ``sys.stdout``/``sys.stderr`` back (a server that goes on, like 0.22's
        ``Server.run()`` loop, prints to its own streams again)."""
        self.flush_partial()
        if sys.stdout is self.out and self.saved[0] is not None:
            sys.stdout = self.saved[0]
        if sys.stderr is self.err and self.saved[1] is not None:
            sys.stderr = self.saved[1]


def install(channel: Any) -> Forwarding:
    """Make ``sys.stdout`` and ``sys.stderr`` forward to the client of ``channel`` (a
    ``transport.channel.Channel``). The log keeps the stream it was given at start."""

    def post(body: bytes) -> None:
        channel.send_message(frames.FT_OUTPUT, b"", body, (), flush=False)

    sys.stdout.flush()
    sys.stderr.flush()
    fwd = Forwarding(
        RemoteOutput(post, STDOUT, sys.__stdout__ or sys.stdout),
        RemoteOutput(post, STDERR, sys.__stderr__ or sys.stderr),
        (sys.stdout, sys.stderr),
    )
    sys.stdout, sys.stderr = fwd.out, fwd.err
    return fwd


def flush_output() -> None:
    """Flush stdout and stderr before the process ends with ``os._exit``."""
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass
