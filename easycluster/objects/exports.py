"""Which objects stay on the server, and what their proxies show: EasyCluster's export rules.

A class is a *server class* if it derives from ``ServerObject`` or was registered with
``make_server_class`` (builtin and extension types included); single objects can be
registered with ``make_singleton``. Instances of server classes are never copied to the
client: they travel as references and arrive as proxies.

``typeinfo(cls)`` computes, once per class (each subclass for itself, unlike the
original, which let a subclass inherit its parent's lists), a ``TypeInfo``:

- ``methods``: ``export_methods``; with ``'@auto'``, every function, builtin, classmethod,
  staticmethod and operator slot along the MRO (``object`` and ``ServerObject`` left
  out), except construction, attribute-access and pickling hooks;
- ``attrs``/``auto_attrs``: ``export_attrs``; ``'@auto'`` forwards unknown attributes;
- ``cached``: ``export_attrs_cache``, fetched once per proxy;
- ``proxy_class``: a ``module.QualName`` used instead of a generated proxy.
"""

from __future__ import annotations

import io
import threading
import types
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, Optional, Tuple

AUTO = "@auto"

_NOT_EXPORTED = frozenset(
    {
        "__init__",
        "__new__",
        "__del__",
        "__getattr__",
        "__getattribute__",
        "__setattr__",
        "__delattr__",
        "__init_subclass__",
        "__subclasshook__",
        "__class_getitem__",
        "__reduce__",
        "__reduce_ex__",
        "__getstate__",
        "__setstate__",
        "__getnewargs__",
        "__getnewargs_ex__",
        "__copy__",
        "__deepcopy__",
        "__dir__",
        "__sizeof__",
        "__format__",
        "__set_name__",
        "__instancecheck__",
        "__subclasscheck__",
        "__prepare__",
        "__weakref__",
        "__dict__",
        "__class__",
        "__doc__",
        "__module__",
        "__slots__",
        "__hash__",
        "__getformat__",
        "__new_member__",
    }
)
_METHOD_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    staticmethod,
    classmethod,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,  # methods of C types: deque.append, array.tolist
)


# A named tuple written out: not a dataclass (importing dataclasses would cost a remote
# server some 5 ms of its start-up: inspect, dis, ast...; a tuple pickles smaller), and not
# typing.NamedTuple (typing, and a generated __new__ compiled at import). It pickles as the
# NamedTuple did: the class by name and the fields, so either one unpickles the other's.
if TYPE_CHECKING:
    _InfoFields = Tuple[str, Tuple[str, ...], Tuple[str, ...], Tuple[str, ...], bool, Optional[str]]
else:
    _InfoFields = tuple


class TypeInfo(_InfoFields):
    """What a proxy of one server class looks like (sent with each reference)."""

    __slots__ = ()

    def __new__(
        cls,
        name: str,
        methods: Tuple[str, ...] = (),
        attrs: Tuple[str, ...] = (),
        cached: Tuple[str, ...] = (),
        auto_attrs: bool = True,
        proxy_class: Optional[str] = None,
    ) -> TypeInfo:
        return tuple.__new__(cls, (name, methods, attrs, cached, auto_attrs, proxy_class))

    @property
    def name(self) -> str:
        return self[0]

    @property
    def methods(self) -> Tuple[str, ...]:
        return self[1]

    @property
    def attrs(self) -> Tuple[str, ...]:
        return self[2]

    @property
    def cached(self) -> Tuple[str, ...]:
        return self[3]

    @property
    def auto_attrs(self) -> bool:
        return self[4]

    @property
    def proxy_class(self) -> Optional[str]:
        return self[5]

    def __getnewargs__(self) -> Tuple[Any, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        fields = ("name", "methods", "attrs", "cached", "auto_attrs", "proxy_class")
        return "TypeInfo(" + ", ".join(f"{f}={v!r}" for f, v in zip(fields, self)) + ")"


class ServerObject:
    """Base class for objects that stay on the server and reach the client as proxies.

    Class attributes (each subclass's own values count): ``export_methods``,
    ``export_attrs``, ``export_attrs_cache``, ``proxy_class``.
    """

    export_methods: Iterable[str] = (AUTO,)
    export_attrs: Iterable[str] = (AUTO,)
    export_attrs_cache: Iterable[str] = ()
    proxy_class: Any = None


class _Rules:
    """A server class's (or singleton's) export lists, as registered."""

    __slots__ = ("export_methods", "export_attrs", "export_attrs_cache", "proxy_class")

    def __init__(
        self,
        export_methods: Tuple[str, ...],
        export_attrs: Tuple[str, ...],
        export_attrs_cache: Tuple[str, ...],
        proxy_class: Any,
    ) -> None:
        self.export_methods = export_methods
        self.export_attrs = export_attrs
        self.export_attrs_cache = export_attrs_cache
        self.proxy_class = proxy_class


# Registered classes and singletons, and the computed TypeInfo per class: registries that
# EasyCluster's API fills (make_server_class, make_singleton), not configuration.
_classes: Dict[type, _Rules] = {}
_singletons: Dict[int, Tuple[Any, _Rules]] = {}
_infos: weakref.WeakKeyDictionary[type, Optional[TypeInfo]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _rules(
    export_methods: Iterable[str],
    export_attrs: Iterable[str],
    export_attrs_cache: Iterable[str],
    proxy_class: Any,
) -> _Rules:
    for name, val in (
        ("export_methods", export_methods),
        ("export_attrs", export_attrs),
        ("export_attrs_cache", export_attrs_cache),
    ):
        if isinstance(val, str):
            raise TypeError(f"{name} must be a list or tuple of names, not a str")
    return _Rules(
        tuple(export_methods), tuple(export_attrs), tuple(export_attrs_cache), proxy_class
    )


def make_server_class(
    typ: type,
    export_methods: Iterable[str] = (AUTO,),
    export_attrs: Iterable[str] = (AUTO,),
    export_attrs_cache: Iterable[str] = (),
    proxy_class: Any = None,
) -> type:
    """Mark ``typ`` (any class, builtin and extension types too) as a server class."""
    if not isinstance(typ, type):
        raise TypeError(f"make_server_class needs a class, not {type(typ).__name__}")
    with _lock:
        _classes[typ] = _rules(export_methods, export_attrs, export_attrs_cache, proxy_class)
        _infos.clear()
    return typ


def make_singleton(
    obj: Any,
    export_methods: Iterable[str] = (AUTO,),
    export_attrs: Iterable[str] = (AUTO,),
    export_attrs_cache: Iterable[str] = (),
    proxy_class: Any = None,
) -> Any:
    """Mark one object as proxied (other instances of its class are still copied).

    Held weakly when its type allows weak references (it is forgotten when it dies);
    otherwise held for the life of the process.
    """
    rules = _rules(export_methods, export_attrs, export_attrs_cache, proxy_class)
    key = id(obj)

    def forget(_r: object, k: int = key) -> None:
        _singletons.pop(k, None)

    try:
        ref: Any = weakref.ref(obj, forget)
    except TypeError:
        ref = lambda o=obj: o  # noqa: E731 - strong reference for types without weakrefs
    with _lock:
        _singletons[key] = (ref, rules)
    return obj


def _name(cls: Any) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _compute(cls: type, rules: _Rules) -> TypeInfo:
    proxy = rules.proxy_class
    if proxy is not None:
        return TypeInfo(_name(cls), proxy_class=proxy if isinstance(proxy, str) else _name(proxy))
    methods = [m for m in rules.export_methods if m != AUTO]
    if AUTO in rules.export_methods:
        seen = set(methods)
        for klass in cls.__mro__:
            if klass is object or klass is ServerObject:
                continue
            for attr, val in vars(klass).items():
                if attr in seen or attr in _NOT_EXPORTED or not isinstance(val, _METHOD_TYPES):
                    continue
                if attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__")):
                    continue  # private helpers stay private
                seen.add(attr)
                methods.append(attr)
    attrs = tuple(a for a in rules.export_attrs if a != AUTO)
    return TypeInfo(
        _name(cls),
        tuple(sorted(methods)),
        attrs,
        tuple(rules.export_attrs_cache),
        AUTO in rules.export_attrs,
    )


def _rules_for(cls: type) -> Optional[_Rules]:
    for klass in cls.__mro__:
        r = _classes.get(klass)
        if r is not None:
            return r
    if issubclass(cls, ServerObject):
        return _rules(cls.export_methods, cls.export_attrs, cls.export_attrs_cache, cls.proxy_class)
    return None


def typeinfo(cls: type) -> Optional[TypeInfo]:
    """The TypeInfo of server class ``cls``, or None if its instances are copied."""
    try:
        return _infos[cls]
    except KeyError:
        pass
    except TypeError:  # a type that cannot be weakly referenced
        rules = _rules_for(cls)
        return None if rules is None else _compute(cls, rules)
    rules = _rules_for(cls)
    info = None if rules is None else _compute(cls, rules)
    with _lock:
        _infos[cls] = info
    return info


def object_info(obj: Any) -> Optional[TypeInfo]:
    """The TypeInfo for ``obj`` if it stays on the server (class or singleton), else None."""
    info = typeinfo(type(obj))
    if info is not None or not _singletons:
        return info
    entry = _singletons.get(id(obj))
    if entry is None or entry[0]() is not obj:
        return None
    return _compute(type(obj), entry[1])


# What EasyCluster always proxied: generators, open files and modules.
make_server_class(types.GeneratorType, proxy_class="easycluster.objects.proxy.GeneratorProxy")
_IO_BASE = io.IOBase.__mro__[1]  # _io._IOBase, the base of every open file
make_server_class(_IO_BASE, proxy_class="easycluster.objects.proxy.FileProxy")
make_server_class(types.ModuleType, export_methods=(), export_attrs=(AUTO,))
