"""Where a topology comes from: given as an object, a path or its text, or the default
one a site configured (``shell``, ``farm``).

The default topology, for the commands (``easycluster shell``, ``easycluster farm``)
when no ``--topology FILE`` is given and ``--no-topology`` is not either, is the first
of:

1. ``$EASYCLUSTER_TOPOLOGY``: a file path (set but empty: no default topology, flat);
2. ``$XDG_CONFIG_HOME/easycluster/topology.conf`` (``~/.config/...`` when unset);
3. ``/etc/easycluster/topology.conf``;
4. ClusterShell's: ``$CLUSTERSHELL_CFGDIR/topology.conf``, then
   ``/etc/clustershell/topology.conf`` (the file clush reads; same syntax).

The Python API (``Task``, ``Cluster``, ``ClusterExecutor``) takes no default: a
library call runs flat unless given a topology (``default_topology_path()`` is the path
the commands would use, for a script that wants the same).
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

__all__ = ["TOPOLOGY_ENV", "default_topology_path", "topology_for"]

TOPOLOGY_ENV = "EASYCLUSTER_TOPOLOGY"


def default_topology_path(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The default topology file (module docstring), or None: flat."""
    env = os.environ if environ is None else environ
    named = env.get(TOPOLOGY_ENV)
    if named is not None:
        return named or None
    home = env.get("HOME") or os.path.expanduser("~")
    config = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    candidates = [
        os.path.join(config, "easycluster", "topology.conf"),
        "/etc/easycluster/topology.conf",
    ]
    if env.get("CLUSTERSHELL_CFGDIR"):
        candidates.append(os.path.join(env["CLUSTERSHELL_CFGDIR"], "topology.conf"))
    candidates.append("/etc/clustershell/topology.conf")
    for path in candidates:
        if os.path.isfile(path):
            return path
    return None


def topology_for(
    given: Optional[str], flat: bool = False, environ: Optional[Mapping[str, str]] = None
) -> Optional[str]:
    """The topology file a command uses: ``given`` (``--topology``), none with ``flat``
    (``--no-topology``), else the default (``default_topology_path``)."""
    if given:
        return given
    if flat:
        return None
    return default_topology_path(environ)
