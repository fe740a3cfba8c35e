"""Servers started with ``srun`` inside a SLURM allocation: one job step per node.

``open_channel(node)`` starts a server on ``node`` as a job step of the current
allocation (``SLURM_JOB_ID``, or ``jobid=``)::

    srun --jobid=JOB -N1 -n1 --nodelist=NODE --overlap --unbuffered --quiet
         --job-name=easycluster-TAG /bin/sh -c '...' STAGE0

and speaks the same stdin/stdout bootstrap as ssh (the step's stdin and stdout are the
pipes; nothing is installed on the node beyond Python): the bootstrap code is
``ssh.open_channel``'s, with ``srun`` as the program that reaches the node. The pitfalls
measured on SLURM 22.05, and how each is handled:

* without ``--unbuffered`` srun holds the task's output back by lines and the binary
  handshake never arrives: it is always given;
* one multi-node step dies with any of its nodes: every server is its own
  single-node step (``--overlap`` lets the steps share the allocation's CPUs);
* srun exits 0 even after "Node failure": its exit status is never read as a verdict.
  A server is alive while its connection is: the step's pipes closing (srun ends when
  SLURM marks the node DOWN) or our keep-alive (``transport.channel.KeepAlive``) end it
  with ``ConnectionLost``;
* killing the local srun does not end the remote step: the closer, after srun is gone,
  looks the step up by its unique name (``squeue -s``) and ends it with
  ``scancel JOB.STEP``, also when connecting failed.

Errors, all raised before anything is sent to a node when the input is wrong:

* ``ConfigError``: ``srun`` (or ``squeue``/``scontrol``) is not on ``PATH``; not inside an
  allocation (no ``SLURM_JOB_ID`` and no ``jobid=``); a malformed node name or job id;
  a node that is not in the allocation (the message lists the allocation's nodes); a
  job that is unknown or has no nodes (not running yet, or ended);
* ``ConnectError``: the step could not start or the server did not come up in time
  (srun's own message is included).

``open_channels(nodes)`` starts many servers in parallel (one thread per node up to
``max_workers``) and returns, per node, the channel triple or the exception.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import ConfigError, ConnectionLost
from ..protocol.handshake import WireOptions
from ..transport.channel import Channel
from . import ssh
from .said import last_said

__all__ = [
    "STEP_PREFIX",
    "SRUN_OPTIONS",
    "Opened",
    "allocation_nodes",
    "allocation_cpus",
    "cancel_step",
    "current_jobid",
    "open_channel",
    "open_channels",
    "slurm_program",
]

Opened = Tuple[Channel, Callable[[], None], str]
SRUN_OPTIONS = ("-N1", "-n1", "--overlap", "--unbuffered", "--quiet")
STEP_PREFIX = "easycluster-"
# The step runs this with ssh's trailing words as its arguments (``-T -o BatchMode=yes
# -- NODE COMMAND``): the last one is the stage-0 command, run as ssh's remote shell would.
_STEP_SHELL = 'for a; do :; done; eval "exec $a"'
_JOBID = re.compile(r"\d+(_\d+)?\Z")
_NODE = re.compile(r"[A-Za-z0-9_.-]+\Z")
# scontrol -d show job: "     Nodes=n[1-2] CPU_IDs=0-1 Mem=0 GRES=", one per node group
_CPU_GROUP = re.compile(r"^\s*Nodes=(\S+)\s+CPU_IDs=([0-9,-]+)", re.M)
_COMMAND_TIMEOUT = 30.0  # squeue, scontrol and scancel answer in milliseconds when well
# Ending a step as a session closes: a run's end waits for it, once per node, so a
# slurmctld that does not answer must not hold the end for long (said, then left)
CANCEL_TIMEOUT = 5.0


def slurm_program(name: str, path: Optional[str] = None) -> str:
    """The full path of SLURM's ``name`` command (``path``: a program given by the user,
    searched on ``PATH`` if it has no slash). ConfigError when it cannot be found."""
    found = shutil.which(path or name)
    if found is None:
        raise ConfigError(
            f"{path or name} not found on PATH ({os.environ.get('PATH', '')}): starting "
            "servers with srun needs SLURM's client commands (srun, squeue, scontrol, "
            "scancel); run on a node of the cluster or install slurm-client"
        )
    return found


def current_jobid(
    jobid: Union[str, int, None] = None, environ: Optional[Mapping[str, str]] = None
) -> str:
    """``jobid`` checked, or the allocation this process runs in (``SLURM_JOB_ID``).

    ConfigError outside any allocation or for a malformed job id."""
    env = os.environ if environ is None else environ
    if jobid is None:
        jobid = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
        if not jobid:
            raise ConfigError(
                "not inside a SLURM allocation: SLURM_JOB_ID is not set; run inside "
                "salloc or sbatch, or pass the allocation's job id (jobid=...)"
            )
    text = str(jobid).strip()
    if not _JOBID.match(text):
        raise ConfigError(f"bad SLURM job id {jobid!r}: expected a number such as 1234")
    return text


def _run(argv: Sequence[str], timeout: float = _COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a quick SLURM command. ConfigError at once for a ``$SLURM_CONF`` that names no
    file (SLURM's commands retry reading it for a minute), and for a command that does
    not answer in time, with what it said on stderr meanwhile (SLURM's reason)."""
    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        raise ConfigError(
            f"SLURM_CONF={conf}: no such file (SLURM's commands would retry reading it "
            "for a minute): set it to your slurm.conf, or unset it"
        )
    try:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        why = last_said(e)
        raise ConfigError(f"{' '.join(argv)} did not answer within {timeout:g} s{why}") from None


def allocation_nodes(
    jobid: Union[str, int, None] = None, environ: Optional[Mapping[str, str]] = None
) -> List[str]:
    """The node names of allocation ``jobid`` (default: the current one), in SLURM's order.

    Inside the allocation its ``SLURM_JOB_NODELIST`` is read; otherwise ``squeue`` is
    asked. The list is expanded by ``scontrol show hostnames`` (SLURM's own reading).
    ConfigError for an unknown job or one that is not running (pending, ended).
    """
    env = os.environ if environ is None else environ
    job = current_jobid(jobid, env)
    text = ""
    if job == (env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")):
        text = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
    if not text:
        proc = _run([slurm_program("squeue"), "-h", "-j", job, "-o", "%T %N"])
        if proc.returncode != 0:
            raise ConfigError(
                f"SLURM job {job} is unknown or ended: squeue said "
                f"{proc.stderr.strip() or proc.returncode}"
            )
        state, _, text = proc.stdout.strip().partition(" ")
        if state != "RUNNING":
            raise ConfigError(
                f"SLURM job {job} is {state or 'unknown or ended'}, not RUNNING: "
                "servers start only inside a running allocation"
            )
        text = text.strip()
    proc = _run([slurm_program("scontrol"), "show", "hostnames", text])
    if proc.returncode != 0:
        raise ConfigError(f"cannot expand SLURM node list {text!r}: {proc.stderr.strip()}")
    return proc.stdout.split()


def allocation_cpus(job: str, members: Sequence[str]) -> Dict[str, int]:
    """``{node: CPUs}`` that running job ``job`` holds on each of its nodes ``members``
    (as ``allocation_nodes`` returns them), as ``scontrol -d show job`` lists them: a
    ``Nodes=... CPU_IDs=...`` line per group of nodes. For a job other than the one we
    run in (whose ``SLURM_JOB_CPUS_PER_NODE`` ``slurmwatch.cpus_per_node`` reads). Empty
    when SLURM does not say, or not for exactly ``members``: the caller then picks a
    count itself."""
    scontrol = slurm_program("scontrol")
    got: Dict[str, int] = {}
    try:
        proc = _run([scontrol, "-d", "show", "job", job])
        for group, ids in _CPU_GROUP.findall(proc.stdout if proc.returncode == 0 else ""):
            count = sum(_span(part) for part in ids.split(",") if part)
            names = _run([scontrol, "show", "hostnames", group])
            for node in names.stdout.split() if names.returncode == 0 else ():
                got[node] = count
    except (ConfigError, OSError, ValueError):
        return {}
    if sorted(got) != sorted(members) or any(c < 1 for c in got.values()):
        return {}
    return got


def _span(part: str) -> int:
    """How many CPU ids ``0-3`` (or ``5``) names; ValueError if it is not such a range."""
    first, _, last = part.partition("-")
    return int(last or first) - int(first) + 1


def node_in_allocation(node: str, job: str, members: Optional[Sequence[str]]) -> None:
    """Raise ConfigError unless ``node`` is a valid node name and (``members`` given)
    one of allocation ``job``'s nodes."""
    if not isinstance(node, str) or not _NODE.match(node) or node.startswith("-"):
        raise ConfigError(f"bad SLURM node name {node!r}")
    if members is not None and node not in members:
        raise ConfigError(
            f"node {node} is not in SLURM allocation {job} (its nodes: "
            f"{','.join(members) or 'none'}); name one of them, or allocate {node}"
        )


def allocation_targets(
    names: Optional[Sequence[str]], jobid: Union[str, int, None] = None
) -> Tuple[str, List[str], List[str]]:
    """``(job, members, chosen)`` for work on allocation ``jobid`` (default: the current
    one): its job id, its node names in SLURM's order, and ``names`` (default: all its
    nodes) each checked to be one of them. Raises ConfigError (outside any allocation,
    an unknown job, a node not in it) before any step starts. Shared by
    ``Cluster.from_slurm`` and ``ClusterExecutor.from_slurm``."""
    job = current_jobid(jobid)
    members = allocation_nodes(job)
    chosen = list(members) if names is None else list(names)
    for node in chosen:
        node_in_allocation(node, job, members)
    return job, members, chosen


def _srun_args(job: str, node: str, step: str) -> List[str]:
    return [
        f"--jobid={job}",
        *SRUN_OPTIONS,
        f"--nodelist={node}",
        f"--job-name={step}",
        "/bin/sh",
        "-c",
        _STEP_SHELL,
    ]


def cancel_step(job: str, step_name: str, squeue: str = "squeue", scancel: str = "scancel") -> bool:
    """End the step of job ``job`` called ``step_name`` if it still runs; True if one was
    cancelled. Quiet when the job is gone (its steps are gone with it). When SLURM does
    not answer within ``CANCEL_TIMEOUT`` (slurmctld stopped or swamped) it gives up and
    warns that the step may still run, saying how to end it (a run's end waited 30 s
    per node for it, silently)."""
    try:
        proc = _run([squeue, "-h", "-s", "-j", job, "-o", "%i %j"], CANCEL_TIMEOUT)
        for line in proc.stdout.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[1] == step_name:
                _run([scancel, "--quiet", fields[0]], CANCEL_TIMEOUT)
                return True
    except (ConfigError, OSError) as e:
        import warnings  # (here: only a SLURM that does not answer needs it)

        warnings.warn(
            f"the srun step {step_name} of SLURM job {job} may still run ({e}): list it "
            f"with 'squeue -s -j {job}' and end it with 'scancel {job}.STEPID'",
            stacklevel=2,
        )
    return False


def _as_srun_error(exc: ConnectionLost, node: str, job: str) -> ConnectionLost:
    """ssh's wording of a failed start, said of srun (same type, so callers can tell
    a timeout from a refusal the same way for both launchers)."""
    text = str(exc).replace(" over ssh ", " over srun ").replace("ssh said:", "srun said:")
    text = text.replace("ssh cannot connect to", "srun cannot start a step on")
    text = text.replace(
        "the remote side failed before the bootstrap started on",
        "srun could not start the server's step on",
    )
    if "Requested node configuration is not available" in text or "Invalid node name" in text:
        text += f" ({node} is not usable in allocation {job}: DOWN, drained or not in it)"
    low = text.lower()
    if "invalid job id" in low or "has expired" in low or "already completed" in low:
        text += f" (SLURM job {job} has ended)"
    return type(exc)(text)


def open_channel(
    node: str,
    jobid: Union[str, int, None] = None,
    *,
    rpython: Optional[str] = None,
    options: WireOptions = WireOptions(),
    timeout: Optional[float] = 30.0,
    srun: Optional[str] = None,
    members: Optional[Sequence[str]] = None,
    check_node: bool = True,
) -> Opened:
    """Start a server on ``node`` as one step of allocation ``jobid``; return
    ``(channel, closer, peername)`` as ``ssh.open_channel`` does.

    ``members`` are the allocation's nodes if already known (else, with ``check_node``,
    ``allocation_nodes`` asks SLURM once). ``timeout`` bounds everything up to the
    handshake. ``closer()`` ends srun and cancels the step if it outlived it. Errors as
    the module docstring says.
    """
    job = current_jobid(jobid)
    program = slurm_program("srun", srun)
    if check_node and members is None:
        members = allocation_nodes(job)
    node_in_allocation(node, job, members if check_node else None)
    squeue = shutil.which("squeue") or "squeue"
    scancel = shutil.which("scancel") or "scancel"
    step = STEP_PREFIX + uuid.uuid4().hex[:16]
    try:
        channel, close_srun, _ = ssh.open_channel(
            node,
            ssh=program,
            rpython=rpython,
            extra_args=_srun_args(job, node, step),
            options=options,
            timeout=timeout,
        )
    except ConnectionLost as e:
        cancel_step(job, step, squeue, scancel)  # a killed srun leaves its step running
        raise _as_srun_error(e, node, job) from None
    except BaseException:
        cancel_step(job, step, squeue, scancel)
        raise

    def closer() -> None:
        close_srun()
        cancel_step(job, step, squeue, scancel)

    return channel, closer, node


def open_channels(
    nodes: Sequence[str],
    jobid: Union[str, int, None] = None,
    *,
    max_workers: int = 64,
    **kw,
) -> List[Union[Opened, BaseException]]:
    """``open_channel`` for every node at once (``max_workers`` at a time), in order;
    each entry is the triple or the exception that node raised. Errors about the whole
    request (srun missing, no allocation, a node not in it) are raised at once,
    before any step starts."""
    job = current_jobid(jobid)
    slurm_program("srun", kw.get("srun"))
    members = kw.pop("members", None)
    if members is None and kw.get("check_node", True):
        members = allocation_nodes(job)
    for node in nodes:
        node_in_allocation(node, job, members if kw.get("check_node", True) else None)
    if not nodes:
        return []

    def one(node: str) -> Union[Opened, BaseException]:
        try:
            return open_channel(node, job, members=members, **kw)
        except Exception as e:  # kept per node; the caller decides
            return e

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(nodes)))) as pool:
        return list(pool.map(one, nodes))
