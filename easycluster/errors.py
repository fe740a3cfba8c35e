"""The one exception tree of EasyCluster.

::

    EasyClusterError
     ├── ConfigError (ValueError)        bad input found before anything was sent
     │    ├── KeyFileError               missing, empty, unreadable or loosely permitted key file
     │    └── SpecError                  malformed connection spec or option
     ├── ConnectionLost (IOError)        the connection is gone; every pending call fails with it
     │    ├── ConnectError               could not reach or start the server (refused, timeout, ...)
     │    ├── AuthenticationError        the handshake failed: one side does not hold the key
     │    └── ProtocolError              a frame broke the protocol; the connection was closed
     │         ├── IntegrityError        bad MAC, wrong direction or sequence (tampered, replayed,
     │         │                         reordered, reflected) or a truncated frame
     │         └── FrameTooLarge         a header announced more bytes than the limit allows
     ├── CallTimeout (TimeoutError)      no reply in time; the call may still run remotely
     ├── RemoteException                 the remote code raised; ``orig`` and ``text`` say what
 ├── SystemdUnavailable              systemd is not running (or systemctl missing) for a service
 │                                   command; the message says what to do instead
     └── NodeSetError (ValueError)       node-set notation and group sources
          ├── NodeSetParseError          a node set string that cannot be parsed
          └── GroupSourceError           a group source that is missing or failed

``ConnectionLost`` subclasses ``IOError`` (``OSError``) because EasyCluster 0.22 raised
``IOError`` for dead connections and scripts catch that.
"""

from __future__ import annotations

from typing import Any, List, Optional


class EasyClusterError(Exception):
    """Base of every error EasyCluster raises on purpose."""


class ConfigError(EasyClusterError, ValueError):
    """Bad input detected before anything was sent (options, specs, key files)."""


class KeyFileError(ConfigError):
    """A key file that is missing, empty, unreadable or readable by others."""


class SpecError(ConfigError):
    """A malformed connection spec; the message names the offending part."""


class ConnectionLost(EasyClusterError, IOError):
    """The connection is closed or broke; pending and later calls fail with this.

    A call that fails with ``ConnectionLost`` after it was sent has an unknown
    outcome: it may or may not have run on the server. It is never retried.
    """


class ConnectError(ConnectionLost):
    """The server could not be reached or started (refused, unreachable, timed out)."""


class AuthenticationError(ConnectionLost):
    """The handshake failed: one side could not prove it holds the shared key."""


class ProtocolError(ConnectionLost):
    """The peer sent something the protocol forbids; the connection was closed."""


class IntegrityError(ProtocolError):
    """A frame failed authentication: altered, replayed, reordered, reflected or truncated."""


class FrameTooLarge(ProtocolError):
    """A frame header announced a length above the configured limit."""


class CallTimeout(EasyClusterError, TimeoutError):
    """No reply arrived within the call's timeout.

    The outcome is unknown: the call may still be running, or may have run, on the
    server. EasyCluster never retries it silently.
    """


class RemoteException(EasyClusterError):
    """An exception raised by remote code.

    ``orig`` is the original exception (or ``None`` when it could not be sent) and
    ``text`` the list of traceback lines formatted on the server.
    """

    def __init__(self, orig: Optional[BaseException] = None, text: Optional[List[str]] = None):
        super().__init__(orig, text)
        self.orig = orig
        self.text = list(text or [])

    def __str__(self) -> str:
        if self.text:
            return "remote traceback:\n" + "".join(self.text).rstrip()
        return repr(self.orig)

    def __reduce__(self) -> Any:
        return (RemoteException, (self.orig, self.text))


class SystemdUnavailable(EasyClusterError):
    """systemd (or systemctl) is not there to do what was asked; the message says what to
    do instead."""


class NodeSetError(EasyClusterError, ValueError):
    """Base of node-set errors."""


class NodeSetParseError(NodeSetError):
    """A node set string that cannot be parsed; ``part`` is the piece that failed."""

    def __init__(self, part: str, msg: str):
        super().__init__(f"{msg}: {part!r}")
        self.part = part
        self.msg = msg

    def __reduce__(self) -> Any:
        return (NodeSetParseError, (self.part, self.msg))


class GroupSourceError(NodeSetError):
    """A node group source that is unknown, misconfigured, or whose command failed."""
