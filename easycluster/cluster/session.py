"""``Cluster``: one authenticated session per node, for commands and Python calls alike.

``Cluster(nodes, **connect_options)`` connects a ``Client`` to every node at once (over
ssh by default: nothing installed remotely; ``fanout`` connections at a time) and keeps
them open, so the next command or call costs a round trip, not an ssh start:

    with Cluster("node[1-64]") as c:
        r = c.run("uname -r")             # NodeResults: per slot, a CommandResult
        print(r.summary())
        loads = c.call(os.getloadavg)     # a function (cloudpickled) or a remote name
        good = loads.succeeded            # {slot key: value}

Results (``NodeResults``) are keyed by slot (a node listed twice gets ``node`` and
``node#2``: ``slots.slot_keys``). Every slot ends in one outcome of ``summary.py``: a
node that could not be connected is ``unreachable`` (``hostkey`` when ssh refused its
host key) for every later operation too; a session lost during an operation is
``unreachable`` for it; a call that raised is ``failed`` with code 250 (``EXIT_FAILED``:
a Python exception has no exit status, so ``exit_code(maxrc=True)`` is 250 too), one
that returned, whatever it returned (an exception object too), succeeded; a command is
``failed`` with its exit code; a call or command past ``call_timeout`` is ``timeout``
(the remote work may go on: see ``docs/timeouts.md``). ``summary()`` names every slot
that did not succeed once, folded by class; ``exit_code()`` is the shell's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from ..client.client import Client
from ..client.parallel import call_each
from ..errors import EasyClusterError
from ..nodeset.nodeset import NodeSet
from ..protocol.messages import SINGLE
from .executor import ClusterExecutor
from .sessionresults import (  # (CommandResult, NodeResults: importable from here too)
    CommandResult,
    NodeResults,
    call_outcome,
    command_outcome,
    connect_outcome,
)
from .slots import slot_keys
from .summary import Outcome
from .task import node_list
from .treecall import LOST, OK, UNREACHABLE, TreeCaller, call_options
from .treerelay import TreeConnector, as_topology, tree_connector
from .treerun import SILENCE

APPLY = "easycluster.remote.verbs.apply"  # the remote helper that calls a shipped callable
KILL_GRACE = 5.0  # s past run()'s timeout a node has to report the kill (a frozen one)


class Cluster:
    """Sessions to many nodes (module doc). ``connect_options`` go to each ``Client``
    (``user``, ``extra_args`` for ssh, ``rpython``, ``ssh``...); ``client`` may replace
    how one node is connected (``client(node) -> Client``, e.g. ``spawn_local`` for
    tests). Connection failures are kept per slot, never raised.

    ``topology`` (a ``Topology``, a file path, or what ``Topology.build`` takes): reach
    the nodes through gateways (tree mode, ``treecall.py``): the admin holds one
    session per first-hop gateway, each gateway one per node of its share, all kept
    across calls. ``user``, ``extra_args``, ``rpython`` and ``connect_timeout`` apply
    at every level (``client`` only to the nodes this host reaches itself);
    ``gateway_python`` starts the gateways; ``silence``: seconds a gateway may say
    nothing before it is taken as hung. ``call`` and ``run`` give what flat gives; a
    node whose gateway died mid-call with no other gateway declared for it is
    ``unreachable`` (its value a ``ConnectionLost`` naming the gateway). A node listed
    twice runs once. ``map`` runs through the gateways too, as ``ClusterExecutor`` with
    a topology does (``treerelay.py``: its own sessions to the nodes, opened by the
    gateways for each map; the links to the gateways are kept until ``close``)."""

    def __init__(
        self,
        nodes: Union[str, NodeSet, Sequence[str]],
        fanout: int = 64,
        call_timeout: Optional[float] = None,
        client: Optional[Callable[[str], Client]] = None,
        topology: Any = None,
        gateway_python: Optional[str] = None,
        silence: float = SILENCE,
        **connect_options: Any,
    ) -> None:
        names = node_list(nodes) if isinstance(nodes, (str, NodeSet)) else list(nodes)
        if not names:
            raise EasyClusterError("Cluster needs at least one node")
        if fanout < 1:
            raise ValueError(f"fanout must be >= 1, not {fanout}")
        self.keys = slot_keys(names)
        self.node_of = dict(zip(self.keys, names))
        self.call_timeout = call_timeout
        connect = client or (lambda node: Client(host=node, **connect_options))
        self.clients: Dict[str, Client] = {}
        self.unreachable: Dict[str, BaseException] = {}
        self.tree: Optional[TreeCaller] = None
        self.lost: Dict[str, BaseException] = {}  # tree mode: lost in the last operation
        self.relay: Optional[TreeConnector] = None  # tree mode: map's, made on first use
        # map's executors, kept between calls (its runners, registered functions and
        # pipeline depths: a fresh one cost about 0.8 ms a call), by (retries, timeout)
        self._executors: Dict[Tuple[int, Optional[float]], ClusterExecutor] = {}
        self._relay_args: Any = None
        self.rpc: Optional[Any] = None  # copy/rcopy's RpcBackend over these sessions
        if topology is not None:
            topology = as_topology(topology)
            self._relay_args = (topology, client, gateway_python, silence, connect_options)
            self.tree = tree_caller(
                topology, connect, fanout, call_timeout, gateway_python, silence, connect_options
            )
            got = self.tree.call(names, None)  # connect every node, through its gateway
            for key in self.keys:
                kind, value = got[self.node_of[key]]
                if kind != OK:
                    self.unreachable[key] = value
            return
        with ThreadPoolExecutor(max_workers=min(fanout, len(names))) as pool:
            futures = {key: pool.submit(connect, self.node_of[key]) for key in self.keys}
            misuse: Optional[TypeError] = None
            for key, fut in futures.items():
                try:
                    self.clients[key] = fut.result()
                except TypeError as e:  # (a misspelt connect option: the caller's)
                    misuse = misuse or e
                except Exception as e:  # one node's failure is that node's outcome
                    self.unreachable[key] = e
        if misuse is not None:
            self.close()
            raise misuse

    @classmethod
    def from_slurm(
        cls,
        nodes: Union[str, NodeSet, Sequence[str], None] = None,
        jobid: Union[str, int, None] = None,
        fanout: int = 64,
        call_timeout: Optional[float] = None,
        **connect_options: Any,
    ) -> Cluster:
        """A Cluster over SLURM allocation ``jobid`` (default: ``$SLURM_JOB_ID``), each
        server started as its own ``srun`` step on its node (``launch/srun.py``);
        ``nodes`` picks a subset of the allocation's nodes (default: all of them). A
        node whose step fails is that node's outcome, as for any Cluster; errors about
        the request itself (no srun, outside an allocation, a node not in it) raise."""
        from ..client.spec import srun_client
        from ..launch import srun

        job, members, names = srun.allocation_targets(
            None if nodes is None else node_list(nodes), jobid
        )

        def connect(node: str) -> Client:
            client: Client = srun_client(Client, node, job, members=members, **connect_options)
            return client

        return cls(names, fanout=fanout, call_timeout=call_timeout, client=connect)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every session (the remote servers end with them)."""
        for executor in self._executors.values():
            executor.shutdown(wait=True, cancel_futures=True)
        self._executors.clear()
        for c in self.clients.values():
            c.close()
        if self.tree is not None:
            self.tree.close()
        if self.relay is not None:
            self.relay.close()

    def _fan_out(
        self, func: str, *args: Any, _bound: Optional[float] = None, **kwargs: Any
    ) -> Tuple[Dict[str, Any], Set[str]]:
        """``func`` on every connected node: each slot's value (or exception), and the
        slots whose call raised; ``_bound``: seconds to wait at most when
        ``call_timeout`` is None (``run``'s timeout, plus a grace for the kill)."""
        if self.tree is not None:
            return self._tree_fan_out(func, args, kwargs)
        keys = list(self.clients)
        bound = self.call_timeout if self.call_timeout is not None else _bound
        # each call on a server thread of its own: one stuck past call_timeout holds up
        # no later call to that node (the exception takes the slot; nothing printed)
        got = call_each([self.clients[k] for k in keys], func, args, kwargs, bound, threadid=SINGLE)
        raised = {key for key, (returned, _) in zip(keys, got) if not returned}
        return {key: value for key, (_, value) in zip(keys, got)}, raised

    def _tree_fan_out(self, func: str, args: Any, kwargs: Any) -> Tuple[Dict[str, Any], Set[str]]:
        """``_fan_out`` through the gateways: a node lost with its gateway counts as
        unreachable for this operation (``self.lost``)."""
        if self.tree is None:
            raise EasyClusterError("this Cluster has no topology")
        keys = [k for k in self.keys if k not in self.unreachable]
        got = self.tree.call([self.node_of[k] for k in keys], func, args, kwargs)
        self.lost = {}
        out: Dict[str, Any] = {}
        raised: Set[str] = set()
        for key in keys:
            kind, value = got[self.node_of[key]]
            out[key] = value
            if kind in (LOST, UNREACHABLE):
                self.lost[key] = value
            if kind != OK:
                raised.add(key)
        return out, raised

    def _results(
        self,
        got: Dict[str, Any],
        judge: Callable[[Any, bool], Outcome],
        raised: Set[str],
        known: Optional[Dict[str, Outcome]] = None,
    ) -> NodeResults:
        """Values and outcomes per slot; ``judge(value, raised)`` gives the outcome of a
        slot the operation reached (``raised``: its call raised), unless ``known``."""
        values: Dict[str, Any] = {}
        outcomes: Dict[str, Outcome] = {}
        for key in self.keys:
            if key in self.unreachable:
                values[key] = self.unreachable[key]
                outcomes[key] = connect_outcome(self.unreachable[key])
            elif key in self.lost:
                values[key] = self.lost[key]
                outcomes[key] = Outcome.unreachable()
            else:
                values[key] = got[key]
                outcomes[key] = known[key] if known else judge(got[key], key in raised)
        return NodeResults(values, outcomes)

    def _copied(self, reverse: bool, *args: Any) -> NodeResults:
        from .sessioncopy import transfer  # (the engine only for a Cluster that copies)

        got, outcomes = transfer(self, reverse, *args)
        values: Dict[str, Any] = {
            key: CommandResult(-1 if rc is None else rc, b"", err) for key, (rc, err) in got.items()
        }
        return self._results(values, command_outcome, set(), outcomes)

    def copy(
        self, source: str, dest: str, preserve: bool = False, timeout: Optional[float] = None
    ) -> NodeResults:
        """Copy the local file or directory ``source`` to ``dest`` on every node over its
        session (``Task.copy``'s rules: renamed into place only once complete; ``dest``
        an existing directory takes it inside). Per slot a ``CommandResult`` (rc 0, or
        the reason in ``stderr``; -1 when it had none: timed out). ``preserve``: mode and
        mtime. Not through gateways (use ``Task.copy``)."""
        return self._copied(False, source, dest, preserve, timeout)

    def rcopy(
        self, source: str, dest: str, preserve: bool = False, timeout: Optional[float] = None
    ) -> NodeResults:
        """Fetch ``source`` from every node into the local directory ``dest`` as
        ``NAME.NODE`` (``NAME.NODE~2`` for a node's second listing; ``Task.rcopy``'s
        names), each renamed into place only once complete; results as ``copy``."""
        return self._copied(True, source, dest, preserve, timeout)

    def call(self, func: Union[str, Callable[..., Any]], *args: Any, **kwargs: Any) -> NodeResults:
        """Call ``func(*args, **kwargs)`` on every node: a callable is sent (cloudpickle),
        a string names a remote function (``"os.getloadavg"``, or one of
        ``define_common``)."""
        if callable(func):
            got, raised = self._fan_out(APPLY, func, *args, **kwargs)
        elif isinstance(func, str):
            got, raised = self._fan_out(func, *args, **kwargs)
        else:
            raise TypeError(f"call() takes a callable or a remote function's name, not {func!r}")
        return self._results(got, call_outcome, raised)

    def run(self, command: str, timeout: Optional[float] = None) -> NodeResults:
        """Run shell ``command`` (one string, as given: no ``%h``) on every node over its
        session; each value is a ``CommandResult`` (exit code, stdout, stderr).
        ``timeout``: seconds, after which the command is killed on the node, with what it
        started (outcome ``timeout``); without ``call_timeout``, a node that has not
        answered ``KILL_GRACE`` s later (its server stopped) is ``timeout`` too. A
        command still running when the session closes (``close()``, the end of the
        script, the server's death) is killed."""
        if not isinstance(command, str):
            raise TypeError(f"run() takes a shell command as one string, not {command!r}")
        bound = None if timeout is None else timeout + KILL_GRACE
        got, raised = self._fan_out(APPLY, _RUN_COMMAND, command, timeout, _bound=bound)
        for key, value in got.items():
            if key not in raised:
                got[key] = CommandResult(*value)
        return self._results(got, command_outcome, raised)

    def map(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        retries: int = 3,
        timeout: Optional[float] = None,
        chunksize: Optional[int] = None,
    ) -> List[Any]:
        """``[func(item) for item in iterable]``, run over the connected nodes (one
        server each; unreachable ones are skipped), results in input order. ``func`` is
        sent by cloudpickle (lambdas too). An item whose node is lost (connection died,
        heartbeat missed) or that runs longer than ``timeout`` seconds (None: no limit)
        is rerun on another node, ``retries`` times in all; such an item may have run
        there too (at-least-once: see ``ClusterExecutor``). The first item that raised
        re-raises its exception here (items not started yet are cancelled); an item
        given up raises ``WorkLost``/``WorkStuck``, and ``NoHostsLeft`` when every node
        is gone. ``chunksize`` items travel as one call (None: picked as
        ``multiprocessing.Pool.map`` does; 1: one call per item); a chunk is retried
        whole and its ``timeout`` is per item it holds (``ClusterExecutor.map``). A node
        declared lost is closed (its later calls fail at once with ConnectionLost
        instead of hanging) and not used by later maps. One map at a time per Cluster.
        """
        key = (retries, timeout)
        executor = self._executors.get(key)
        if executor is None:
            executor = self._executors[key] = self._executor(retries, timeout)
        try:
            return list(executor.map(func, iterable, chunksize=chunksize))
        except BaseException:  # (items of this map may still run: the next starts afresh)
            del self._executors[key]
            # (waits for the items still running: without the wait, the executor's
            # runners wind down beside the next call and may close a session it uses)
            executor.shutdown(wait=True, cancel_futures=True)
            raise

    def _executor(self, retries: int, timeout: Optional[float]) -> ClusterExecutor:
        if self.tree is not None:
            if self.relay is None:
                self.relay = tree_connector(*self._relay_args)
            servers: List[Any] = [self.node_of[k] for k in self.keys if k not in self.unreachable]
            connect: Any = self.relay.connect
        else:
            servers = [self.clients[k] for k in self.keys if k in self.clients]
            connect = None
        if not servers:
            raise EasyClusterError(
                f"Cluster.map: no node is connected ({len(self.unreachable)} unreachable)"
            )
        return ClusterExecutor(servers, client=connect, retries=retries, task_timeout=timeout)

    def __repr__(self) -> str:
        names = [self.node_of[k] for k in self.keys if k not in self.unreachable]
        up = NodeSet.fromlist(names) if names else ""
        return f"Cluster({str(up)!r}, {len(self.unreachable)} unreachable)"


def tree_caller(
    topology: Any,
    connect: Callable[[str], Client],
    fanout: int,
    call_timeout: Optional[float],
    gateway_python: Optional[str],
    silence: float,
    connect_options: Dict[str, Any],
) -> TreeCaller:
    """The ``TreeCaller`` of a Cluster with a topology (the class docstring)."""
    topo = as_topology(topology)
    timeout = connect_options.get("connect_timeout")
    opts = call_options(
        list(connect_options.get("extra_args", ())),
        connect_options.get("user"),
        connect_options.get("rpython"),
        gateway_python,
        10.0 if timeout is None else float(timeout),
        call_timeout,
        silence,
        fanout,
    )
    return TreeCaller(topo, opts, connect=connect)


def _remote_runner() -> Callable[[str, Optional[float]], Tuple[int, bytes, bytes]]:
    """The function ``run`` sends to each node. Made inside a function so cloudpickle
    sends it by value: the nodes have no ``easycluster.cluster``. It returns a plain
    tuple for the same reason.

    The command runs as the RPC backend's do (``easycluster.remote.commands``, shipped
    with every server): in a session of its own, so its timeout kills what it started
    too, and registered with the server, so it is killed when the session closes
    (``close()``, the script's end) or when the server dies (its watchdog). A timeout
    raises ``subprocess.TimeoutExpired`` there (the slot's ``timeout`` outcome)."""

    def run_command(command: str, timeout: Optional[float]) -> Tuple[int, bytes, bytes]:
        import random
        import subprocess
        import threading
        import time

        from easycluster.remote import commands

        end = None if timeout is None else time.monotonic() + timeout
        token = (1 << 61) | random.getrandbits(60)  # (apart from the rpc backend's tokens)
        chunks, rc = commands.start_quick(token, command, True)
        fired = threading.Event()

        def expire() -> None:
            if commands.kill(token):  # (False: it ended and was read just now)
                fired.set()

        timer = None
        if rc is None and end is not None:
            timer = threading.Timer(max(0.0, end - time.monotonic()), expire)
            timer.daemon = True
            timer.start()
        try:
            while rc is None:
                more, rc = commands.read(token)
                chunks += more
        finally:
            if timer is not None:
                timer.cancel()
        out = b"".join(data for sid, data in chunks if sid == 1)
        err = b"".join(data for sid, data in chunks if sid == 2)
        if fired.is_set():
            raise subprocess.TimeoutExpired(command, timeout or 0.0, out, err)
        return rc, out, err

    return run_command


_RUN_COMMAND = _remote_runner()
