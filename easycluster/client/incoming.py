"""A client's frames other than a lone reply: several read at once, remote output, pongs
and protocol errors (``Client._handle`` passes them here; lone replies it completes
itself, on the hot path)."""

from __future__ import annotations

from ..errors import ProtocolError
from ..objects import serialize
from ..protocol import frames
from .output import print_remote_output, report_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Sequence


class FrameHandling:
    """``Client``'s handling of a batch of frames and of the frames that are not replies."""

    # (set by Client; declared here for the type checker)
    _proxies: Any
    peername: str
    remote_output: Any
    _complete: Callable[[memoryview, Sequence[memoryview]], None]

    def _handle_many(self, got: List[frames.Frame]) -> None:
        """Every frame of ``got`` is handled even if one raises (a Ctrl-C while output
        prints, a protocol error): the replies after it were read, and nobody would read
        them again. The first exception is raised after."""
        saved = serialize.use_refs(self._proxies)  # once for all the replies read here
        first: Optional[BaseException] = None
        try:
            for f in got:
                try:
                    if f.type == frames.FT_BATCH:
                        for ftype, body in frames.batch_items(f):
                            try:
                                if ftype == frames.FT_RESPONSE:
                                    self._complete(body, ())
                                else:
                                    self._notice(ftype, body)
                            except BaseException as e:
                                first = first or e
                    elif f.type == frames.FT_RESPONSE:
                        self._complete(*f.parts())
                    else:
                        self._notice(f.type, f.parts()[0])
                except BaseException as e:
                    first = first or e
        finally:
            serialize.use_refs(saved)
        if first is not None:
            raise first

    def _notice(self, ftype: int, body: memoryview) -> None:
        """A frame other than a reply: remote output is printed, a pong is a sign of
        life, the rest protocol errors."""
        if ftype == frames.FT_OUTPUT:
            if len(body) < 1 or body[0] not in (1, 2):
                raise ProtocolError(f"malformed output frame from {self.peername}")
            stream = "stdout" if body[0] == 1 else "stderr"
            text = bytes(body[1:]).decode("utf-8", "replace")
            sink = self.remote_output
            try:
                (sink if callable(sink) else print_remote_output)(self.peername, stream, text)
            except Exception:  # (a broken sink must not cost a reply read with it)
                report_error(f"the remote output of {self.peername}")
            return
        if ftype == frames.FT_ERROR:
            text = bytes(body).decode("utf-8", "replace")
            raise ProtocolError(f"{self.peername} reported a protocol error: {text}")
        if ftype != frames.FT_PONG:
            raise ProtocolError(f"unexpected frame type {ftype} from {self.peername}")
