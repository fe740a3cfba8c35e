"""The options of a tree-mode run (``options``: plain data that travels to every
gateway), the part shared by the sessions of calls and of the executor
(``gateway_options``), and the timings every level keeps (``treerun.py`` runs with
them)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

DELAY = 0.25  # s between two batches a gateway sends up while output comes
HEARTBEAT = 1.0  # s a gateway's read waits at most when nothing comes (then: empty batch)
SILENCE = 30.0  # s without any reply after which a gateway is taken as hung (default)
KILL_GRACE = 5.0  # s a killed gateway has to report its end before it is closed
RAW_SEND = 1 << 20  # bytes of rcopy data pending that make a batch go at once
RAW_LIMIT = 16 << 20  # bytes of rcopy data pending that hold the nodes back (memory bound)


def check_silence(silence: float) -> None:
    """ValueError unless ``silence`` (seconds a gateway may say nothing before it is taken
    as hung) is more than the ``HEARTBEAT`` it answers at."""
    if not silence > HEARTBEAT:
        raise ValueError(f"silence must be more than {HEARTBEAT:g} s (the heartbeat)")


def options(
    ssh_options: Sequence[str] = (),
    timeout: Optional[float] = None,
    connect_timeout: float = 10.0,
    fanout: int = 64,
    rpython: Optional[str] = None,
    stderr: bool = True,
    delay: float = DELAY,
    silence: float = SILENCE,
    stdin: bool = False,
    spool: bool = False,
    raw: bool = False,
) -> Dict[str, Any]:
    """The options of a run, as plain data (they travel to every gateway):
    ``ssh_options`` for every ssh at every level (files they name must exist on the
    gateways too), ``timeout`` per node (None: none), ``connect_timeout``, ``fanout``
    (ssh commands at once per host), ``rpython`` (the Python gateways start with),
    ``stderr`` (False: merged into stdout), ``delay`` (grooming period), ``silence``
    (seconds a gateway may say nothing, its heartbeats included, before it is taken as
    hung and its targets failed over or lost; more than ``HEARTBEAT``), ``stdin``
    (the command reads a stream given with ``TreeRun.feed``: ``treestdin.py``), ``spool``
    (that stream is a copy's: every level keeps it in a file, ``treespool.py``), ``raw``
    (the nodes' stdout is an rcopy's data: sent up as it comes, not as lines, at most
    ``RAW_LIMIT`` bytes pending per host; a rerouted node's data is reset)."""
    check_silence(silence)
    return {
        "ssh_options": list(ssh_options),
        "timeout": timeout,
        "connect_timeout": connect_timeout,
        "fanout": fanout,
        "rpython": rpython,
        "stderr": stderr,
        "delay": delay,
        "silence": float(silence),
        "stdin": bool(stdin or spool),
        "spool": bool(spool),
        "raw": bool(raw),
    }


def gateway_options(
    ssh_options: Sequence[str],
    user: Optional[str],
    rpython: Optional[str],
    gateway_python: Optional[str],
    connect_timeout: float,
    silence: float,
    fanout: int,
) -> Dict[str, Any]:
    """What every tree of sessions (``treecall.call_options``,
    ``treeexec.relay_options``) carries to its gateways, as plain data: ``ssh_options``
    and ``user`` for every ssh at every level (files they name must exist on the gateways
    too), ``rpython`` the Python of the nodes' servers, ``gateway_python`` the gateways',
    ``connect_timeout``, ``silence`` (seconds a gateway may say nothing before it is
    taken as hung; it answers every ``HEARTBEAT`` s; more than that), ``fanout``
    (sessions a host opens at once). ValueError for a ``silence`` too short."""
    check_silence(silence)
    return {
        "ssh_options": list(ssh_options),
        "user": user,
        "rpython": rpython,
        "gateway_python": gateway_python,
        "connect_timeout": float(connect_timeout),
        "silence": float(silence),
        "fanout": int(fanout),
    }
