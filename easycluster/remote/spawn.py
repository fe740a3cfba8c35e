"""Commands started with ``os.posix_spawn``, for ``commands.py``: what Popen does for it,
with a tenth of the Python per command.

A short command's cost to its server is mostly interpreting (a thread switch or a cache
refill per wake-up, then Python), and ``subprocess.Popen`` runs some 260 lines per start
(``os.environ`` given to ``posix_spawn`` as is would cost 400 more: it is iterated in
Python; its own dict of bytes is read in C). ``spawn_sh`` starts ``/bin/sh -c`` in a
session of its own, stdin from /dev/null, stdout and stderr on pipes (or both on one),
with SIGPIPE and SIGXFSZ at their defaults (Python ignores them; Popen's
``restore_signals``). A command given stdin is Popen's (``commands.py``).

Descriptors: ``posix_spawn`` closes none as Popen's ``close_fds`` does. Python makes its
own close-on-exec (PEP 446), and the first start makes those this process inherited so
(``seal_inherited``), so a command gets its three streams only; one made inheritable on
purpose later (a call's ``os.set_inheritable``) would reach the commands too.
"""

from __future__ import annotations

import _signal  # (the C module: signal.py's enums cost every server's start-up)
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Mapping, Optional, Tuple


class Spawned:
    """A command started with ``os.posix_spawn``: what ``Running`` uses of a ``Popen``
    (``pid``, ``returncode``, ``wait``; no stdin)."""

    __slots__ = ("pid", "returncode")
    stdin = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None

    def wait(self) -> int:
        """Reap it (blocking); its return code, -N if killed by signal N (as Popen)."""
        if self.returncode is None:
            try:
                status = os.waitpid(self.pid, 0)[1]
            except ChildProcessError:  # (reaped by someone else: as Popen, 0)
                self.returncode = 0
            else:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


# Signals Python ignores and a command must not inherit ignored (as Popen's
# restore_signals): a shell pipeline's writer must die of SIGPIPE.
_SIGDEF = tuple(getattr(_signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(_signal, n))
_SPAWN: List[Optional[bool]] = [None]  # posix_spawn usable here (None: not known yet)


def spawn_sh(command: str, stderr: bool) -> Optional[Tuple[Spawned, int, Optional[int]]]:
    """Start ``/bin/sh -c command`` (module docstring): ``(process, stdout's read end,
    stderr's read end or None if merged into stdout)``, or None where ``posix_spawn``
    cannot do it here (then Popen must). Raises OSError when the shell cannot start."""
    if _SPAWN[0] is None:
        _SPAWN[0] = hasattr(os, "posix_spawn") and seal_inherited()
    if not _SPAWN[0]:
        return None
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe() if stderr else (out_r, out_w)
    pid = None
    try:
        # (a stream of ours was closed, so a pipe got its number: a dup2 onto itself
        # would leave it close-on-exec; Popen copes with that, and it never happens)
        if min(out_r, out_w, err_r, err_w) >= 3:
            pid = os.posix_spawn(
                "/bin/sh",
                ["/bin/sh", "-c", command],
                environment(),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                setsid=True,
                setsigdef=_SIGDEF,
            )
    except NotImplementedError:  # (no POSIX_SPAWN_SETSID here)
        _SPAWN[0] = False
    finally:
        for fd in {out_w, err_w} if pid is not None else {out_r, out_w, err_r, err_w}:
            os.close(fd)
    if pid is None:
        return None
    return Spawned(pid), out_r, err_r if stderr else None


def seal_inherited() -> bool:
    """Make every descriptor above 2 close-on-exec; False if they cannot be listed."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            fds = [int(n) for n in os.listdir(folder)]
        except (OSError, ValueError):
            continue
        for fd in fds:
            if fd > 2:
                try:
                    if os.get_inheritable(fd):
                        os.set_inheritable(fd, False)
                except OSError:  # (the listing's own descriptor, closed by now)
                    pass
        return True
    return False


def environment() -> Mapping[Any, Any]:
    """The environment for a command: ``os.environ``'s own dict of bytes where there is
    one (``posix_spawn`` reads a dict in C; ``os.environ`` itself it iterates in Python,
    decoding every variable: 400 lines of Python per command), else ``os.environ``."""
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else os.environ


__all__ = ["Spawned", "spawn_sh", "seal_inherited", "environment"]
