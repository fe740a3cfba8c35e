"""``KillSwitch``: ends a connection's local process (the ``ssh`` of ``ssh.py``) from
another thread, at once, whether the connection is still being made or open.

The launcher that makes the connection gives the switch its process (``hold``) as soon
as it runs; the thread that may have to give up (the cluster layer's RPC backend, on a
command timeout or Ctrl-C) throws it. A switch thrown before ``hold`` ends the process
as ``hold`` takes it, so no order of the two leaves a process running.
"""

from __future__ import annotations

import threading

from ..errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Protocol

    class Held(Protocol):
        """What a launcher gives the switch: ``kill(only_connecting)`` ends the process
        at once (never blocking, never signalling a process that was reaped), or, with
        ``only_connecting``, only while the connection is not made yet."""

        def kill(self, only_connecting: bool) -> None: ...


class KillSwitch:
    """Ends the process of one connection from another thread: give it to
    ``ssh.open_channel(switch=...)``.

    ``abandon()`` gives the connection up if it is still being made: its process is
    killed and ``open_channel`` raises ``ConnectError`` ("given up"); once the
    connection is open it does nothing. ``kill()`` kills the process whatever the
    state: an open connection then ends as if ssh had died (its calls fail with
    ``ConnectionLost``). Both return at once. Thread-safe; one switch serves one
    connection.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: Optional[Held] = None
        self._thrown: Optional[bool] = None  # None; False: abandon(); True: kill()

    def abandon(self) -> None:
        """Give up the connection if it is not open yet (see the class docstring)."""
        self._throw(only_connecting=True)

    def kill(self) -> None:
        """Kill the connection's process now, connecting or open (class docstring)."""
        self._throw(only_connecting=False)

    @property
    def thrown(self) -> bool:
        """True once ``abandon`` or ``kill`` was called."""
        return self._thrown is not None

    def _throw(self, only_connecting: bool) -> None:
        with self._lock:
            if not self._thrown:
                self._thrown = not only_connecting
            held = self._held
        if held is not None:
            held.kill(only_connecting)

    def hold(self, held: Held) -> None:
        """(The launcher's) Take ``held`` as what this switch ends; if the switch was
        thrown already, end it now. ConfigError for a switch that holds one already."""
        with self._lock:
            if self._held is not None:
                raise ConfigError("a KillSwitch serves one connection")
            self._held = held
            thrown = self._thrown
        if thrown is not None:
            held.kill(only_connecting=not thrown)


__all__ = ["KillSwitch"]
