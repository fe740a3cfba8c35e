"""``ClusterExecutor``: a ``concurrent.futures.Executor`` over many servers that
survives their death.

    with ClusterExecutor(local=4) as ex:                # a drop-in for ProcessPoolExecutor
        print(list(ex.map(lambda x: x * x, range(10))))
    with ClusterExecutor("node[1-8]", heartbeat=5) as ex:   # over ssh, as Cluster connects
        fut = ex.submit(simulate, params)
    with ClusterExecutor([client1, client2]) as ex: ...     # Clients you made (any transport)
    with ClusterExecutor.from_slurm() as ex: ...   # in salloc/sbatch: a srun step per node
    with ClusterExecutor("node[1-400]", topology="topology.conf") as ex: ...  # via gateways

Functions and lambdas travel by cloudpickle (``remote.verbs.apply``, as ``Cluster.call``
sends them); ``map`` sends its function once per server and then only the arguments,
in chunks (``execchunks.py``).

One thread per server (a *runner*) connects it, keeps up to ``pipeline`` calls in
flight on it (fewer when items take long: it keeps about ``PIPELINE_WINDOW`` seconds of
work queued there, so long items spread over the servers), reads the replies and
watches the heartbeat (``execrunner.py``). What runs where is decided by the pure
``Scheduler`` (``scheduler.py``); each server is one scheduler host. ``execpool.py``
holds what the executor and its runners share, and the errors below.

What happens when things go wrong:

* A function that raises: its future raises the same exception (the remote traceback
  as its ``__cause__``). It is never retried.
* A server whose connection dies, or that does not answer a ping within ``heartbeat``
  seconds (a frozen host: SIGSTOP, a hung kernel), is *lost*: retired, closed, and the
  items it was running go to other servers (``retries`` times in all; an item that lost
  ``poison_after`` servers is poisonous and fails with ``WorkLost``). A frozen server
  is declared lost at most about 2 heartbeat intervals after it stopped answering.
  The server answers pings from its reading thread while items run, but that thread
  needs the GIL: an item holding it longer than ``heartbeat`` (one long C call) makes
  its server look frozen, so pick a heartbeat above that.
* An item running longer than ``task_timeout`` is *stuck*: its server is reconnected
  (a new server process: the stuck call ends with the old one) and the item is retried
  elsewhere, then fails with ``WorkStuck``. A client that cannot reconnect (a
  ``spawn_local`` client you passed in) is retired instead, and left open.
* No server left: every item not done fails with ``NoHostsLeft``, at once.
* On a SLURM allocation (``from_slurm``), a node SLURM marks DOWN, DRAINED or FAIL is
  lost too, though its server may still answer.

**At-least-once.** An item whose server was lost or stuck is run again elsewhere, and
it may have run partly, or even completely, on the lost server (the reply was lost
with the connection). Retried work must be safe to run twice: idempotent, or writing
its results where a second run replaces the first. ``map`` sends its items in chunks
(by default about 4 per server, as ``multiprocessing.Pool.map``; ``chunksize=1`` for
one call per item), and a chunk is what is rerun: every item of a chunk whose server
was lost runs again, those that had finished there too.

A client that the executor declares lost is closed, even one you passed in (its
connection is dead or frozen). Clients you passed in are otherwise left open at
shutdown; those it made (node names, ``local=``) are closed.

**Through gateways** (``topology=``, tree mode: ``treerelay.py``): each node's session
is held by its gateway (a server of ours bootstrapped over ssh, one connection from
here per first-hop gateway), which forwards the runner's requests (items, pings) and
streams the replies back as they come. The scheduler and its failure classes are
unchanged: a node lost with its gateway (the gateway died or went silent) is *lost*,
and its items rerun on other nodes; a node that neither its gateway nor any other
declared for it can connect is *unreachable*, named with the gateway's error.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from ..client.client import Client
from ..client.local import spawn_local
from ..errors import ConfigError
from ..nodeset.nodeset import NodeSet
from . import jobstate

# (AUTO_CHUNK_MAX, auto_chunksize re-exported: their home was this module; tests use them)
from .execchunks import AUTO_CHUNK_MAX as AUTO_CHUNK_MAX
from .execchunks import auto_chunksize as auto_chunksize
from .execchunks import chunk_runner
from .execpool import (
    MAP_CANCELLED,
    MAP_DONE,
    MapGroup,
    MapItem,
    NoHostsLeft,
    RemoteTraceback,
    Work,
    WorkLost,
    WorkPool,
    WorkStuck,
)
from .execrunner import Runner, Server
from .scheduler import Scheduler
from .slots import slot_keys
from .task import node_list
from .treeexec import SILENCE
from .treerelay import TreeConnector, tree_connector

__all__ = ["ClusterExecutor", "NoHostsLeft", "WorkLost", "WorkStuck"]

TOKENS_KEPT = 256  # functions map() remembers having sent


Nodes = Union[str, NodeSet, Sequence[Union[str, Client]], None]


class ClusterExecutor(concurrent.futures.Executor):
    """An Executor over servers (module docstring).

    ``nodes``: node-set text or a NodeSet (each node connected over ssh as ``Cluster``
    does, with ``connect_options``), or a list of node names and ``Client`` objects
    (any transport); or ``local=N`` for N local server processes. ``client``:
    ``client(node) -> Client`` replaces how a node name is connected. ``retries``:
    reruns of an item whose server was lost or that got stuck (3); ``poison_after``:
    servers an item may lose before it is given up (3); ``task_timeout``: seconds an
    item may run before it is stuck (None: no limit); ``heartbeat``: seconds within
    which a server must answer a ping while it runs our items (2.0); ``pipeline``: most
    calls in flight per server (128).

    ``topology`` (a ``Topology``, a file path, or what ``Topology.build`` takes): reach
    the named nodes through its gateways (module docstring); ``user``, ``extra_args``,
    ``rpython`` and ``connect_timeout`` among ``connect_options`` apply at every level,
    ``gateway_python`` starts the gateways, ``silence`` is the seconds a gateway may
    say nothing before its nodes are lost (30). ``client`` then connects only the nodes
    reached from here (the topology's direct children and nodes it does not list).
    """

    def __init__(
        self,
        nodes: Nodes = None,
        *,
        local: Optional[int] = None,
        client: Optional[Callable[[str], Any]] = None,
        retries: int = 3,
        poison_after: int = 3,
        task_timeout: Optional[float] = None,
        heartbeat: float = 2.0,
        pipeline: int = 128,
        topology: Any = None,
        gateway_python: Optional[str] = None,
        silence: float = SILENCE,
        **connect_options: Any,
    ) -> None:
        if not heartbeat > 0:
            raise ValueError(f"heartbeat must be a number of seconds > 0, not {heartbeat!r}")
        if isinstance(pipeline, bool) or not isinstance(pipeline, int) or pipeline < 1:
            raise ValueError(f"pipeline must be a whole number >= 1, not {pipeline!r}")
        self.heartbeat = heartbeat
        self.pipeline = pipeline
        self._connector: Optional[TreeConnector] = None
        if topology is not None:
            if local is not None:
                raise ConfigError("local=N servers run here: they take no topology")
            self._connector = tree_connector(
                topology, client, gateway_python, silence, connect_options
            )
            client = self._connector.connect
        hosts = self._hosts_from(nodes, local, client, connect_options)
        self._hosts: Dict[str, Server] = {h.name: h for h in hosts}
        sched = Scheduler(
            list(self._hosts),
            slots=pipeline,
            retries=retries,
            poison_after=poison_after,
            retire_after=0,  # an exception is the item's failure, never the server's
            timeout=task_timeout,
            lazy=False,
        )
        self._pool = WorkPool(sched)
        self._ids = itertools.count()
        self._tokens: Dict[Tuple[int, int], Tuple[Any, Any, str]] = {}  # see _token_for
        self._token_ids = itertools.count(1)
        runner = Runner(self._pool, heartbeat, pipeline)
        for name in sched.to_open(time.monotonic()):
            h = self._hosts[name]
            h.thread = threading.Thread(
                target=runner.serve, args=(h,), daemon=True, name=f"easycluster-executor {name}"
            )
            h.thread.start()

    @staticmethod
    def _hosts_from(
        nodes: Nodes,
        local: Optional[int],
        client: Optional[Callable[[str], Any]],
        options: Dict[str, Any],
    ) -> List[Server]:
        if (nodes is None) == (local is None):
            raise ConfigError(
                "ClusterExecutor needs nodes (node names, a node set or Clients) or "
                "local=N, and not both"
            )
        if local is not None:
            if isinstance(local, bool) or not isinstance(local, int) or local < 1:
                raise ValueError(f"local must be a number of servers >= 1, not {local!r}")
            return [
                Server(key, None, lambda: spawn_local(**options))
                for key in slot_keys(["local"] * local)
            ]
        items: List[Union[str, Client]] = (
            list(node_list(nodes)) if isinstance(nodes, (str, NodeSet)) else list(nodes or ())
        )
        if not items:
            raise ConfigError("ClusterExecutor needs at least one node or client")
        labels = []
        for item in items:
            if isinstance(item, Client):
                labels.append(item.peername)
            elif isinstance(item, str) and item:
                labels.append(item)
            else:
                raise TypeError(f"a node is a name or a Client, not {item!r}")
        connect = client or (lambda node: Client(host=node, **options))
        out = []
        for key, item in zip(slot_keys(labels), items):
            if isinstance(item, Client):
                out.append(Server(key, item, None))
            else:
                out.append(Server(key, None, _bind(connect, item)))
        return out

    # -- the Executor interface ----------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on some server; a Future of its value."""
        if not callable(fn):
            raise TypeError(f"submit needs a callable, not {type(fn).__name__}")
        return self._submit([Work(concurrent.futures.Future(), fn, args, kwargs, None)])[0][1]

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: Optional[int] = None,
    ) -> Iterator[Any]:
        """``fn`` over the items, results in input order (as ``Executor.map``): the
        items are all submitted now; an item's exception is raised when the iterator
        reaches it (the values before it are yielded first, also within a chunk);
        ``timeout`` bounds the whole wait from this call (TimeoutError).

        ``chunksize`` items travel and run as one call. None (the default) picks one as
        ``multiprocessing.Pool.map`` does (``auto_chunksize``: about 4 chunks per
        server, at most ``AUTO_CHUNK_MAX`` items); 1 sends every item as its own call.
        A chunk is the unit of fault tolerance: when its server is lost, the whole
        chunk is rerun elsewhere (at-least-once, item by item); it is stuck after
        ``task_timeout`` seconds per item it holds; an item that raises ends its chunk
        (the items after it in the chunk are not run, as the items not started are
        cancelled when the iterator raises)."""
        if chunksize is not None and (
            isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1
        ):
            raise ValueError(f"chunksize must be a whole number >= 1, not {chunksize!r}")
        if not callable(fn):
            raise TypeError(f"map needs a callable, not {type(fn).__name__}")
        end = None if timeout is None else time.monotonic() + timeout
        star = len(iterables) != 1
        items: Iterator[Any] = zip(*iterables) if star else iter(iterables[0])
        if chunksize is None:  # (map submits every item now anyway: list() costs nothing)
            every = list(items)
            chunksize = auto_chunksize(len(every), len(self._hosts))
            items = iter(every)
        group = MapGroup()  # (map's items need no Future each: see MapItem)
        if chunksize == 1:
            target, token = self._token_for(fn, 0)
            if not star:
                items = ((x,) for x in items)
            works = [Work(MapItem(group), target, a, {}, token) for a in items]
            submitted = self._submit(works)
        else:
            target, token = self._token_for(fn, 2 if star else 1)
            works = []
            sizes = []
            while True:
                chunk = list(itertools.islice(items, chunksize))
                if not chunk:
                    break
                works.append(Work(MapItem(group), target, (chunk,), {}, token))
                sizes.append(len(chunk))
            submitted = self._submit(works, sizes)
        if chunksize == 1:
            return self._results(submitted, group, end, False)
        # the chunks' lists, flattened in C: a generator resumed per item cost about as
        # much as the rest of the master's work per item with big chunks
        return itertools.chain.from_iterable(self._results(submitted, group, end, True))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; with ``cancel_futures`` cancel the items not started;
        with ``wait`` return once every item has finished and the servers this executor
        started are closed."""
        with self._pool.lock:
            self._pool.closing = True
            if cancel_futures:
                for job, state in list(self._pool.sched.jobs.items()):
                    if state.state == jobstate.QUEUED:
                        self._pool.sched.cancel(job)
            self._pool.sched.close()
            settled = self._pool.take_settled()
            self._pool.wake.notify_all()
        self._pool.finish(settled)
        if wait:
            for h in self._hosts.values():
                if h.thread is not None:
                    h.thread.join()
            if self._connector is not None:
                self._connector.close()
        elif self._connector is not None:  # closed once the runners are done with it
            threading.Thread(target=self._close_connector, daemon=True).start()

    def _close_connector(self) -> None:
        for h in self._hosts.values():
            if h.thread is not None:
                h.thread.join()
        if self._connector is not None:
            self._connector.close()

    # -- submitting and results ----------------------------------------------------------

    def _token_for(self, fn: Any, form: int) -> Tuple[Any, str]:
        """What map() registers on the servers for ``fn`` (``form`` 0: the function;
        1 or 2: its chunk runner, 2 for argument tuples) and the name it goes by there;
        the same function is sent once."""
        key = (id(fn), form)
        with self._pool.lock:
            known = self._tokens.get(key)
            if known is not None and known[0] is fn:  # (kept alive: its id is not reused)
                return known[1], known[2]
        target = chunk_runner(fn, form == 2) if form else fn
        token = f"_easycluster_executor_{id(self):x}_{next(self._token_ids)}"
        with self._pool.lock:
            if len(self._tokens) >= TOKENS_KEPT:
                self._tokens.clear()
            self._tokens[key] = (fn, target, token)
        return target, token

    def _submit(
        self, works: List[Work], sizes: Optional[List[int]] = None
    ) -> List[Tuple[int, Any]]:
        """Queue the items; ``sizes``: items per chunk, whose deadline is
        ``task_timeout`` per item it holds (a chunk of 100 items of 1 s is not stuck
        after a ``task_timeout`` of 5 s)."""
        out = []
        per_item = self._pool.sched.timeout
        with self._pool.lock:
            if self._pool.closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            for i, w in enumerate(works):
                job = next(self._ids)
                self._pool.work[job] = w
                if sizes is not None and per_item is not None and sizes[i] > 1:
                    self._pool.sched.add(job, per_item * sizes[i])
                else:
                    self._pool.sched.add(job)
                out.append((job, w.future))
            settled = self._pool.take_settled()  # (no server left: settled at once)
            if self._pool.idle:
                self._pool.wake.notify_all()
        self._pool.finish(settled)
        return out

    def _results(
        self,
        submitted: List[Tuple[int, Any]],
        group: MapGroup,
        end: Optional[float],
        chunked: bool,
    ) -> Iterator[Any]:
        """The values in order (``chunked``: each chunk's list of values), each as it
        comes; an item's exception raised in its place; what is left is cancelled when
        this ends early (an exception, or the caller dropped the iterator)."""
        pending = list(reversed(submitted))
        try:
            while pending:
                item: MapItem = pending[-1][1]
                while item.state < MAP_DONE:
                    if end is None:
                        group.wait(item, None)
                    else:
                        left = end - time.monotonic()
                        if left <= 0:
                            raise concurrent.futures.TimeoutError()
                        group.wait(item, left)
                pending.pop()
                if item.state == MAP_CANCELLED:
                    raise concurrent.futures.CancelledError()
                if item.error is not None:
                    raise item.error
                value = item.value
                if not chunked:
                    yield value
                elif type(value) is tuple:  # an item raised: see execchunks.chunk_runner
                    values, _index, error, text = value
                    yield values
                    if text:
                        error.__cause__ = RemoteTraceback("\n" + "".join(text).rstrip())
                    raise error
                else:
                    yield value
        finally:
            if pending:
                self._cancel(pending)

    def _cancel(self, items: List[Tuple[int, Any]]) -> None:
        """Cancel items not started (the rest of a map that was left or failed)."""
        with self._pool.lock:
            for job, _fut in items:
                state = self._pool.sched.jobs.get(job)
                if state is not None and state.state == jobstate.QUEUED:
                    self._pool.sched.cancel(job)
            settled = self._pool.take_settled()
        self._pool.finish(settled)

    def __repr__(self) -> str:
        c = self._pool.sched.counts()
        return (
            f"<ClusterExecutor {len(self._hosts)} servers ({c['retired']} retired), "
            f"{c['done']} done, {c['running']} running, {c['queued']} queued>"
        )

    # -- on a SLURM allocation -----------------------------------------------------------

    @classmethod
    def from_slurm(
        cls,
        nodes: Union[str, NodeSet, Sequence[str], None] = None,
        jobid: Union[str, int, None] = None,
        *,
        watch_interval: float = 3.0,
        **kw: Any,
    ) -> ClusterExecutor:
        """An executor over SLURM allocation ``jobid`` (default: ``$SLURM_JOB_ID``): one
        server per node, each started by its runner as its own ``srun`` step on that
        node (``launch/srun.py``: nothing installed there beyond Python); ``nodes`` picks
        some of the allocation's nodes (node-set text, a NodeSet or names; default: all).

        ``kw`` holds the executor's own options (``retries``, ``poison_after``,
        ``task_timeout``, ``heartbeat``, ``pipeline``) and, for the rest, how a server
        starts (``rpython=``, ``srun=``, ``connect_timeout=``, ``enable_compression=``...,
        as ``srun_client`` takes them).

        Besides the heartbeat (still the primary signal), SLURM is asked every
        ``watch_interval`` seconds for the nodes' states (``launch/slurmwatch.py``): a
        node it marks DOWN, DRAINED/DRAINING or FAIL(ING) is lost as a server that died
        is (its client closed, which cancels its step; its items rerun elsewhere under
        ``retries`` and ``poison_after``). A node whose step cannot start is unreachable.
        Errors about the request itself (srun missing, outside any allocation, a node
        not in it) raise ConfigError here, before any step starts."""
        import inspect

        from ..client.spec import srun_client
        from ..launch import slurmwatch, srun

        job = srun.current_jobid(jobid)
        srun.slurm_program("srun", kw.get("srun"))
        job, members, names = srun.allocation_targets(
            None if nodes is None else node_list(nodes), job
        )
        names = list(dict.fromkeys(names))  # one server per node, named by it
        # the executor's keyword-only options by its signature, so a new one needs no
        # second list here; everything else is how a server starts
        own = {
            name
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind is p.KEYWORD_ONLY and name not in ("local", "client")
        }
        connect_options = {k: v for k, v in kw.items() if k not in own}

        def connect(node: str) -> Client:
            client: Client = srun_client(Client, node, job, members=members, **connect_options)
            return client

        ex = cls(names, client=connect, **{k: v for k, v in kw.items() if k in own})
        slurmwatch.SlurmWatch(names, ex._condemn, watch_interval, until=ex._runners_ended).start()
        return ex

    def _condemn(self, node: str, why: str) -> None:
        """From the SLURM watch's thread: ``node``'s server is to be lost (its runner
        does it: it owns the client), and idle runners woken so it sees it now."""
        with self._pool.lock:
            h = self._hosts.get(node)
            if h is not None and h.condemned is None:
                h.condemned = why
                self._pool.wake.notify_all()

    def _runners_ended(self) -> bool:
        """Every runner thread has ended (shut down, or no server left)."""
        return all(h.thread is None or not h.thread.is_alive() for h in self._hosts.values())


def _bind(connect: Callable[[str], Any], node: str) -> Callable[[], Any]:
    return lambda: connect(node)
