"""``Task``, ``Worker``, ``Timer`` and ``task_self``: ClusterShell's vocabulary, our engine.

A Task collects work (``shell``, ``copy``, ``rcopy``, ``timer``) and runs it when its thread calls
``resume()`` (or ``run()``): that thread owns all the Task's I/O and runs every handler
(``engine.py``). One Task per thread: ``task_self()`` returns the calling thread's. A
Task is not thread-safe: configure and run it from one thread; ``abort()`` and
``worker.abort()`` may be called from a handler, ``abort()``, ``join()``, ``suspend()``
and (to end a suspension) ``resume()`` from any thread (``suspension.py``), and another
thread hands the Task work through a ``port()`` (``port.py``).

Results are kept per slot (``results.py``): a node listed twice runs twice, under the
keys ``node`` and ``node#2``. They are those of the last run, kept until the next
``resume()`` starts (work scheduled meanwhile has its slots in ``upcoming``); the
getters are ``TaskResults``'s (``taskresults.py``).
"""

from __future__ import annotations

import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Optional,
    Tuple,
    Union,
)

from ..errors import TaskTimeout
from .backends import Backend, ExecBackend
from .engine import Engine
from .events import EventHandler
from .feed import Stdin, make_feed
from .port import Port, TaskPorts
from .results import Results, SlotResult
from .slots import Nodes as Nodes
from .slots import node_list as node_list  # (re-exported: its home before slots.py)
from .suspension import Suspension, TaskSuspend
from .taskresults import TaskResults
from .tasksettings import DEFAULT_BACKEND, INFO_DEFAULTS, TaskSettings
from .taskthreads import local, register
from .taskthreads import task_cleanup as task_cleanup
from .taskthreads import task_terminate as task_terminate
from .taskthreads import task_wait as task_wait
from .topology import Topology
from .window import FanoutWindow
from .worker import Timer, Worker

if TYPE_CHECKING:  # (loaded on first use of "rpc": it brings the client stack)
    from .rpc import RpcBackend

APPLY = "easycluster.remote.verbs.apply"  # the remote helper that calls a shipped callable
NODE_EVENTS = frozenset(("ev_pickup", "ev_read", "ev_written", "ev_hup"))  # (worker, node, ...)


class Task(TaskSettings, TaskResults, TaskPorts, TaskSuspend):
    """Work to run on many nodes, and the results of the last run. See ``task_self``;
    the settings (``set_info``, ``set_default``, ``backend``) are ``TaskSettings``'s, the
    getters ``TaskResults``'s, ``port()`` ``TaskPorts``'s, ``suspend()`` ``TaskSuspend``'s."""

    def __init__(self) -> None:
        self.infos: Dict[str, Any] = dict(INFO_DEFAULTS)
        self.defaults: Dict[str, Any] = {"backend": DEFAULT_BACKEND, "stderr": True}
        self.results = Results()  # the last run's (the current one's while running)
        self.upcoming = Results()  # the slots of work scheduled for the next resume()
        self.window = FanoutWindow(self.infos["fanout"])
        self.engine: Optional[Engine] = None  # while running
        self.workers: List[Worker] = []  # scheduled, not run yet
        self.timers: List[Tuple[Timer, float]] = []  # armed before resume
        self.aborting = False
        self.thread: Optional[threading.Thread] = None  # the thread in resume()
        self.idle = threading.Event()  # set when no run is in progress (join)
        self.idle.set()
        self.lock = threading.RLock()  # orders resume()'s start and end with abort()
        self._rpc: Optional[RpcBackend] = None  # sessions, made on first use of "rpc"
        self.topology: Optional[Topology] = None  # tree mode (load_topology)
        self.tree_workers: List[Any] = []  # tree workers of the coming or current run
        self.tree_caller: Optional[Any] = None  # tree mode's sessions for call()
        self.ports: List[Port] = []  # message ports (port.py), until closed
        self.suspension = Suspension()  # suspend() and its resume() (suspension.py)
        register(self)

    # -- calls (settings: tasksettings.py) ---------------------------------------------

    def call(
        self, func: Union[str, Callable[..., Any]], *args: Any, nodes: Nodes, **kwargs: Any
    ) -> Dict[str, Any]:
        """``func(*args, **kwargs)`` on every node of ``nodes``, in parallel, over the
        sessions of the RPC backend (the ones ``shell(..., backend="rpc")`` uses):
        ``{node: value}``, or the exception in place of the value for a node that
        raised or could not be reached. A callable is sent by cloudpickle; a string
        names a remote function. Runs now, on the calling thread (not by ``resume``).
        With a topology (``load_topology``), through the gateways (``treecall.py``)."""
        names = list(dict.fromkeys(node_list(nodes)))
        target: Any = func
        if callable(func):
            target, args = APPLY, (func, *args)
        if self.topology is not None:
            from .treeworker import tree_call  # (the client stack only for tree mode)

            return tree_call(self, names, target, args, kwargs)
        return self.rpc_backend().call_all(names, target, *args, **kwargs)

    # -- scheduling --------------------------------------------------------------------

    def shell(
        self,
        command: str,
        nodes: Nodes = None,
        handler: Optional[EventHandler] = None,
        timeout: Optional[float] = None,
        stdin: Stdin = None,
        stderr: Optional[bool] = None,
        key: Optional[str] = None,
        backend: Union[str, Backend, None] = None,
        tree: Optional[bool] = None,
        autoclose: bool = False,
        remote: bool = True,
    ) -> Worker:
        """Schedule ``command`` on every node of ``nodes`` (or once locally, under ``key``
        or ``"local"``, when ``nodes`` is None) and return its ``Worker``.

        ``timeout``: seconds per node (default: the ``command_timeout`` info, 0 = none);
        a node past it is killed (status ``timeout``, no ``ev_hup``). ``stdin``: bytes
        (the same bytes to every node, then EOF), a readable file object or descriptor
        (its content broadcast as it comes), True (write it with ``worker.write`` and
        end it with ``worker.set_write_eof``), False (/dev/null), or None (the
        ``set_default("stdin", ...)`` value if one was set, else open for
        ``worker.write`` until the worker's first node starts, as ClusterShell's default;
        /dev/null if nothing was written by then: see ``Worker.write``).
        ``autoclose``: the worker does not keep ``resume()`` running; once only such
        workers (and autoclose timers) are left, they are aborted (status ``aborted``,
        ``ev_close``) and the run ends. ``stderr``: keep
        stderr apart (default True) or merge it into stdout. ``backend``: "ssh" (default),
        "exec" or a ``Backend``; ``nodes=None`` always runs locally. ``tree``: run
        through the gateways of ``load_topology`` (None: when a topology is loaded and
        the backend is ssh; True: always, ValueError without a topology); the handlers
        and results are the same as flat, each node runs once, stdin goes through the
        gateways (``treeworker.py``). ``remote=False`` (ClusterShell's) is
        ``backend="exec"``: the command runs here, once per node (``%h`` its name).
        """
        if not remote and backend is None:
            backend = "exec"
        if stdin is None:  # (set_default("stdin", False) as in ClusterShell; unset: None)
            stdin = self.defaults.get("stdin")
        if nodes is not None and self.use_tree(tree, backend, stdin):
            return self.tree_shell(command, node_list(nodes), handler, timeout, stderr, stdin)
        if nodes is None:
            names = [key or "local"]
            chosen: Backend = ExecBackend() if backend is None else self.backend(backend)
        else:
            names = node_list(nodes)
            chosen = self.backend(backend)
        keys = self.new_keys(names)
        worker = Worker(
            self,
            command,
            keys,
            handler,
            self.command_timeout(timeout),
            chosen,
            self.defaults.get("stderr", True) if stderr is None else bool(stderr),
            make_feed(stdin),
            autoclose=autoclose,
            open_stdin=stdin is None,
        )
        return self.schedule(worker)

    def use_tree(self, tree: Optional[bool], backend: Any, stdin: Stdin) -> bool:
        if tree is False:
            return False
        if tree is None:
            ssh = (self.defaults.get("backend") if backend is None else backend) == "ssh"
            return self.topology is not None and ssh and stdin is not True
        if self.topology is None:
            raise ValueError("tree mode needs a topology: Task.load_topology(...) first")
        if stdin is True:
            raise ValueError("tree mode sends bytes, a file or a descriptor as stdin, not True")
        return True

    def tree_shell(
        self,
        command: str,
        names: List[str],
        handler: Optional[EventHandler],
        timeout: Optional[float],
        stderr: Optional[bool],
        stdin: Stdin = None,
    ) -> Worker:
        """Schedule ``command`` through the gateways (each node once)."""
        from .treeworker import TreeWorker  # (the client stack only for tree mode)

        if self.topology is None:
            raise ValueError("tree mode needs a topology: call load_topology() first")
        keys = self.new_keys(list(dict.fromkeys(names)))
        keep = self.defaults.get("stderr", True) if stderr is None else bool(stderr)
        worker = TreeWorker(
            self, command, keys, handler, self.command_timeout(timeout), keep, self.topology, stdin
        )
        self.tree_workers.append(worker)
        worker.arm()
        return worker

    def copy(
        self,
        source: str,
        dest: str,
        nodes: Nodes = None,
        handler: Optional[EventHandler] = None,
        timeout: Optional[float] = None,
        preserve: bool = False,
        reverse: bool = False,
        backend: Union[str, Backend, None] = None,
        tree: Optional[bool] = None,
    ) -> Worker:
        """Schedule copying the local file or directory ``source`` to ``dest`` on every
        node of ``nodes`` (``reverse=True``: ``rcopy``) and return its ``Worker``.

        On each node: if ``dest`` is an existing directory the copy is
        ``dest/<basename of source>``, else it is ``dest`` (its directory must exist; a
        leading ``~`` or ``~/`` is the node user's home, ``~user`` a ValueError). It
        is written to a temporary next to it and renamed into place only when every byte
        arrived, so a copy that fails leaves neither a partial file under that name nor
        its temporary (``copy.py`` draws the receiver). A directory replaces a directory
        of that name as a whole. ``preserve``: keep mode and mtime (else the mode is the
        source's less the node's umask, the mtime now). A node's failure is a non-zero
        return code (1) with the reason in its error buffer. Raises FileNotFoundError for
        a missing ``source`` (ValueError for one that is neither file nor directory)
        before anything is scheduled. ``timeout``, ``handler``, ``backend``, ``tree`` as
        for ``shell()`` (through the gateways: streamed, each node once, ``treecopy.py``);
        ``nodes`` is required.
        """
        if reverse:
            return self.rcopy(source, dest, nodes, handler, timeout, preserve, backend, tree)
        names, chosen = self.copy_targets(nodes, backend)
        if self.use_tree(tree, backend, None):
            from .treecopy import tree_copy  # (the client stack only for tree mode)

            return tree_copy(self, source, dest, names, handler, timeout, preserve)
        from .taskcopy import push_worker  # (tarfile & co. only for copies: see DEFERRED)

        return self.schedule(
            push_worker(self, source, dest, names, chosen, handler, timeout, preserve)
        )

    def rcopy(
        self,
        source: str,
        dest: str,
        nodes: Nodes = None,
        handler: Optional[EventHandler] = None,
        timeout: Optional[float] = None,
        preserve: bool = False,
        backend: Union[str, Backend, None] = None,
        tree: Optional[bool] = None,
    ) -> Worker:
        """Schedule copying the file or directory ``source`` of every node of ``nodes``
        into the local directory ``dest`` and return its ``Worker``.

        Each slot's copy is ``dest/<basename of source>.<node>`` (``.<node>~k`` for the
        k-th listing of a node, ``/`` in a node's name as ``_``; see
        ``copy.pull_names``), written to a temporary in ``dest`` and renamed only when
        the node's command ended with 0 (removed otherwise). Raises NotADirectoryError if
        ``dest`` is not an existing directory, ValueError if ``source`` has no base name,
        before anything is scheduled. The slots' stdout carries the data: it is not kept
        in the buffers and gives no ``ev_read`` (stderr does). Other arguments as for
        ``copy()``.
        """
        if nodes is not None and self.use_tree(tree, backend, None):
            from .treecopy import tree_rcopy  # (the client stack only for tree mode)

            return tree_rcopy(self, source, dest, node_list(nodes), handler, timeout, preserve)
        from .taskcopy import pull_worker  # (see copy())

        names, chosen = self.copy_targets(nodes, backend)
        return self.schedule(
            pull_worker(self, source, dest, names, chosen, handler, timeout, preserve)
        )

    def copy_targets(
        self, nodes: Nodes, backend: Union[str, Backend, None]
    ) -> Tuple[List[str], Backend]:
        if nodes is None:
            raise ValueError("copy and rcopy need nodes")
        return node_list(nodes), self.backend(backend)

    def new_keys(self, names: List[str]) -> List[str]:
        """New slots for ``names``: in the run going on, else in the next one's
        (``upcoming``: the last run's results stay readable until ``resume()``)."""
        if self.engine is not None and threading.current_thread() is not self.thread:
            raise RuntimeError(
                "Task.shell() during a run: call it from a handler (the Task's thread), "
                "or before resume()"
            )
        slots = self.scheduled()
        return [slots.new_slot(n, rank).key for rank, n in enumerate(names)]

    def scheduled(self) -> Results:
        """The results new work's slots go in: the current run's while it runs, else
        the next one's (``upcoming``)."""
        return self.results if self.engine is not None else self.upcoming

    def slot(self, key: str) -> SlotResult:
        """Slot ``key`` of work scheduled for the next run, or else of the current or
        last run (KeyError if neither has it)."""
        found = self.upcoming.slots.get(key) if self.engine is None else None
        return found if found is not None else self.results.slot(key)

    def command_timeout(self, timeout: Optional[float]) -> Optional[float]:
        """``timeout``, or the ``command_timeout`` info when it is None (0: none)."""
        if timeout is None:
            return self.infos.get("command_timeout") or None
        return timeout

    def schedule(self, worker: Worker) -> Worker:
        if self.engine is not None:
            self.engine.add_worker(worker)
        else:
            self.workers.append(worker)
        return worker

    def timer(
        self, fire: float, handler: Any, interval: float = -1, autoclose: bool = False
    ) -> Timer:
        """A timer firing ``handler.ev_timer(timer)`` ``fire`` s after ``resume()`` starts
        (or from now if running), then every ``interval`` s if > 0."""
        timer = Timer(self, fire, handler, interval, autoclose)
        self.arm_timer(timer, fire)
        return timer

    def arm_timer(self, timer: Timer, delay: float) -> None:
        if self.engine is not None:
            self.engine.add_timer(timer, delay)
        else:
            self.timers = [(t, d) for t, d in self.timers if t is not timer] + [(timer, delay)]

    def feed_changed(self, worker: Worker) -> None:
        if self.engine is not None:
            self.engine.feed_changed(worker)

    # -- running -----------------------------------------------------------------------

    def running(self) -> bool:
        return self.engine is not None

    def run(self, command: Union[str, float, None] = None, **kw: Any) -> Optional[Worker]:
        """``shell(command, **kw)`` then ``resume()`` (``timeout`` is then per command);
        without a command, ``resume(timeout)``; a number instead of a command is that
        ``timeout`` (ClusterShell's ``task.run(0.5)``)."""
        if command is None or isinstance(command, (int, float)):
            self.resume(kw.get("timeout") if command is None else command)
            return None
        worker = self.shell(command, **kw)
        self.resume()
        return worker

    def resume(self, timeout: Optional[float] = None) -> None:
        """Run everything scheduled until it is done, on this thread. The last run's
        results are dropped as it starts (ClusterShell's reset).

        ``timeout``: seconds for the whole run (None or 0: no limit, as ClusterShell's);
        when it passes, as ClusterShell counts
        it, every node still running is killed and counted as timed out (status
        ``timeout``, in ``num_timeout``/``iter_keys_timeout``, ``ev_timeout`` then
        ``ev_close`` for its worker), those not started never start (status
        ``aborted``), and TaskTimeout (a TimeoutError) is raised. Whatever happens (a
        handler raising included), no process of this run is left running or unreaped
        when this returns. During a run, from another thread: it ends a ``suspend()`` and
        returns at once (with none, it does nothing, as ClusterShell's); from a handler:
        it cancels that handler's ``suspend()``, else RuntimeError.
        """
        # (first: a bad timeout must fail before the Task looks busy)
        deadline = time.monotonic() + timeout if timeout else None  # (0: none, as ClusterShell)
        engine = Engine(self, self.upcoming, self.window)
        engine.ports = self.ports
        engine.suspension = self.suspension
        with self.lock:  # (an abort() from another thread sees a run, or none: not half)
            if self.engine is not None:
                own = threading.current_thread() is self.thread
                if self.suspension.withdraw() or not own:
                    return
                raise RuntimeError("Task.resume(): this task is already running")
            self.results, self.upcoming = self.upcoming, Results()
            self.aborting = False
            self.idle.clear()
            self.thread = threading.current_thread()
            self.engine = engine
            self.suspension.begin()
        finished = None  # (None: a handler raised; False: the deadline passed)
        try:
            for worker in self.workers:
                engine.add_worker(worker)
            self.workers = []
            for timer, delay in self.timers:
                engine.add_timer(timer, delay)
            self.timers = []
            finished = engine.run(deadline)
        finally:
            # (before the engine goes: their ev_close is emitted)
            self.finish_tree_workers(timed_out=finished is False)
            for port in list(self.ports):  # (closed after the loop's last look)
                port.leave_if_done()
            with self.lock:
                self.suspension.end()
                self.engine = None
                self.thread = None
                self.aborting = False
                self.idle.set()
        if not finished:
            raise TaskTimeout(f"the task did not finish within {timeout} s")

    def abort(self, kill: bool = False) -> None:
        """Stop the run: running commands are killed, waiting ones never start, timers
        stop; ``resume()`` returns. Call it from a handler, from another thread during
        the run (the loop is woken at once, a suspended one too), or before ``resume()``
        to drop what is scheduled. ``kill``: also unbind this Task from the calling
        thread, as ClusterShell's (its next ``task_self()`` is a new Task)."""
        if kill and getattr(local, "task", None) is self:
            local.task = None
        with self.lock:
            if self.engine is not None:
                self.aborting = True
                self.suspension.end()  # (a suspended loop goes on, to its end)
                if threading.current_thread() is not self.thread:
                    self.poke()  # (from another thread: the loop may be waiting)
                return
            for worker in self.workers:
                worker.release()
            self.workers = []
            self.timers = []
            self.finish_tree_workers()
            for slot in self.upcoming.slots.values():
                if not slot.state.final:
                    slot.state.abort()
            if self.upcoming.slots:  # (the results are now those of the run that never was)
                self.results, self.upcoming = self.upcoming, Results()

    def abort_worker(self, worker: Worker) -> None:
        """``worker.abort()``: end that worker alone (``Engine.abort_worker``) from a
        handler; before ``resume()``, drop it (its slots will show ``aborted``); after
        its run, nothing. RuntimeError from another thread while a run is on: the
        engine's state is its thread's alone."""
        worker.aborted = True
        if self.engine is not None:
            if threading.current_thread() is not self.thread:
                raise RuntimeError("Worker.abort(): call it from a handler (the Task's thread)")
            self.engine.abort_worker(worker)
        elif worker in self.workers:  # (its slots go to the next run's results, aborted)
            self.workers.remove(worker)
            worker.release()
            for key in worker.keys:
                self.upcoming.slot(key).state.abort()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait until the run in progress on another thread ends (at once if none is;
        a suspended run ends once resumed or aborted, as ClusterShell's);
        True if no run is in progress on return (False: ``timeout`` s passed first).
        RuntimeError on the Task's own thread during its run (it would wait forever)."""
        if self.engine is not None and threading.current_thread() is self.thread:
            raise RuntimeError("Task.join() from a handler would wait for itself")
        return self.idle.wait(timeout)

    def finish_tree_workers(self, timed_out: bool = False) -> None:
        """End the tree workers of this run (``TreeWorker.finish``: nothing left going);
        ``timed_out``: the run's timeout ended it (their running nodes timed out)."""
        workers, self.tree_workers = self.tree_workers, []
        for worker in workers:
            worker.finish(timed_out)

    def emit(self, worker: Worker, event: str, *args: Any) -> None:
        """Call ``worker.handler.<event>(*args)`` if it has one (on the Task's thread),
        the worker's ``current_*`` set first. After ``abort()`` (the Task's or the
        worker's) only ``ev_close`` is still delivered."""
        handler = worker.handler
        if handler is None or (event != "ev_close" and (self.aborting or worker.aborted)):
            return
        method = getattr(handler, event, None)
        if method is None:
            return
        if event in NODE_EVENTS:  # (ClusterShell's older handler style reads these)
            worker.current_node = args[1]
            if event == "ev_read":
                worker.current_sname = args[2]
                if args[2] == "stderr":
                    worker.current_errmsg = args[3]
                else:
                    worker.current_msg = args[3]
            elif event == "ev_hup":
                worker.current_rc = args[2]
        method(*args)
        self.suspension.checkpoint()  # (the handler's own suspend() takes effect here)


def task_self() -> Task:
    """The calling thread's Task (made on first use)."""
    task: Optional[Task] = getattr(local, "task", None)
    if task is None:
        task = Task()
        local.task = task
    return task
