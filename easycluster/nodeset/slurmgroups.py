"""The built-in SLURM group sources: ``@slurm:PARTITION``, ``@sj:JOBID``, ``@st:STATE``...

They answer with SLURM's own commands, as ClusterShell's ``groups.conf.d/slurm.conf``
example binds them (same source names, same questions), so ``@sp:debug`` or
``@sj:1234`` means here what it means to clush:

==========================  =====================================  ============================
sources                     map (``$GROUP``)                       list / reverse (``$NODE``)
==========================  =====================================  ============================
``slurm``, ``slurmpart``,   nodes of partition: ``sinfo -h -o %N   partitions: ``sinfo -h -o
``sp``                      -p $GROUP``                            %R``; of a node: ``sinfo -h
                                                                   -N -o %R -n $NODE``
``slurmstate``, ``st``      nodes in state: ``sinfo -h -o %N -t    states (``sinfo -h -o %T``,
                            $GROUP``                               flags such as ``*`` removed)
``slurmjob``, ``sj``        nodes of job: ``squeue -h -j $GROUP    running jobs: ``squeue -h -o
                            -o %N``                                %i -t R``; of a node
``slurmuser``, ``su``       nodes running a user's jobs            users with running jobs
==========================  =====================================  ============================

The partition and state sources list all nodes with ``sinfo -h -o %N``; the job and user
sources, as in ClusterShell, answer "all" with the union of their groups. Answers are cached for
``SLURM_CACHE_TIME`` (60 s, as ClusterShell's example for states and jobs: allocations
change; partitions are cached as long, which is shorter than ClusterShell's hour).
A command that fails raises ``GroupSourceQueryFailed`` with SLURM's message.

``with_slurm_sources(config)`` adds these sources to a loaded group configuration under
every name the configuration does not define itself (a site's own ``[slurmpart,sp]``
section wins), and only where SLURM is usable: its commands on ``PATH`` and a
configuration to reach it (``$SLURM_CONF``, ``/etc/slurm/slurm.conf``, or running inside
an allocation). Where SLURM is not installed nothing changes, so listing every source
(``nodeset -L``) never runs a command that cannot work. The default source is never
changed.
"""

from __future__ import annotations

import os

from .groupsconf import GroupsConfig
from .groupsources import UpcallGroupSource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Mapping, Optional, Tuple

__all__ = [
    "SLURM_CACHE_TIME",
    "SLURM_SOURCES",
    "slurm_available",
    "slurm_group_sources",
    "with_slurm_sources",
]

SLURM_CACHE_TIME = 60.0
_FLAGS = "'*~#!%$@+^-'"  # the marks sinfo appends to a state (not responding, ...)
# (names, map, all, list, reverse): ClusterShell's bindings
_BINDINGS: Tuple[Tuple[Tuple[str, ...], str, str, str, str], ...] = (
    (
        ("slurm", "slurmpart", "sp"),
        'sinfo -h -o "%N" -p $GROUP',
        'sinfo -h -o "%N"',
        'sinfo -h -o "%R"',
        'sinfo -h -N -o "%R" -n $NODE',
    ),
    (
        ("slurmstate", "st"),
        'sinfo -h -o "%N" -t $GROUP',
        'sinfo -h -o "%N"',
        f'sinfo -h -o "%T" | tr -d {_FLAGS}',
        f'sinfo -h -N -o "%T" -n $NODE | tr -d {_FLAGS}',
    ),
    (
        ("slurmjob", "sj"),
        'squeue -h -j $GROUP -o "%N"',
        "",
        'squeue -h -o "%i" -t R',
        'squeue -h -w $NODE -o "%i"',
    ),
    (
        ("slurmuser", "su"),
        'squeue -h -u $GROUP -o "%N" -t R',
        "",
        'squeue -h -o "%u" -t R',
        'squeue -h -w $NODE -o "%u"',
    ),
)
SLURM_SOURCES: Tuple[str, ...] = tuple(n for b in _BINDINGS for n in b[0])
_CONF_PATHS = ("/etc/slurm/slurm.conf", "/etc/slurm-llnl/slurm.conf")


def slurm_available(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when SLURM's commands are on ``PATH`` and a configuration can be found."""
    import shutil  # (here: shutil loads bz2 and lzma, ~1.5 ms of every NodeSet import)

    env = os.environ if environ is None else environ
    if shutil.which("sinfo", path=env.get("PATH")) is None:
        return False
    if env.get("SLURM_CONF") or env.get("SLURM_JOB_ID"):
        return True
    return any(os.path.exists(p) for p in _CONF_PATHS)


def slurm_group_sources(
    cache_time: float = SLURM_CACHE_TIME, timeout: float = 30.0
) -> List[UpcallGroupSource]:
    """A fresh source for every name of ``SLURM_SOURCES`` (each with its own cache)."""
    sources = []
    for names, map_cmd, all_cmd, list_cmd, reverse_cmd in _BINDINGS:
        for name in names:
            sources.append(
                UpcallGroupSource(
                    name,
                    map_cmd,
                    all_cmd or None,
                    list_cmd,
                    reverse_cmd,
                    cache_time=cache_time,
                    timeout=timeout,
                )
            )
    return sources


def with_slurm_sources(
    config: GroupsConfig, environ: Optional[Mapping[str, str]] = None
) -> GroupsConfig:
    """``config`` plus the SLURM sources it does not define, when SLURM is usable."""
    if not slurm_available(environ):
        return config
    taken = {src.name for src in config.sources}
    extra = [src for src in slurm_group_sources() if src.name not in taken]
    return GroupsConfig((*config.sources, *extra), config.default)
