"""Connection specs: ``[user@]host[:port][:name=value]...`` to ``Client`` arguments.

Grammar
-------

* ``user@`` (optional) is the ssh login name; it selects ssh.
* ``host`` is a name, an IPv4 address or a bracketed IPv6 address (``[2001:db8::2]``,
  also after ``user@`` and with or without a port). The brackets are removed.
* ``:port`` (optional) is the first field after the host when it is all digits.
* ``:name=value`` options follow; empty fields are skipped; values cannot contain ``:``.

==================  ========================================================================
option              meaning
==================  ========================================================================
``kf=PATH``         read the key with ``read_key_file`` (``keyfile=`` is the same option)
``key=TEXT``        the key itself (hex or passphrase); warns on stderr, since command lines
                    can be read by other users and land in shell histories
``compress=1``      zlib compression (``1/yes/on/true`` or ``0/no/off/false``)
``ssh=yes|no|PATH`` use ssh (``yes/1/on/true``), TCP (``no/0/off/false``), or ssh with the
                    ssh program at ``PATH``
``user=NAME``       the ssh login name (like ``NAME@``); selects ssh
``rpython=CMD``     the remote Python command (default ``python3``), one or more words
``extra=ARGS``      extra ssh arguments, split as a shell would (``extra=-F cfg -A``)
==================  ========================================================================

``kf``, ``keyfile`` and ``key`` count as one option: giving two is a duplicate. Errors
(``SpecError``, a ``ConfigError``) name the spec and the offending part.

Which transport
---------------

ssh when the spec has ``user@`` or ``user=``, or ``ssh=`` says yes or gives a path;
``ssh=no`` together with a user is an error. Otherwise TCP to an ``easycluster -S``
server, as EasyCluster 0.22 did, and TCP needs a key: from ``kf=``/``key=`` or
``default_key``; without one the spec is refused (a server without a key does not exist
here, and an empty key is never used). Over ssh a key is not needed: every session makes
its own.

The result is a dict for ``Client(**params)``: ``host``, ``port`` (None: ssh's own
configuration over ssh, 11998 over TCP), ``key``, ``ssh`` (False, True or the ssh
program's path), ``user``, ``enable_compression``, plus ``rpython`` and ``extra_args``
when given.

SLURM: ``srun:NODE[:name=value]...``
------------------------------------

A server started as one job step on ``NODE`` of a SLURM allocation
(``launch/srun.py``): ``Client.from_spec("srun:n3")`` inside ``salloc``/``sbatch``.
Options: ``jobid=`` (another allocation than ``$SLURM_JOB_ID``), ``rpython=``,
``compress=``, ``srun=PATH``. ``parse_srun_spec`` returns ``{"node", "jobid",
"rpython", "srun", "enable_compression"}``; ``srun_client`` connects one client and
``clients_from_slurm`` one per node of the allocation, in parallel.
"""

from __future__ import annotations

import importlib
import re
import shlex
import sys

from ..errors import ConnectionLost, SpecError
from ..keys import decode_key, read_key_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple, Union

KNOWN = ("key", "compress", "ssh", "user", "rpython", "extra")
_KEY_NAMES = {"kf": "key", "keyfile": "key", "key": "key"}
_YES = ("1", "yes", "on", "true")
_NO = ("0", "no", "off", "false")
_USER = re.compile(r"([^@:\[\]/\s]*)@")
KEY_WARNING = (
    "easycluster: SECURITY WARNING: a key given on the command line (key=) can "
    "be read by other users and is kept in shell histories; use kf=FILE instead"
)


def parse_connection_spec(
    spec: str,
    default_port: Optional[int] = None,
    default_key: Optional[bytes] = None,
    default_enable_compression: bool = False,
    custom_options: Union[Collection[str], bool] = (),
    warn: bool = True,
) -> Any:
    """Parse ``spec``; return the ``Client`` keyword arguments (see the module docstring).

    ``default_port`` applies when the spec has no port. ``custom_options`` names extra
    options the caller handles (``True``: any unknown option); when it is given, the
    result is ``(params, custom)`` with ``custom`` a dict of those options' values.
    ``warn=False`` silences the ``key=`` warning. Raises SpecError (KeyFileError for an
    unreadable ``kf=``).
    """
    if not isinstance(spec, str):
        raise SpecError(f"a connection spec must be a str, not {type(spec).__name__}")
    if spec.strip().startswith(SRUN_PREFIX):
        raise SpecError(
            f"{spec!r} starts a server with srun, which has no Client(**params) form: "
            "use Client.from_spec (or parse_srun_spec and srun_client)"
        )
    user, host, fields = _split(spec)
    port: Optional[int] = default_port
    if fields and fields[0].isdigit():
        port = _port(spec, fields.pop(0))
    opts: Dict[str, Tuple[str, str]] = {}  # canonical name -> (name as written, value)
    custom: Dict[str, str] = {}
    for field in fields:
        if not field:
            continue
        name, eq, value = field.partition("=")
        if not eq or not name:
            hint = ""
            if re.fullmatch(r"[0-9a-fA-F]*", host) and re.fullmatch(r"[0-9a-fA-F]*", field):
                hint = " (write an IPv6 address in brackets: [2001:db8::2])"
            raise SpecError(
                f"malformed option {field!r} in connection spec {spec!r}: "
                f"options are name=value{hint}"
            )
        canon = _KEY_NAMES.get(name, name)
        if canon not in KNOWN:
            if custom_options is True or (custom_options is not False and name in custom_options):
                if name in custom:
                    raise SpecError(f"duplicate option {name!r} in connection spec {spec!r}")
                custom[name] = value
                continue
            raise SpecError(
                f"unknown option {name!r} in connection spec {spec!r} (known: "
                "kf, keyfile, key, compress, ssh, user, rpython, extra)"
            )
        if canon in opts:
            raise SpecError(
                f"duplicate option {name!r} in connection spec {spec!r}"
                + (f" (after {opts[canon][0]!r})" if opts[canon][0] != name else "")
            )
        opts[canon] = (name, value)

    key = default_key
    if "key" in opts:
        name, value = opts["key"]
        if not value:
            raise SpecError(f"empty {name}= in connection spec {spec!r}")
        if name == "key":
            if warn:
                print(KEY_WARNING, file=sys.stderr)
            key = decode_key(value)
        else:
            key = read_key_file(value)
    compress = default_enable_compression
    if "compress" in opts:
        compress = _flag(spec, "compress", opts["compress"][1])
    ssh: Union[bool, str, None] = None
    if "ssh" in opts:
        value = opts["ssh"][1]
        low = value.lower()
        if not value:
            raise SpecError(f"empty ssh= in connection spec {spec!r}: use yes, no or a path")
        ssh = True if low in _YES else False if low in _NO else value
    if "user" in opts:
        if user is not None:
            raise SpecError(f"connection spec {spec!r} gives the user twice (user@ and user=)")
        user = opts["user"][1]
        if not user:
            raise SpecError(f"empty user= in connection spec {spec!r}")
    if ssh is False and user is not None:
        raise SpecError(f"connection spec {spec!r} gives an ssh user but says ssh=no")
    if ssh is None:
        ssh = user is not None
    if not ssh and key is None:
        raise SpecError(
            f"connection spec {spec!r} means TCP (no user@, user= or ssh=), "
            "which needs a key: add kf=FILE, or use ssh (user@host or ssh=yes)"
        )
    if not ssh and ("rpython" in opts or "extra" in opts):
        raise SpecError(
            f"connection spec {spec!r} means TCP, but rpython= and extra= are for "
            "ssh: add ssh=yes or user@"
        )
    params: Dict[str, Any] = {
        "host": host,
        "port": port,
        "key": key,
        "ssh": ssh,
        "user": user,
        "enable_compression": compress,
    }
    if "rpython" in opts:
        rpython = opts["rpython"][1]
        if not rpython.strip():
            raise SpecError(f"empty rpython= in connection spec {spec!r}")
        params["rpython"] = rpython
    if "extra" in opts:
        params["extra_args"] = _extra(spec, opts["extra"][1])
    if custom_options:
        return params, custom
    return params


def client_from_spec(
    cls: type,
    spec: str,
    default_port: Optional[int] = None,
    default_key: Optional[bytes] = None,
    warn: bool = True,
    **kw: Any,
) -> Any:
    """``cls(...)`` connected as ``spec`` says: the body of ``Client.from_spec``.

    ``kw`` are further constructor arguments (``definitions``, ``connect_timeout``, ...);
    ``enable_compression`` in ``kw`` is the default that ``compress=`` overrides. What the
    spec says wins over ``kw`` for the spec's own fields.
    """
    compress = bool(kw.pop("enable_compression", False))
    if isinstance(spec, str) and spec.strip().startswith(SRUN_PREFIX):
        opts = parse_srun_spec(spec, default_enable_compression=compress)
        return srun_client(cls, **opts, **kw)
    params = parse_connection_spec(
        spec, default_port, default_key, default_enable_compression=compress, warn=warn
    )
    return cls(**{**kw, **params})


def _split(spec: str) -> Tuple[Optional[str], str, List[str]]:
    """``(user or None, host, fields after the host)``."""
    rest = spec.strip()
    user = None
    m = _USER.match(rest)
    if m:
        user = m.group(1)
        if not user:
            raise SpecError(f"empty user name before '@' in connection spec {spec!r}")
        rest = rest[m.end() :]
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise SpecError(f"unclosed '[' in connection spec {spec!r}")
        host, after = rest[1:end], rest[end + 1 :]
        if not host or not re.fullmatch(r"[0-9A-Za-z:.%_-]+", host) or ":" not in host:
            raise SpecError(f"bad bracketed address [{host}] in connection spec {spec!r}")
        if after and not after.startswith(":"):
            raise SpecError(f"unexpected {after!r} after [{host}] in connection spec {spec!r}")
        fields = after[1:].split(":") if after else []
    else:
        host, _, after = rest.partition(":")
        fields = after.split(":") if _ else []
        if "[" in host or "]" in host or "@" in host:
            raise SpecError(f"bad host {host!r} in connection spec {spec!r}")
    if not host:
        raise SpecError(f"no host in connection spec {spec!r}")
    if host.startswith("-") or any(c.isspace() for c in host):
        raise SpecError(f"bad host {host!r} in connection spec {spec!r}")
    return user, host, fields


def _port(spec: str, text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise SpecError(f"port {text} out of range in connection spec {spec!r}")
    return port


def _flag(spec: str, name: str, value: str) -> bool:
    low = value.lower()
    if low in _YES:
        return True
    if low in _NO:
        return False
    raise SpecError(f"bad value {value!r} for {name}= in connection spec {spec!r}: use 1 or 0")


def _extra(spec: str, value: str) -> List[str]:
    try:
        return shlex.split(value)
    except ValueError as e:
        raise SpecError(f"cannot split extra={value!r} in connection spec {spec!r}: {e}")


# -- SLURM: srun:NODE ---------------------------------------------------------------------

SRUN_PREFIX = "srun:"
_SRUN_OPTIONS = ("jobid", "rpython", "compress", "srun")


def parse_srun_spec(spec: str, default_enable_compression: bool = False) -> Dict[str, Any]:
    """``srun:NODE[:name=value]...`` (module docstring) to ``srun_client`` arguments."""
    text = spec.strip()
    if not text.startswith(SRUN_PREFIX):
        raise SpecError(f"{spec!r} is not an srun spec (srun:NODE[:jobid=N]...)")
    node, *fields = text[len(SRUN_PREFIX) :].split(":")
    if not node or not re.fullmatch(r"[A-Za-z0-9_.-]+", node) or node.startswith("-"):
        raise SpecError(f"bad or missing SLURM node name in connection spec {spec!r}")
    out: Dict[str, Any] = {
        "node": node,
        "jobid": None,
        "rpython": None,
        "srun": None,
        "enable_compression": default_enable_compression,
    }
    seen = set()
    for field in fields:
        if not field:
            continue
        name, eq, value = field.partition("=")
        if not eq or name not in _SRUN_OPTIONS:
            raise SpecError(
                f"unknown or malformed option {field!r} in connection spec {spec!r} "
                f"(srun specs take {', '.join(n + '=' for n in _SRUN_OPTIONS)})"
            )
        if name in seen:
            raise SpecError(f"duplicate option {name!r} in connection spec {spec!r}")
        seen.add(name)
        if not value.strip():
            raise SpecError(f"empty {name}= in connection spec {spec!r}")
        if name == "compress":
            out["enable_compression"] = _flag(spec, name, value)
        else:
            out[name] = value
    return out


def _srun() -> Any:
    # loaded at first use: clients that never use SLURM do not pay for it
    return importlib.import_module("easycluster.launch.srun")


def srun_client(
    cls: type,
    node: str,
    jobid: Union[str, int, None] = None,
    rpython: Optional[str] = None,
    srun: Optional[str] = None,
    members: Optional[Sequence[str]] = None,
    **kw: Any,
) -> Any:
    """``cls(**kw)`` connected to a server started on ``node`` as one step of SLURM
    allocation ``jobid`` (default: ``$SLURM_JOB_ID``); see ``launch/srun.py`` for the
    errors. Closing the client cancels its step. ``reconnect()`` is not available for
    such a client: make a new one."""
    client = cls(**kw)
    channel, closer, name = _srun().open_channel(
        node,
        jobid,
        rpython=rpython,
        srun=srun,
        members=members,
        options=client.wire_options(),
        timeout=client.connect_timeout,
    )
    client.attach(channel, name, closer)
    return client


def clients_from_slurm(
    cls: type,
    nodes: Optional[Sequence[str]] = None,
    jobid: Union[str, int, None] = None,
    *,
    rpython: Optional[str] = None,
    srun: Optional[str] = None,
    return_exceptions: bool = False,
    max_workers: int = 64,
    **kw: Any,
) -> List[Any]:
    """One connected ``cls`` per node of SLURM allocation ``jobid`` (default: the current
    one; ``nodes``: a subset, by name), the steps started in parallel, in node order.

    A node that fails raises its error (named), after every other client is closed
    and its step cancelled; with ``return_exceptions`` the error takes that node's
    place in the list instead. Errors about the request itself (srun missing, outside
    an allocation, a node not in it) are raised before any step starts.
    """
    launcher = _srun()
    job = launcher.current_jobid(jobid)
    members = launcher.allocation_nodes(job)
    names = list(members if nodes is None else nodes)
    first: Any = cls(**kw)  # unconnected: its options say how to connect
    spare: Optional[Any] = first
    opened = launcher.open_channels(
        names,
        job,
        rpython=rpython,
        srun=srun,
        members=members,
        max_workers=max_workers,
        options=first.wire_options(),
        timeout=first.connect_timeout,
    )
    out: List[Any] = []
    first_error: Optional[BaseException] = None
    for got in opened:
        if isinstance(got, BaseException):
            out.append(got)
            first_error = first_error or got
            continue
        channel, closer, name = got
        client, spare = (spare if spare is not None else cls(**kw)), None
        try:
            client.attach(channel, name, closer)
        except ConnectionLost as e:  # (attach closed it)
            out.append(e)
            first_error = first_error or e
            continue
        out.append(client)
    if first_error is not None and not return_exceptions:
        for item in out:
            if not isinstance(item, BaseException):
                item.close()
        raise first_error
    return out
