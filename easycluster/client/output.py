"""Remote print's default sink on the client: what server code writes to its
``sys.stdout``/``sys.stderr`` arrives as output frames (``remote/output.py`` sends
them) and is printed here."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    OutputSink = Callable[[str, str, str], None]  # (host, "stdout" or "stderr", text)


def print_remote_output(host: str, stream: str, text: str) -> None:
    """Each line as ``host: line`` on this process's stdout or stderr (as the server
    wrote it), like clush."""
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.write("".join(f"{host}: {line}\n" for line in text.splitlines()))
    out.flush()


def report_error(what: str) -> None:
    """The exception being handled, on stderr with ``what`` raised it: for an error on
    a thread that reads for others (the standby, a ThreadedClient's reader), which has
    nobody to raise it to and must go on reading."""
    import traceback

    try:
        sys.stderr.write(f"easycluster: exception in {what}:\n")
        traceback.print_exc()
    except Exception:  # (stderr itself is gone: nothing more to do)
        pass
