"""How ``easycluster farm`` opens a host's session: over ssh (``--ssh-options``), through
a gateway (``--topology``), as an srun step (``--slurm``) or a local server (``-R local``).

The client stack loads only here, once a run starts: ``farm --help`` and usage errors
skip it (a start-up's largest cost).
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, Callable, List


def connector(args: argparse.Namespace) -> Callable[[str], Any]:
    """How a host's session is opened: ssh (with ``--ssh-options``), an srun step
    (``--slurm``: after ``slurm_hosts``) or a local server."""
    # Deferred: the client stack is most of a start-up's cost; `farm --help` skips it.
    from ..client.local import spawn_local
    from ..client.threaded import ThreadedClient

    keep = {
        "keep_alive_interval": args.heartbeat,
        "keep_alive_timeout": 2 * args.heartbeat,
        "remote_output": False,
    }
    if args.worker == "local":
        return lambda host: spawn_local(ThreadedClient, **keep)
    if args.slurm is not None:
        from ..client.spec import srun_client

        job, members = args.slurm_job, args.slurm_nodes
        return lambda node: srun_client(
            ThreadedClient,
            node,
            job,
            members=members,
            connect_timeout=args.connect_timeout,
            **keep,
        )
    extra = [w for text in args.ssh_options for w in shlex.split(text)]

    def connect(host: str) -> Any:
        return ThreadedClient(
            host=host,
            user=args.user,
            extra_args=extra,
            connect_timeout=args.connect_timeout,
            **keep,
        )

    if getattr(args, "topology_file", None):
        return tree_connect(args, extra, connect)
    return connect


def tree_connect(
    args: argparse.Namespace, extra: List[str], direct: Callable[[str], Any]
) -> Callable[[str], Any]:
    """``--topology``: hosts behind a gateway get a session that their gateway holds
    (``cluster/treerelay.py``; the gateway's session to the host keeps the heartbeat,
    and a gateway silent for 2 heartbeats loses its hosts); the connector is kept on
    ``args.relay`` for ``_run`` to close."""
    from ..cluster.treeexec import HEARTBEAT, relay_options
    from ..cluster.treerelay import TreeConnector, as_topology

    opts = relay_options(
        extra,
        args.user,
        connect_timeout=args.connect_timeout,
        silence=max(2 * args.heartbeat, 2 * HEARTBEAT),
        keep_alive=args.heartbeat,
    )
    args.relay = TreeConnector(as_topology(args.topology_file), opts, direct)
    return args.relay.connect
