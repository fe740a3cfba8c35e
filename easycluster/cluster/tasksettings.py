"""A Task's settings and what they select: ``TaskSettings``, a mixin of ``task.Task``.

Info keys (``set_info``: ``INFO_DEFAULTS`` lists ours, ``USER_*`` keys are the
caller's) and defaults (``set_default``: ``backend``, ``stderr``, ``stdin``) are plain values, read
where they are used: ``backend(spec)`` builds the backend a name stands for from the
info keys as they are when ``shell()`` asks; ``buffer_max`` is read by the engine as
output comes; ``fanout`` applies at once, even while running. The RPC backend
(``rpc.py``, loaded on first use of "rpc": it brings the client stack) is made once per
Task, from the info keys of that moment, and keeps its sessions until
``close_sessions``. ``load_topology`` sets the topology tree mode runs through. Not
thread-safe, like the Task: configure it from the thread that runs it.
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

from .backends import Backend, ExecBackend
from .results import BUFFER_MAX
from .sshexec import SshBackend, connect_timeout_option
from .topology import Topology, load_topology
from .window import FanoutWindow, check_limit

if TYPE_CHECKING:  # (loaded on first use of "rpc": it brings the client stack)
    from .rpc import RpcBackend


# set_info keys and their defaults.
INFO_DEFAULTS: Dict[str, Any] = {
    "fanout": 64,  # slots running at once
    "connect_timeout": 10,  # s, passed to ssh (-oConnectTimeout)
    "command_timeout": 0,  # s per command when shell() gives none; 0: none
    "buffer_max": BUFFER_MAX,  # bytes kept per stream per slot (None: all)
    "ssh_user": None,  # -l USER
    "ssh_path": "ssh",
    "ssh_options": "",  # extra ssh arguments, one string (shell words): "-F cfg -p 22"
    "ssh_kill_remote": True,  # kill the remote command when the Task kills ssh
    "gateway_python": None,  # tree mode: the Python gateways start with (None: python3)
    "debug": False,
}
DEFAULT_BACKEND = "ssh"  # ``set_default('backend', ...)``: "ssh", "exec", "rpc" or a Backend


class TaskSettings:
    """``Task``'s settings: info keys, defaults, the backend and topology they select,
    and the RPC backend's sessions."""

    # (set by Task; declared here for the type checker)
    infos: Dict[str, Any]
    defaults: Dict[str, Any]
    window: FanoutWindow
    _rpc: Optional[RpcBackend]
    topology: Optional[Topology]
    tree_caller: Optional[Any]

    def info(self, key: str, default: Any = None) -> Any:
        return self.infos.get(key, default)

    def set_info(self, key: str, value: Any) -> None:
        """Set a Task setting (``INFO_DEFAULTS`` lists ours; ``USER_*`` keys are yours).
        ``fanout`` applies at once, even while running."""
        if key == "fanout":
            self.window.limit = check_limit(value)
        self.infos[key] = value

    def default(self, key: str, default: Any = None) -> Any:
        return self.defaults.get(key, default)

    def set_default(self, key: str, value: Any) -> None:
        """``backend`` ("ssh", "exec" or a ``Backend``), ``stderr`` (True: keep stderr
        apart; False: merged into stdout) and ``stdin`` (what ``shell()`` takes as its
        ``stdin`` when given None: False for /dev/null, True to write) for later
        ``shell()`` calls; ``USER_*`` keys are yours."""
        self.defaults[key] = value

    @property
    def buffer_max(self) -> Optional[int]:
        value = self.infos.get("buffer_max")
        return None if value is None else int(value)

    def backend(self, spec: Union[str, Backend, None]) -> Backend:
        """The backend ``shell()`` uses for ``spec`` (a name is built from the info keys)."""
        spec = self.defaults.get("backend", DEFAULT_BACKEND) if spec is None else spec
        if isinstance(spec, Backend):
            return spec
        if spec == "exec":
            return ExecBackend()
        if spec == "ssh":
            return SshBackend(
                user=self.infos.get("ssh_user"),
                options=shlex.split(self.infos.get("ssh_options") or ""),
                path=shlex.split(self.infos.get("ssh_path") or "ssh"),
                connect_timeout=self.infos.get("connect_timeout"),
                kill_remote=bool(self.infos.get("ssh_kill_remote", True)),
            )
        if spec == "rpc":
            return self.rpc_backend()
        raise ValueError(f"unknown backend {spec!r} (use 'ssh', 'exec', 'rpc' or a Backend)")

    def rpc_backend(self) -> RpcBackend:
        """This Task's RPC backend (``rpc.py``): one session per node to our server,
        connected over ssh on first use (``ssh_path``, ``ssh_user``, ``ssh_options``,
        ``connect_timeout``, as the ssh backend takes them: ssh's ``ConnectTimeout``
        too, and the bootstrap as a whole is bounded by it), kept open for later
        commands and ``call``s. Set the ``rpc_connect`` info to ``connect(node) ->
        Client`` to connect another way."""
        if self._rpc is None:
            from .rpc import RpcBackend

            opts: Dict[str, Any] = {"ssh": shlex.split(self.infos.get("ssh_path") or "ssh")}
            if self.infos.get("ssh_user"):
                opts["user"] = self.infos["ssh_user"]
            extra = shlex.split(self.infos.get("ssh_options") or "")
            if self.infos.get("connect_timeout"):
                opts["connect_timeout"] = float(self.infos["connect_timeout"])
                extra.append(connect_timeout_option(opts["connect_timeout"]))  # (after
                # the caller's options: ssh keeps the first value it is given)
            if extra:
                opts["extra_args"] = extra
            self._rpc = RpcBackend(self.infos.get("rpc_connect"), **opts)
        return self._rpc

    def load_topology(self, topology: Any) -> None:
        """Use ``topology`` for tree mode (ClusterShell's name): a file path, or what
        ``Topology.build`` takes (a ``Topology``, ``{parents: children}``, the text).
        Then ``shell()`` on nodes runs through the gateways (``tree`` decides);
        raises ``TopologyError`` for a bad one (the Task's topology is left as it was)."""
        if isinstance(topology, os.PathLike) or (
            isinstance(topology, str)
            and "\n" not in topology
            and (os.path.exists(topology) or ":" not in topology)
        ):  # (a path; text has "parents: children" lines)
            self.topology = load_topology(os.fspath(topology))
        else:
            self.topology = Topology.build(topology)

    def close_sessions(self) -> None:
        """Close the RPC backend's sessions and tree mode's (the next command or call
        connects again)."""
        if self._rpc is not None:
            self._rpc.close()
        if self.tree_caller is not None:
            self.tree_caller.close()
            self.tree_caller = None
