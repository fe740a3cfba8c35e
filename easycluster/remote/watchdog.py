"""The RPC backend's watchdog: a small ``sh`` loop, in a session of its own, reading the
process groups of our commands from a pipe only this process holds; when this process
dies (even by SIGKILL) the pipe closes and it kills every group still announced.
``commands.py`` announces and withdraws its commands' groups."""

from __future__ import annotations

import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Callable, List, Optional

WATCHDOG = r"""pgs=
while read -r op pg; do
  case $op in
  +) pgs="$pgs $pg" ;;
  -) left=; for p in $pgs; do [ "$p" = "$pg" ] || left="$left $p"; done; pgs=$left ;;
  esac
done
for p in $pgs; do kill -9 -"$p"; done 2>/dev/null
"""


class Watchdog:
    """The process that kills our commands' groups if this process dies (see
    ``commands.py``). ``announce`` and ``withdraw`` never raise: a watchdog that died is
    started again with the groups still running."""

    def __init__(self, watched: Callable[[], List[int]]):
        self.watched = watched  # the groups announced so far (told to a new watchdog)
        self.fd: Optional[int] = None
        self.proc: Optional[subprocess.Popen[bytes]] = None  # (kept: never collected running)
        self.lock = threading.Lock()

    def announce(self, pgid: int) -> None:
        self._send(b"+ %d\n" % pgid, pgid)

    def withdraw(self, pgid: int) -> None:
        self._send(b"- %d\n" % pgid, None)

    def close(self) -> None:
        """Let the watchdog go (it kills what is still announced, then exits)."""
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None

    def _send(self, line: bytes, pgid: Optional[int]) -> None:
        with self.lock:
            if self.fd is not None:
                try:
                    os.write(self.fd, line)  # (one short line: atomic on a pipe)
                    return
                except OSError:  # it died (killed by someone): start another one
                    os.close(self.fd)
                    self.fd = None
            if pgid is not None:
                self._start(pgid)

    def _start(self, pgid: int) -> None:
        """Start a watchdog told about ``pgid`` and every command still announced."""
        import subprocess

        if self.proc is not None:
            self.proc.poll()  # (reap the one that died)
        r, w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", WATCHDOG],
                stdin=r,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
            groups = [pgid] + self.watched()
            os.write(w, b"".join(b"+ %d\n" % g for g in groups))
        except OSError:  # (no watchdog: the commands are not protected, but they run)
            os.close(w)
            return
        finally:
            os.close(r)
        self.fd = w
