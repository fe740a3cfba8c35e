"""Client-side handles for remote things: remote globals and proxies of server objects.

``GlobalProxy``: ``rmt.os.path.join('a', 'b')`` calls ``os.path.join`` on the server;
``rmt.x.value`` reads the remote global ``x`` and ``rmt.x.value = 5`` sets it.

``RemoteProxy`` stands for an object that stays on the server. Subclasses declare
``proxy_methods`` (forwarded calls), ``proxy_attrs`` (remote properties: get, set and
delete) and ``proxy_attrs_cache`` (fetched once, then kept). ``DefaultRemoteProxy`` also
forwards unknown attributes. Proxy methods take the per-call keywords ``nonblocking``,
``oncomplete``, ``onerror``, ``threadid`` and ``origexc``. Proxies of a closed
connection have ``proxy_connection is None`` and raise ``ConnectionLost``.
"""

from __future__ import annotations

import importlib
import warnings

from ..errors import ConnectionLost
from .exports import TypeInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Sequence, Set, Type

SPECIAL_KEYWORDS = ("nonblocking", "oncomplete", "onerror", "threadid", "origexc")


class GlobalProxy:
    """A dotted name on the server, resolved in the client's definitions module."""

    __slots__ = ("_client", "_name")

    def __init__(self, client: Any, name: str):
        self._client = client
        self._name = name

    def __getattr__(self, attr: str) -> GlobalProxy:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return GlobalProxy(self._client, f"{self._name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # straight to send_request: this is the hot path of every rmt.func(...) call
        if not kwargs:
            return self._client.send_request(0, "call", (self._name, args, {}))
        if len(kwargs) == 1 and "nonblocking" in kwargs:  # the pipelining idiom, kept short
            return self._client.send_request(
                0, "call", (self._name, args, {}), nonblocking=kwargs["nonblocking"]
            )
        opts = split_opts(kwargs)
        return self._client.send_request(0, "call", (self._name, args, kwargs), **opts)

    @property
    def value(self) -> Any:
        """The current value of the remote global (one round trip)."""
        return self._client.get_global(self._name)

    @value.setter
    def value(self, val: Any) -> None:
        self._client.set_global(self._name, val)

    def __repr__(self) -> str:
        return f"<remote global {self._name} on {self._client.peername}>"


def split_opts(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Take the per-call keywords out of ``kwargs`` (``call_timeout`` becomes ``timeout``;
    a plain ``timeout`` stays for the remote function, as in EasyCluster)."""
    opts = {}
    for k in _OPTION_NAMES.intersection(kwargs):
        opts["timeout" if k == "call_timeout" else k] = kwargs.pop(k)
    return opts


_OPTION_NAMES = frozenset(SPECIAL_KEYWORDS + ("call_timeout",))


def _forwarder(name: str) -> Any:
    def method(self: RemoteProxy, *args: Any, **kwargs: Any) -> Any:
        opts = split_opts(kwargs)
        return self.raw_call_method(name, args, kwargs, **opts)

    method.__name__ = name
    method.__qualname__ = f"RemoteProxy.{name}"
    return method


def _remote_property(name: str) -> property:
    return property(
        lambda self: self.raw_get_attribute(name),
        lambda self, v: self.raw_set_attribute(name, v),
        lambda self: self.raw_del_attribute(name),
        doc=f"remote attribute {name}",
    )


def _cached_property(name: str) -> property:
    def get(self: RemoteProxy) -> Any:
        cache = self.__dict__.setdefault("_ec_cache", {})
        if name not in cache:
            cache[name] = self.raw_get_attribute(name)
        return cache[name]

    return property(get, doc=f"remote attribute {name}, fetched once")


class RemoteProxy:
    """Client-side handle for one server object; compares by identity."""

    proxy_methods: Sequence[str] = ()
    proxy_attrs: Sequence[str] = ()
    proxy_attrs_cache: Sequence[str] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        own = cls.__dict__
        for name in own.get("proxy_methods", ()):
            if name not in own or own[name] is None:
                setattr(cls, name, _forwarder(name))
        for name in own.get("proxy_attrs", ()):
            setattr(cls, name, _remote_property(name))
        for name in own.get("proxy_attrs_cache", ()):
            setattr(cls, name, _cached_property(name))

    def __init__(self, client: Any, oid: int):
        object.__setattr__(self, "_ec_conn", client)
        object.__setattr__(self, "_ec_oid", oid)

    @property
    def proxy_connection(self) -> Any:
        """The Client this proxy belongs to, or None once that connection is closed."""
        return self.__dict__.get("_ec_conn")

    @property
    def proxy_object_id(self) -> int:
        return self.__dict__["_ec_oid"]

    def _ec_client(self) -> Any:
        conn = self.__dict__.get("_ec_conn")
        if conn is None:
            raise ConnectionLost(f"the connection of {self!r} is closed")
        return conn

    def raw_call_method(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Dict[str, Any]] = None,
        **opts: Any,
    ) -> Any:
        """Call ``method`` of the server object (opts: the per-call keywords)."""
        return self._ec_client().send_request(
            self.proxy_object_id, method, tuple(args), kwargs or {}, target=self, **opts
        )

    def raw_get_attribute(self, attr: str, **opts: Any) -> Any:
        return self._ec_client().send_request(0, "getattr", (self, attr), **opts)

    def raw_set_attribute(self, attr: str, value: Any, **opts: Any) -> Any:
        return self._ec_client().send_request(0, "setattr", (self, attr, value), **opts)

    def raw_del_attribute(self, attr: str, **opts: Any) -> Any:
        return self._ec_client().send_request(0, "delattr", (self, attr), **opts)

    def __repr__(self) -> str:
        conn = self.__dict__.get("_ec_conn")
        where = conn.peername if conn is not None else "a closed connection"
        return f"<{type(self).__name__} for oid {self.__dict__.get('_ec_oid')} on {where}>"

    def __reduce__(self) -> Any:
        raise TypeError("a proxy can only be sent to the connection it came from")


class DefaultRemoteProxy(RemoteProxy):
    """Forwards unknown attributes: methods become remote calls, values are fetched.

    Setting or deleting an attribute is remote unless the name exists on the proxy's
    class or instance (declare local attributes at class level).
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_ec_") or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        methods = self.__dict__.setdefault("_ec_methods", set())
        if name not in methods:
            is_method, value = self._ec_client().send_request(0, "getmethod", (self, name))
            if not is_method:
                return value
            methods.add(name)  # names only: caching a bound method would make a cycle
        return _forwarder(name).__get__(self)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_ec_") or name in self.__dict__ or hasattr(type(self), name):
            object.__setattr__(self, name, value)
        else:
            self.raw_set_attribute(name, value)

    def __delattr__(self, name: str) -> None:
        if name in self.__dict__ or hasattr(type(self), name):
            object.__delattr__(self, name)
        else:
            self.raw_del_attribute(name)


class RootProxy(RemoteProxy):
    """The server's root object (id 0): every attribute is one of its verbs."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _forwarder(name).__get__(self)


class SelfIterProxy(RemoteProxy):
    """A proxy that is its own iterator (``__next__`` is remote)."""

    proxy_methods: Sequence[str] = ("__next__",)

    def __iter__(self) -> SelfIterProxy:
        return self


class GeneratorProxy(SelfIterProxy):
    proxy_methods = ("__next__", "send", "throw", "close")


class FileProxy(SelfIterProxy):
    proxy_methods = (
        "__next__",
        "read",
        "readline",
        "readlines",
        "write",
        "writelines",
        "seek",
        "tell",
        "flush",
        "close",
        "fileno",
        "isatty",
        "readable",
        "writable",
        "seekable",
        "truncate",
        "__enter__",
        "__exit__",
    )
    proxy_attrs_cache = ("name", "mode", "encoding", "errors", "newlines")
    proxy_attrs = ("closed",)


_classes: Dict[TypeInfo, Type[RemoteProxy]] = {}  # a cache: proxy class per type description
_warned: Set[str] = set()


def proxy_class(info: TypeInfo) -> Type[RemoteProxy]:
    """The proxy class for a server type (built once per description)."""
    cls = _classes.get(info)
    if cls is not None:
        return cls
    if info.proxy_class is not None:
        cls = _import_proxy_class(info.proxy_class)
    else:
        base = DefaultRemoteProxy if info.auto_attrs else RemoteProxy
        name = "dynamic_proxy_" + "_".join(info.methods + info.attrs + info.cached)
        cls = type(
            name,
            (base,),
            {
                "proxy_methods": info.methods,
                "proxy_attrs": info.attrs,
                "proxy_attrs_cache": info.cached,
                "__module__": __name__,
            },
        )
    _classes[info] = cls
    return cls


def _import_proxy_class(path: str) -> Type[RemoteProxy]:
    module, _, qual = path.rpartition(".")
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
        if not (isinstance(obj, type) and issubclass(obj, RemoteProxy)):
            raise TypeError(f"{path} is not a RemoteProxy subclass")
        return obj
    except Exception as e:
        if path not in _warned:
            _warned.add(path)
            warnings.warn(
                f"proxy class {path} cannot be used here ({type(e).__name__}: {e}); "
                "using DefaultRemoteProxy instead",
                RuntimeWarning,
                stacklevel=2,
            )
        return DefaultRemoteProxy


def new_proxy(cls: Type[RemoteProxy], client: Any, oid: int) -> RemoteProxy:
    p = cls.__new__(cls)
    RemoteProxy.__init__(p, client, oid)
    return p


__all__ = [
    "GlobalProxy",
    "RemoteProxy",
    "DefaultRemoteProxy",
    "SelfIterProxy",
    "GeneratorProxy",
    "FileProxy",
    "proxy_class",
    "new_proxy",
]
