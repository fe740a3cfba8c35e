"""``Cluster.copy`` and ``Cluster.rcopy``: ``Task.copy``/``Task.rcopy`` over the Cluster's
own sessions (``session.py``).

A ``Task`` runs the copy with an ``RpcBackend`` whose sessions are the Cluster's clients
(one per node: a node listed twice copies twice over its first session), so the rules
are the Task's: a file or directory is written under a temporary name and renamed into
place once complete; ``rcopy`` writes ``dest/NAME.NODE`` (``NAME.NODE~2`` for a node's
second listing). The backend is made once per Cluster and never closes the sessions:
they are the Cluster's to close.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from ..errors import EasyClusterError
from .summary import Outcome

Copied = Dict[str, Tuple[Optional[int], bytes]]  # per slot: return code, error output


def transfer(
    cluster: Any,
    reverse: bool,
    source: str,
    dest: str,
    preserve: bool,
    timeout: Optional[float],
) -> Tuple[Copied, Dict[str, Outcome]]:
    """Copy to (or, ``reverse``, from) every connected node of ``cluster`` (a
    ``Cluster``): per connected slot its return code (0, non-zero with the reason in its
    error output, None if it had none: timed out) and error output, and its outcome.
    Raises as ``Task.copy``/``rcopy`` do for bad local arguments (a missing
    ``source``, an rcopy ``dest`` that is no directory)."""
    from .rpc import RpcBackend
    from .task import Task

    if cluster.tree is not None:
        raise EasyClusterError(
            "Cluster.copy/rcopy through gateways: use Task.copy/rcopy with the topology"
        )
    keys = [k for k in cluster.keys if k in cluster.clients]
    if cluster.rpc is None:
        first: Dict[str, Any] = {}
        for key in keys:
            first.setdefault(cluster.node_of[key], cluster.clients[key])
        cluster.rpc = RpcBackend(lambda node: first[node])
    task = Task()
    got: Copied = {}
    outcomes: Dict[str, Outcome] = {}
    if keys:
        worker = task.copy(
            source,
            dest,
            nodes=[cluster.node_of[k] for k in keys],
            timeout=timeout,
            preserve=preserve,
            reverse=reverse,
            backend=cluster.rpc,
            tree=False,
        )
        task.resume()
        for key, slot in zip(keys, worker.keys):  # (the Task's keys, in the same order)
            rc = worker.node_retcode(slot)
            got[key] = (rc, bytes(worker.node_error(slot)))
            outcomes[key] = Outcome.of_slot(worker.node_status(slot), rc)
    return got, outcomes
