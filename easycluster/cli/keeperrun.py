"""One request's run in the keeper's process (``keeperd.py``): the process state a
command takes from its client (descriptors 0, 1, 2 and ``sys.std*``, working directory,
environment, umask) is the whole process's, so it is put on for the run and taken off
after it, whatever the run did."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Dict, List

from .exitcodes import FAILURE


def run_as_client(head: Dict[str, Any], fds: List[int], body: Callable[[], int]) -> int:
    """Return ``body()`` run as the client of request ``head`` would have run it: with
    descriptors ``fds`` as stdin, stdout and stderr (fresh ``sys.std*`` objects: no
    buffered byte of one client reaches another), and the client's working directory
    (``head["cwd"]``), whole environment (``head["env"]``) and umask (``head["umask"]``).
    All of these are the keeper's again on return, its directory ``/``. A directory the
    keeper cannot enter is said on the client's stderr and gives 1, ``body`` not run."""
    saved_fds = [os.dup(fd) for fd in (0, 1, 2)]
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    saved_env = dict(os.environ)
    saved_umask = os.umask(head["umask"])
    made: List[Any] = []
    try:
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        made = _streams(saved_streams)
        sys.stdin, sys.stdout, sys.stderr = made
        os.environ.clear()
        os.environ.update(head["env"])
        try:
            os.chdir(head["cwd"])
        except OSError as e:
            print(f"easycluster shell: cannot enter {head['cwd']}: {e.strerror}", file=sys.stderr)
            return FAILURE
        return body()
    finally:
        for stream in made[::-1]:
            try:  # (closed while still on this client's descriptors: what a failed
                stream.close()  # flush left behind can never reach another's)
            except (OSError, ValueError):
                pass
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        for target, fd in zip((0, 1, 2), saved_fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(saved_env)
        os.umask(saved_umask)
        os.chdir("/")


def _streams(like: Any) -> Any:
    """New text streams on descriptors 0, 1, 2, with the encodings of ``like``'s."""
    made = []
    for fd, old, mode in zip((0, 1, 2), like, ("r", "w", "w")):
        made.append(
            open(
                fd,
                mode,
                encoding=old.encoding,
                errors=old.errors,
                closefd=False,
                buffering=1 if mode == "w" and (fd == 2 or os.isatty(fd)) else -1,
            )
        )
    return made
