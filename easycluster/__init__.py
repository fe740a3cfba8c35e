"""EasyCluster: run Python code on many machines.

The public names are EasyCluster 0.22's; a script written for it runs unchanged.
"""

from .client import Client, Response
from .definitions import define_common, definitions_module, exec_return, get_global, set_global
from .errors import (
    AuthenticationError,
    CallTimeout,
    ConfigError,
    ConnectError,
    ConnectionLost,
    EasyClusterError,
    FrameTooLarge,
    IntegrityError,
    KeyFileError,
    ProtocolError,
    RemoteException,
    SpecError,
)
from .exports import ServerObject, make_server_class, make_singleton
from .keys import (
    add_key_options,
    decode_key,
    generate_key,
    key_from_options,
    read_key_file,
    write_key_file,
)
from .nodegroups import GroupResolver
from .nodeset import NodeSet
from .parallel import ClientGroup, call_method_multi, call_multi, eval_multi, execblock_multi
from .proxy import DefaultRemoteProxy, FileProxy, GeneratorProxy, RemoteProxy, SelfIterProxy
from .rangeset import RangeSet
from .server import SINGLE, VERSION
from .service import DEFAULT_PORT
from .spec import parse_connection_spec
from .threaded import AutoThreadingClient, ThreadedClient

NonblockingResponse = Response
# EasyCluster's common base of Client and Server; scripts only ever named it in isinstance
# checks and subclassing of clients, which the Client class serves.
Connection = Client

__all__ = [
    "AutoThreadingClient", "ThreadedClient", "Client", "RemoteException",
    "add_key_options", "decode_key", "define_common", "definitions_module", "exec_return",
    "generate_key", "key_from_options", "read_key_file", "write_key_file",
    "SINGLE", "VERSION", "Connection", "DEFAULT_PORT", "NonblockingResponse", "Response",
    "get_global", "set_global",
    "EasyClusterError", "ConfigError", "KeyFileError", "SpecError", "ConnectionLost",
    "ConnectError", "AuthenticationError", "ProtocolError", "IntegrityError", "FrameTooLarge",
    "CallTimeout", "ClientGroup", "call_multi", "call_method_multi", "eval_multi",
    "execblock_multi", "ServerObject", "make_server_class", "make_singleton", "RemoteProxy",
    "DefaultRemoteProxy", "SelfIterProxy", "GeneratorProxy", "FileProxy", "NodeSet", "RangeSet",
    "GroupResolver", "parse_connection_spec",
]
