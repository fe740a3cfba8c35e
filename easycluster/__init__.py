"""EasyCluster: run Python code on many machines.

The public names are EasyCluster 0.22's (a script written for it runs unchanged) and
ours. ``import easycluster`` loads nothing but this table: each name's module is imported
when the name is first used (module ``__getattr__``), so a client pays only for what it
uses, and the server, the service and the node sets load only where they run.
"""

from __future__ import annotations

import importlib

from .version import VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List

__version__ = VERSION  # (the usual name; VERSION is EasyCluster 0.22's)

# name -> module it lives in. (Read by launch/payload.py, which ships a server-side
# __init__ binding the names whose modules a remote server has.)
_EXPORTS: Dict[str, str] = {
    "Client": "easycluster.client.client",
    "Connection": "easycluster.client.client",
    "Response": "easycluster.client.response",
    "NonblockingResponse": "easycluster.client.response",
    "ThreadedClient": "easycluster.client.threaded",
    "AutoThreadingClient": "easycluster.client.threaded",
    "ClientGroup": "easycluster.client.parallel",
    "call_multi": "easycluster.client.parallel",
    "call_method_multi": "easycluster.client.parallel",
    "eval_multi": "easycluster.client.parallel",
    "execblock_multi": "easycluster.client.parallel",
    "parse_connection_spec": "easycluster.client.spec",
    "define_common": "easycluster.objects.definitions",
    "definitions_module": "easycluster.objects.definitions",
    "exec_return": "easycluster.objects.definitions",
    "get_global": "easycluster.objects.definitions",
    "set_global": "easycluster.objects.definitions",
    "ServerObject": "easycluster.objects.exports",
    "make_server_class": "easycluster.objects.exports",
    "make_singleton": "easycluster.objects.exports",
    "RemoteProxy": "easycluster.objects.proxy",
    "DefaultRemoteProxy": "easycluster.objects.proxy",
    "SelfIterProxy": "easycluster.objects.proxy",
    "GeneratorProxy": "easycluster.objects.proxy",
    "FileProxy": "easycluster.objects.proxy",
    "PipeSocket": "easycluster.transport.pipes",
    "SINGLE": "easycluster.protocol.messages",
    "DEFAULT_PORT": "easycluster.protocol.messages",
    "add_key_options": "easycluster.keys",
    "decode_key": "easycluster.keys",
    "generate_key": "easycluster.keys",
    "key_from_options": "easycluster.keys",
    "read_key_file": "easycluster.keys",
    "write_key_file": "easycluster.keys",
    "EasyClusterError": "easycluster.errors",
    "ConfigError": "easycluster.errors",
    "KeyFileError": "easycluster.errors",
    "SpecError": "easycluster.errors",
    "ConnectionLost": "easycluster.errors",
    "ConnectError": "easycluster.errors",
    "AuthenticationError": "easycluster.errors",
    "ProtocolError": "easycluster.errors",
    "DefinitionsError": "easycluster.errors",
    "IntegrityError": "easycluster.errors",
    "FrameTooLarge": "easycluster.errors",
    "CallTimeout": "easycluster.errors",
    "UnpicklableError": "easycluster.errors",
    "RemoteException": "easycluster.errors",
    "NodeSet": "easycluster.nodeset.nodeset",
    "RangeSet": "easycluster.nodeset.rangeset",
    "GroupResolver": "easycluster.nodeset.groups",
    "Task": "easycluster.cluster.task",
    "Cluster": "easycluster.cluster.session",
    "ClusterExecutor": "easycluster.cluster.executor",
    "task_self": "easycluster.cluster.task",
    "EventHandler": "easycluster.cluster.events",
    # EasyCluster 0.22's protocol constants (see easycluster/legacy.py)
    "MIN_SERVER_VERSION": "easycluster.legacy",
    "PYTHON3": "easycluster.legacy",
    "HMAC_MOD": "easycluster.legacy",
    "HMAC_SIZE": "easycluster.legacy",
    "ERROR": "easycluster.legacy",
    "CHALLENGE": "easycluster.legacy",
    "CHALLENGE_RESPONSE": "easycluster.legacy",
    "KEEPALIVE": "easycluster.legacy",
    "REQUEST": "easycluster.legacy",
    "RESPONSE": "easycluster.legacy",
    "INIT": "easycluster.legacy",
    "MSG_COMPRESSED": "easycluster.legacy",
}

__all__ = [
    "AutoThreadingClient",
    "ThreadedClient",
    "Client",
    "RemoteException",
    "add_key_options",
    "decode_key",
    "define_common",
    "definitions_module",
    "exec_return",
    "generate_key",
    "key_from_options",
    "read_key_file",
    "write_key_file",
    "SINGLE",
    "VERSION",
    "Connection",
    "DEFAULT_PORT",
    "NonblockingResponse",
    "Response",
    "get_global",
    "set_global",
    "EasyClusterError",
    "ConfigError",
    "KeyFileError",
    "SpecError",
    "ConnectionLost",
    "ConnectError",
    "AuthenticationError",
    "ProtocolError",
    "IntegrityError",
    "FrameTooLarge",
    "CallTimeout",
    "UnpicklableError",
    "DefinitionsError",
    "ClientGroup",
    "call_multi",
    "call_method_multi",
    "eval_multi",
    "execblock_multi",
    "ServerObject",
    "make_server_class",
    "make_singleton",
    "RemoteProxy",
    "DefaultRemoteProxy",
    "SelfIterProxy",
    "GeneratorProxy",
    "FileProxy",
    "NodeSet",
    "RangeSet",
    "GroupResolver",
    "parse_connection_spec",
    "Task",
    "Cluster",
    "ClusterExecutor",
    "task_self",
    "EventHandler",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'easycluster' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))
