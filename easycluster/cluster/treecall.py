"""Python calls through the tree: ``func(*args, **kwargs)`` on many nodes, each reached
through its gateway, with each node's value or exception as a flat call gives it.

``TreeCaller(topology, opts, root)`` stands at one node of the tree (the admin, or a
gateway doing its share for its parent; the same code runs at every level) and keeps
sessions open from one call to the next:

- to each target reached from here (children of ``root``, nodes the topology does not
  list): a ``Client`` over ssh, as a flat ``Cluster`` connects it;
- to each first-hop gateway: a gateway server (``treerun.open_gateway``), which keeps
  its own ``TreeCaller`` (and so its sessions to its nodes) in ``CALLERS`` for the next
  call of the same parent.

Routes are sticky: a target keeps its gateway, and so its session, from call to call;
only a gateway's failure moves it (``Router.fail``).

``call(names, func, args, kwargs)`` returns ``{node: (kind, value)}``:

    OK           the call returned ``value``
    RAISED       the call raised: ``value`` is the exception in the value's place, as
                 ``call_each`` gives it (noted "(from node)"), also for a
                 session that died mid-call or a ``call_timeout`` passed
    UNREACHABLE  the node could not be connected (``value``: the error), or no live
                 gateway leads to it, or its gateway could not be reached
    LOST         its gateway died, or said nothing for ``opts["silence"]`` seconds,
                 mid-call, and no other gateway is declared for it (``value``: a
                 ``ConnectionLost`` naming the gateway)

``func`` None only connects (every reachable node: OK, None).

One thread per first-hop gateway: ``gateway_call_start`` (the function travels as an
argument: cloudpickled here, rebuilt on the gateway, sent on to its nodes), then long
polls (``gateway_call_read``), each answered within ``HEARTBEAT`` seconds (an empty
answer while the gateway's calls run) and each bounded by ``opts["silence"]``. So a
gateway whose connection ends (it died) or that is silent past the deadline (frozen)
is known at once or within ``silence`` seconds, never waited for without bound: its
targets go through another declared gateway (the call runs again there from the start:
at-least-once, as the executor's retries) or end LOST. A gateway that cannot be opened:
the same, ending as UNREACHABLE.
"""

from __future__ import annotations

import itertools
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..client.client import Client
from ..client.parallel import call_each
from ..errors import CallTimeout, ConnectError, ConnectionLost, RemoteException
from ..launch.ssh import open_channel
from ..protocol.messages import SINGLE
from .routing import Plan, Router
from .topology import Topology
from .treeboot import Payloads
from .treeopts import gateway_options
from .treerun import SILENCE, open_gateway

ENTRY = "easycluster.cluster.treecall."  # the gateway's entry points (called by name)
# What a gateway for calls carries on top of a server's: this module and its imports
# (treerun.py among them: the same gateway runs shell commands too).
CALL_ROOTS = ("easycluster.cluster.treecall",)
HEARTBEAT = 1.0  # s a gateway's read waits at most before answering "still running"

OK = "ok"
RAISED = "raised"
UNREACHABLE = "unreachable"
LOST = "lost"

Result = Tuple[str, Any]  # (kind, value or exception)


def call_options(
    ssh_options: Sequence[str] = (),
    user: Optional[str] = None,
    rpython: Optional[str] = None,
    gateway_python: Optional[str] = None,
    connect_timeout: float = 10.0,
    call_timeout: Optional[float] = None,
    silence: float = SILENCE,
    fanout: int = 64,
) -> Dict[str, Any]:
    """The options of a tree caller, as plain data (they travel to every gateway): those
    of ``treeopts.gateway_options`` (``fanout``: connections opened at once per host),
    and ``call_timeout`` (seconds a node's call may take; None: no bound)."""
    opts = gateway_options(
        ssh_options, user, rpython, gateway_python, connect_timeout, silence, fanout
    )
    opts["call_timeout"] = call_timeout
    return opts


class GatewayFailed(Exception):
    """A gateway failed while serving a call (internal: turned into per-node results)."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(stage, error)
        self.stage = stage  # UNREACHABLE (never started our call) or LOST
        self.error = error


class TreeCaller:
    """Sessions through the tree, reused across calls (module docstring). ``connect``
    replaces how a direct target's session is made (``connect(node) -> Client``);
    ``boot`` is the gateway payload and ``node_boot`` the server payload (each built
    here on first need when None: a gateway runs from memory, so its parent sends both
    along with its first call). One call at a time (a session is used by one thread);
    ``close()`` ends every session."""

    def __init__(
        self,
        topology: Topology,
        opts: Dict[str, Any],
        root: Optional[str] = None,
        boot: Optional[bytes] = None,
        connect: Optional[Callable[[str], Client]] = None,
        node_boot: Optional[bytes] = None,
    ) -> None:
        self.topology = topology
        self.opts = opts
        self.boots = Payloads(CALL_ROOTS, boot, node_boot)
        self.router = Router(topology, root)
        self.root = self.router.root
        self.connect = connect or self._connect
        self.sessions: Dict[str, Client] = {}  # direct targets
        self.gateways: Dict[str, Client] = {}  # first-hop gateways
        self.shipped: Set[str] = set()  # gateways (connections) that have the payloads
        self.lock = threading.Lock()  # one call() at a time
        self.state = threading.Lock()  # the router and the session tables
        self.opening: Dict[str, threading.Lock] = {}  # per gateway: one opens it
        # "node set: gw1 -> gw3" for each move, and the reason of each loss
        self.rerouted: List[str] = []

    # -- the call --------------------------------------------------------------------

    def call(
        self,
        names: Sequence[str],
        func: Any,
        args: Sequence[Any] = (),
        kwargs: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Result]:
        """``func(*args, **kwargs)`` on every node of ``names`` (each once), wherever it
        is in the tree; ``func`` a remote function's name or a callable (sent by
        cloudpickle), None to connect only. Returns ``{node: (kind, value)}`` for every
        node (module docstring); never raises for one node's or gateway's failure. One
        call at a time (``run_call`` is the same without that lock)."""
        with self.lock:
            return self.run_call(names, func, args, kwargs)

    def run_call(
        self,
        names: Sequence[str],
        func: Any,
        args: Sequence[Any] = (),
        kwargs: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Result]:
        """``call`` without its lock: a gateway serves its parent's calls at once (their
        targets are disjoint: each node's session is used by one call at a time)."""
        todo = list(dict.fromkeys(names))
        out: Dict[str, Result] = {}
        # (gateway, or None for this host; share; results or failure) as each part ends
        ended: queue.Queue[Tuple[Optional[str], List[str], Any]] = queue.Queue()
        running = 0
        call = (func, tuple(args), kwargs or {})

        def part(gw: Optional[str], share: List[str]) -> None:
            got: Any
            try:
                got = self._via(gw, share, *call) if gw else self._direct(share, *call)
            except GatewayFailed as e:
                got = e
            except BaseException as e:  # (a bug here): each node of the part says so
                got = {node: (RAISED, e) for node in share}
            ended.put((gw, share, got))

        def launch(plan: Plan) -> None:
            nonlocal running
            why = f"no live gateway leads to it from {self.root}"
            for node in plan.lost:
                out[node] = (UNREACHABLE, ConnectError(f"{node}: {why}"))
            parts: List[Tuple[Optional[str], Set[str]]] = sorted(plan.via.items())
            if plan.direct:
                parts.append((None, plan.direct))
            for gw, share in parts:
                running += 1
                name = f"easycluster-call {gw or self.root}"
                thread = threading.Thread(
                    target=part, args=(gw, sorted(share)), daemon=True, name=name
                )
                thread.start()

        with self.state:
            plan = self.router.route(todo)
        launch(plan)
        while running:  # (bounded: a gateway's read is bounded by the silence deadline)
            gw, share, got = ended.get()
            running -= 1
            if isinstance(got, GatewayFailed):  # at once, whatever the others do
                launch(self._reroute(str(gw), set(share), got, out))
            else:
                for node in share:  # (a part answers for each node of its share)
                    out[node] = got.get(node) or (LOST, ConnectionLost(f"{gw}: no result"))
        gone = (LOST, ConnectionLost("no result came back"))  # (never expected)
        return {node: out.get(node, gone) for node in todo}

    def _reroute(
        self, gw: str, share: Set[str], failure: GatewayFailed, out: Dict[str, Result]
    ) -> Plan:
        """Gateway ``gw`` failed serving ``share``: the plan that moves it to another
        declared gateway (or to this host); the nodes with no route left end here."""
        self._drop_gateway(gw)
        with self.state:
            self.router.fail(gw)
            self.router.release(share)  # (routed afresh: other gateways may be dead too)
            moved = self.router.route(sorted(share))
        what = "unreachable" if failure.stage == UNREACHABLE else "lost"
        why = f"gateway {gw} {what}: {failure.error}"
        for node in moved.lost:
            out[node] = (failure.stage, ConnectionLost(f"{node}: {why}"))
        if moved.direct:
            self.rerouted.append(f"{','.join(sorted(moved.direct))}: {gw} -> {self.root}")
        for other, nodes in sorted(moved.via.items()):
            self.rerouted.append(f"{','.join(sorted(nodes))}: {gw} -> {other}")
        moved.lost = set()
        return moved

    # -- direct targets --------------------------------------------------------------

    def _connect(self, node: str) -> Client:
        """A session to ``node`` over ssh, as ``Client(host=node, ...)`` makes it, with
        the server payload given (a gateway has no source files to build one from)."""
        opts = self.opts
        client = Client(connect_timeout=opts["connect_timeout"], remote_output=False)
        channel, closer, name = open_channel(
            node,
            user=opts["user"],
            rpython=opts["rpython"],
            extra_args=opts["ssh_options"],
            options=client.wire_options(),
            timeout=opts["connect_timeout"],
            payload_data=self.boots.node(),
        )
        client.attach(channel, name, closer)
        return client

    def _direct(
        self, names: List[str], func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]
    ) -> Dict[str, Result]:
        out: Dict[str, Result] = {}
        missing = [n for n in names if n not in self.sessions or not self.sessions[n].connected]
        if missing:
            workers = max(1, min(int(self.opts["fanout"]), len(missing)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {n: pool.submit(self.connect, n) for n in missing}
                for node, fut in futures.items():
                    old = self.sessions.pop(node, None)
                    if old is not None:
                        old.close()
                    try:
                        self.sessions[node] = fut.result()
                    except Exception as e:  # that node's outcome, kept by name
                        out[node] = (UNREACHABLE, e)
        live = [n for n in names if n not in out]
        if func is None:
            out.update((n, (OK, None)) for n in live)
            return out
        got = call_each(  # (each exception in its node's place, nothing printed)
            [self.sessions[n] for n in live], func, args, kwargs, self.opts["call_timeout"]
        )
        for node, (returned, value) in zip(live, got):
            out[node] = (OK if returned else RAISED, value)  # (an exception returned: OK)
        return out

    # -- gateways --------------------------------------------------------------------

    def _gateway(self, gw: str) -> Client:
        """The open session to gateway ``gw``, opened now if there is none."""
        with self.state:
            lock = self.opening.setdefault(gw, threading.Lock())
        with lock:
            client = self.gateways.get(gw)
            if client is not None and client.connected:
                return client
            opts = self.opts
            ssh = list(opts["ssh_options"]) + (["-l", opts["user"]] if opts["user"] else [])
            client = open_gateway(
                gw, ssh, opts["connect_timeout"], opts["gateway_python"], self.boots.gateway()
            )
            with self.state:
                self.gateways[gw] = client
                self.shipped.discard(gw)
            return client

    def _drop_gateway(self, gw: str) -> None:
        with self.state:
            self.shipped.discard(gw)
            client = self.gateways.pop(gw, None)
        if client is not None:
            client.close()  # (its server ends, and with it its sessions to the nodes)

    def _via(
        self,
        gw: str,
        share: List[str],
        func: Any,
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
    ) -> Dict[str, Result]:
        """``share``'s results from gateway ``gw``; GatewayFailed when it fails."""
        silence = float(self.opts["silence"])
        stage = UNREACHABLE  # until the gateway took the call: then LOST
        try:
            client = self._gateway(gw)
            boots = None
            if gw not in self.shipped:  # (first call on this connection: the payloads)
                boots = self.boots.for_gateway(self.topology, gw)
            token = client.call(
                ENTRY + "gateway_call_start",
                share,
                self.topology.to_text(),
                gw,
                self.opts,
                boots,
                func,
                args,
                kwargs,
                threadid=SINGLE,
                call_timeout=silence,
                origexc=False,
            )
            self.shipped.add(gw)
            stage = LOST
            while True:
                done, got = client.call(
                    ENTRY + "gateway_call_read",
                    token,
                    threadid=SINGLE,
                    call_timeout=silence,
                    origexc=False,
                )
                if done:
                    return dict(got)
        except RemoteException as e:  # the gateway raised: each node of its share did
            error = e.orig if e.orig is not None else e
            return {node: (RAISED, error) for node in share}
        except (ConnectionLost, CallTimeout, OSError) as e:
            raise GatewayFailed(stage, e) from None
        except Exception as e:  # (e.g. a payload that cannot be built): named, not lost
            raise GatewayFailed(stage, e) from None

    def close(self) -> None:
        """End every session (gateways end theirs with them)."""
        with self.state:
            clients = [*self.sessions.values(), *self.gateways.values()]
            self.sessions, self.gateways = {}, {}
        for c in clients:
            c.close()


# -- the gateway's entry points (called by name by the parent) -----------------------

# This gateway's callers, by (root, topology, options): their sessions outlive a call.
CALLERS: Dict[Tuple[str, str, str], TreeCaller] = {}
JOBS: Dict[int, _Job] = {}  # calls running here, by token
_LOCK = threading.Lock()
_TOKENS = itertools.count(1)


class _Job:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.results: Dict[str, Result] = {}

    def run(self, caller: TreeCaller, targets: List[str], func: Any, args: Any, kw: Any) -> None:
        try:
            self.results = caller.run_call(targets, func, args, kw)
        except BaseException as e:  # reported per node, never dropped
            self.results = {node: (RAISED, e) for node in targets}
        finally:
            self.done.set()


def gateway_call_start(
    targets: List[str],
    topology_text: str,
    me: str,
    opts: Dict[str, Any],
    boots: Optional[Tuple[Optional[bytes], bytes]],
    func: Any,
    args: Sequence[Any],
    kwargs: Dict[str, Any],
) -> int:
    """Start ``func(*args, **kwargs)`` on ``targets``, rooted at ``me`` (this gateway),
    with the sessions of earlier calls; returns the token for ``gateway_call_read``.
    ``boots``: ``(gateway payload or None, server payload)``, sent with the first call
    of a connection (a gateway runs from memory, with no files to build them from; the
    gateway payload only when gateways are below this one)."""
    key = (me, topology_text, repr(sorted(opts.items())))
    with _LOCK:
        caller = CALLERS.get(key)
        if caller is None:
            caller = CALLERS[key] = TreeCaller(Topology.build(topology_text), opts, me)
        if boots is not None:
            caller.boots.take(boots)
        token = next(_TOKENS)
        job = JOBS[token] = _Job()
    threading.Thread(
        target=job.run, args=(caller, list(targets), func, args, kwargs), daemon=True
    ).start()
    return token


def gateway_call_read(token: int, wait: float = HEARTBEAT) -> Tuple[bool, Dict[str, Result]]:
    """``(True, results)`` once call ``token`` ended (then it is forgotten), else
    ``(False, {})`` after ``wait`` seconds (the heartbeat that says this gateway lives)."""
    with _LOCK:
        job = JOBS.get(token)
    if job is None:
        raise KeyError(f"no tree call {token} on this gateway")
    if not job.done.wait(wait):
        return False, {}
    with _LOCK:
        JOBS.pop(token, None)
    return True, job.results
