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
     ├── TaskTimeout (TimeoutError)      Task.resume(timeout) passed; what still ran was killed
     ├── RemoteException                 the remote code raised; ``orig`` and ``text`` say what
     ├── UnpicklableError (TypeError,    an argument or return value cannot be pickled: which
     │    pickle.PicklingError)          call, which argument, what type; keep it on the server
     ├── DefinitionsError                a define_common block failed on a server (which, where)
     ├── SystemdUnavailable              systemd is not running (or systemctl missing) for a service
     │                                   command; the message says what to do instead
     ├── OutputFileError (OSError)       a file a command writes while it runs (a farm's joblog,
     │                                   job output) could not be written; the message names it
     └── NodeSetError (ValueError)       node-set notation and group sources (= NodeSetException)
          ├── NodeSetParseError          a node set string that cannot be parsed (``part``, ``msg``)
          │    ├── NodeSetParseRangeError  a bad range inside a node set's brackets
          │    └── RangeSetParseError    a range set that cannot be parsed (and a RangeSetException)
          │         └── RangeSetPaddingError  the ends of a padded range differ in width
          ├── RangeSetException          base of the range set errors (ClusterShell's name)
          │    └── RangeSetTooLarge      an operation would list more indexes one by one than
          │                              the limit (``indexes.EXPAND_LIMIT``); counting is free
          ├── NodeSetExternalError       a group source failed while a node set was being built
          ├── GroupSourceError           a group that is unknown, or a source that failed
          │    │                         (``group_source``: the source, when known)
          │    ├── GroupSourceNoUpcall   the source has no upcall for the question (all, list)
          │    └── GroupSourceQueryFailed  an upcall command exited non-zero or could not run
          │                              (also a NodeSetExternalError)
          └── GroupResolverError         the group configuration as a whole
               ├── GroupResolverSourceError       no group source of that name
               ├── GroupResolverIllegalCharError  a group name with a character node sets reserve
               └── GroupResolverConfigError       a bad groups.conf, groups.conf.d part or YAML file

The node-set names are ClusterShell 1.10's, so ``except`` clauses of its scripts keep
working; all of them are ``NodeSetError`` here (in ClusterShell the range set, group
source and resolver errors have separate roots).

``ConnectionLost`` subclasses ``IOError`` (``OSError``) because EasyCluster 0.22 raised
``IOError`` for dead connections and scripts catch that.
"""

from __future__ import annotations

import _pickle as pickle  # the C module: pickle.py imports re and enum (~2 ms per start)

TYPE_CHECKING = False
if TYPE_CHECKING:
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


class TaskTimeout(EasyClusterError, TimeoutError):
    """``Task.resume(timeout)`` (or ``run(timeout=...)`` without a command) ran out of
    time: every command still running was killed and counts as timed out (status
    ``timeout``, as ClusterShell counts it), those not started never ran (status
    ``aborted``); the results of the others are kept. A ``TimeoutError``, as
    ClusterShell's own exception for this is."""


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


class UnpicklableError(EasyClusterError, TypeError, pickle.PicklingError):
    """An argument or a return value of a call cannot be pickled, so it cannot travel.

    ``call`` names the call (``"echo()"``, ``"method take() of <proxy ...>"``), ``what``
    the part that failed (``"args[1]"``, ``"keyword argument 'g'"``, ``"the return
    value"``; then the path inside it: ``"args[1]['k']"``, ``"the return value at
    [0]"``), ``type_name``
    its type, ``reason`` pickle's own message and ``host`` the server (set by the client
    when the server raised it). The message suggests keeping the object on the server.

    A ``TypeError`` and a ``pickle.PicklingError``: 0.22 let pickle's own error through
    (a ``TypeError`` for locks, sockets and generators, a ``PicklingError`` for a proxy
    sent to the wrong connection), so scripts catching either still do.
    """

    def __init__(self, call: str, what: str, type_name: str, reason: str, host: str = ""):
        super().__init__(call, what, type_name, reason, host)
        self.call = call
        self.what = what
        self.type_name = type_name
        self.reason = reason
        self.host = host

    @classmethod
    def of(
        cls, call: str, what: str, part: Any, error: BaseException, path: str = "", host: str = ""
    ) -> UnpicklableError:
        """The error for ``part``, found at ``path`` inside ``what`` (``args[1]``, ``"the
        return value"``...), which pickle refused with ``error``."""
        if path:  # args[1] + [0] reads as Python; elsewhere the path is said apart
            what = what + path if what.startswith("args[") else f"{what} at {path}"
        t = type(part)
        name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        return cls(call, what, name, f"{type(error).__name__}: {error}", host)

    def __str__(self) -> str:
        returned = self.what.startswith("the return value")
        if returned:
            doing = f"the return value of {self.call} cannot be sent back"
            at = self.what[len("the return value") :].strip()
            subject = f"its part {at}" if at else "it"
        else:
            doing, subject = f"cannot send the call {self.call}", self.what
        where = f"{self.host}: " if self.host else ""
        keep = (
            "return a proxy instead: make its class a ServerObject subclass (or register "
            "the type with make_server_class) so it stays on the server"
            if returned
            else "keep such an object on the server: create it there as a ServerObject "
            "(or a type registered with make_server_class) and pass its proxy"
        )
        return (
            f"{where}{doing}: {subject} is a {self.type_name}, which cannot be pickled "
            f"({self.reason}). Locks, sockets, open files, generators and the like cannot "
            f"travel; {keep} (docs/proxies.md)."
        )

    def __reduce__(self) -> Any:
        return (UnpicklableError, (self.call, self.what, self.type_name, self.reason, self.host))


class DefinitionsError(EasyClusterError):
    """A ``define_common`` block failed on a server (say an import the server's Python
    cannot do). ``block`` is the definitions module it belongs to, ``python`` the server's
    interpreter, ``text`` the remote traceback lines and ``host`` the server (set by the
    client that sent the block). The message says what to do."""

    def __init__(self, block: str, python: str, text: List[str], host: str = ""):
        super().__init__(block, python, text, host)
        self.block = block
        self.python = python
        self.text = list(text)
        self.host = host

    def __str__(self) -> str:
        where = self.host or "the server"
        return (
            f"{where}: a define_common block of {self.block!r} failed there "
            f"(Python: {self.python}):\n" + "".join(self.text).rstrip() + "\n"
            "Every define_common block runs on each server at connect time: install "
            "what it needs there, or import optional modules inside the functions that "
            "use them (or guard the import with try/except)."
        )

    def __reduce__(self) -> Any:
        return (DefinitionsError, (self.block, self.python, self.text, self.host))


class SystemdUnavailable(EasyClusterError):
    """systemd (or systemctl) is not there to do what was asked; the message says what to
    do instead."""


class OutputFileError(EasyClusterError, OSError):
    """A file written while a command runs (the farm's joblog, its job output files)
    could not be written (disk full, directory removed): the message names the file
    and says why. Raised so the run can stop cleanly, its running work killed."""


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


class NodeSetParseRangeError(NodeSetParseError):
    """A bad range inside a node set's brackets (``n[5-3]``, ``n[01-100]``)."""

    def __reduce__(self) -> Any:
        return (NodeSetParseRangeError, (self.part, self.msg))


class RangeSetException(NodeSetError):
    """Base of the range set errors (ClusterShell's name)."""


class RangeSetTooLarge(RangeSetException):
    """An operation would list more indexes (or nodes) one by one than the limit allows.

    ``count`` is how many it would have listed, ``limit`` the limit. Counting and
    folding a range never lists it; set algebra on plain ranges does not either.
    """

    def __init__(self, count: int, limit: int):
        super().__init__(
            f"range too large: {count} indexes would be listed one by one (the limit is {limit})"
        )
        self.count = count
        self.limit = limit

    def __reduce__(self) -> Any:
        return (RangeSetTooLarge, (self.count, self.limit))


class RangeSetParseError(NodeSetParseError, RangeSetException):
    """A range set string that cannot be parsed (``RangeSet("5-3")``); ``part``, ``msg``."""

    def __reduce__(self) -> Any:
        return (type(self), (self.part, self.msg))


class RangeSetPaddingError(RangeSetParseError):
    """The two ends of a padded range have different widths (``01-100``)."""


class NodeSetExternalError(NodeSetError):
    """A group source failed while a node set was being built or regrouped."""


class GroupSourceError(NodeSetError):
    """A node group that is unknown, or a group source whose command failed.

    ``group_source`` is the source involved (an object with a ``name``), or None.
    """

    def __init__(self, message: str, group_source: Any = None):
        super().__init__(message)
        self.group_source = group_source

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.group_source))


class GroupSourceNoUpcall(GroupSourceError):
    """The group source has no upcall to answer this question (``all``, ``list``)."""


class GroupSourceQueryFailed(GroupSourceError, NodeSetExternalError):
    """A group source's upcall command exited non-zero or could not be run.

    Also a ``NodeSetExternalError``: that is what ClusterShell scripts catch when a
    node set's group cannot be resolved.
    """


class GroupResolverError(NodeSetError):
    """Base of the errors of the group configuration as a whole."""


class GroupResolverSourceError(GroupResolverError):
    """No group source of that name (the message is the name, as in ClusterShell)."""


class GroupResolverIllegalCharError(GroupResolverError):
    """A group name holds a character that node sets reserve (``@ , ! & ^ *``)."""


class GroupResolverConfigError(GroupResolverError):
    """A bad groups.conf, groups.conf.d part or YAML group file; the message names it."""


# ClusterShell's root of the node set errors; here it is NodeSetError itself.
NodeSetException = NodeSetError
