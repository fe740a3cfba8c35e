"""Stage 1 of the ssh bootstrap, on the remote host: import from memory, take over the
pipes, serve.

This file is not imported there: its source travels as the stage-1 script (built by
``launch.payload``), followed by a call of ``remote_main()``, and is executed by stage 0.
So at module level it imports only the standard library, it runs on Python 3.9, and it
stays small (it is compiled on every connection).

What follows the script on stdin (the layout ``launch.payload`` writes)::

    SECTION_HEAD  8 bytes: the Python magic number the modules were compiled for (4),
                  or SOURCE_TAG for source; the size of the blob (u32, big-endian)
    blob          zlib(marshal({module name: (is package, code or source)})), where
                  code is marshal.dumps of the module's code object (bytes) and source
                  is its text (str)
    session key   KEY_SIZE bytes

Stage 1 reads the head, the blob and the key, then writes one status line to stdout:
``READY`` when it can use the blob (source, or code for its own magic number), else
``WANT_SOURCE``, after which the client sends a second section (source) and stage 1
reads it. The container is unmarshalled at once (it holds only bytes and str); each
module's code object is unmarshalled, or its source compiled, only when the module is
imported, so a module the server never imports costs nothing but its bytes.

With the client's ``remote_cache`` (off by default) the first section is a *cache
request* instead (tag ``CACHE_TAG``): the magic number the client's code was compiled
for (4 bytes), the SHA-256 of that code section's blob (32) and the folder to cache in
(utf-8; empty: ``$XDG_CACHE_HOME/easycluster``, else ``~/.cache/easycluster``). Stage 1
uses the file named by the digest there if it is a regular file in a folder of this
user's that nobody else may write and its bytes hash to that digest (so a file altered
or cut short is never used, and a pipe planted there is not read), and says ``READY``;
otherwise it says ``WANT_CODE`` (its magic number matches) or ``WANT_SOURCE`` (it does
not), reads the section the client then sends, and, for code whose digest checks out,
stores it for the next connection: in such a folder (made with mode 0700), as a file
of mode 0600 written whole under a name of its own and then renamed. A cache that
cannot be read or written costs the connection nothing but the section it would have
spared (and, on a miss, the round trip that asks for it).

``remote_main`` puts a finder for the modules first on ``sys.meta_path`` (tracebacks name
``<easycluster-ssh>/...`` files; their lines show when the source was shipped), moves the
protocol off fds 0 and 1 (they point at ``/dev/null`` afterwards, and ``sys.stdout`` is
``sys.stderr``, so a remote ``print`` reaches the client's stderr instead of corrupting
the stream), and runs the ordinary server handshake and ``serve_connection`` over the
two pipes. The blob comes over ssh's authenticated channel, as the script does; every
frame after the handshake is MAC-checked before anything in it is unpickled.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys
import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: stage 1 imports nothing it does not run
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Dict, Optional, Sequence, Tuple, Union

    Modules = Dict[str, Tuple[bool, Union[bytes, str]]]


KEY_SIZE = 32  # protocol.boot.KEY_SIZE (importing it would load re and shlex here)
SOURCE_TAG = b"SRC\n"  # a section of source; otherwise the head names a magic number
CACHE_TAG = b"CCH\n"  # a cache request (``remote_cache``)
READY = b"EASYCLUSTER-STAGE1 ready\n"
WANT_SOURCE = b"EASYCLUSTER-STAGE1 source\n"
WANT_CODE = b"EASYCLUSTER-STAGE1 code\n"  # (after a cache request that missed)
CACHE_PREFIX = "payload-"  # a cached code section's file: prefix, digest in hex, suffix
CACHE_SUFFIX = ".bin"
_CACHE_MAX = 1 << 26  # a cached file larger than this is not ours
PREFIX = "<easycluster-ssh>/"


def python_magic() -> bytes:
    """This interpreter's bytecode magic number (importlib.util.MAGIC_NUMBER, read from
    the import system that is already loaded: importing importlib.util costs ms)."""
    magic = getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", None)
    if magic is None:
        from importlib.util import MAGIC_NUMBER

        return MAGIC_NUMBER
    return bytes(magic)


class ShippedModules:
    """A ``sys.meta_path`` finder and loader for modules that came over stdin."""

    def __init__(self, modules: Modules):
        self.modules = modules

    def find_spec(
        self, name: str, path: Optional[Sequence[str]] = None, target: Optional[ModuleType] = None
    ) -> Optional[ModuleSpec]:
        entry = self.modules.get(name)
        if entry is None:
            return None
        import importlib.machinery

        # The import system takes any object with create_module/exec_module as a loader;
        # the stub wants an importlib.abc.Loader, and importing importlib.abc would cost
        # stage 1 some 9 ms.
        return importlib.machinery.ModuleSpec(
            name,
            self,  # type: ignore[arg-type]
            origin=filename(name, entry[0]),
            is_package=entry[0],
        )

    def create_module(self, spec: ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        is_package, body = self.modules[name]
        if isinstance(body, bytes):  # compiled by the client for this magic number
            code = marshal.loads(body)
        else:
            code = compile(body, filename(name, is_package), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 - the payload the client sent

    def get_source(self, name: str) -> Optional[str]:
        body = self.modules[name][1]
        return body if isinstance(body, str) else None


def filename(name: str, is_package: bool) -> str:
    """The file name a shipped module's code and tracebacks carry."""
    return PREFIX + name.replace(".", "/") + ("/__init__.py" if is_package else ".py")


def read_section(stream: object) -> Tuple[bytes, bytes]:
    """``(tag, blob)`` of the next section on ``stream`` (a binary file)."""
    head = _read(stream, 8)
    return head[:4], _read(stream, int.from_bytes(head[4:], "big"))


def _read(stream: object, n: int) -> bytes:
    data = stream.read(n)  # type: ignore[attr-defined]
    if len(data) != n:
        sys.exit("easycluster bootstrap: stdin closed before the payload arrived")
    return data


def _read_source(stream: object) -> bytes:
    tag, blob = read_section(stream)
    if tag != SOURCE_TAG:
        sys.exit("easycluster bootstrap: the client sent no source")
    return blob


# -- the cache's part (cut from the script unless the client asks: launch/payload.py)


def _from_cache(stream: object, request: bytes) -> Optional[bytes]:
    """Answer a cache request (see the module doc): the code section's blob, from the
    cache or sent by the client then (and cached), after saying so; None once
    ``WANT_SOURCE`` was said (another magic number: the caller reads the source)."""
    magic, digest, folder = request[:4], request[4:36], request[36:].decode("utf-8")
    if magic != python_magic():
        os.write(1, WANT_SOURCE)
        return None
    folder = os.path.expanduser(folder) if folder else _default_folder()
    path = os.path.join(folder, CACHE_PREFIX + digest.hex() + CACHE_SUFFIX)
    blob = _load(folder, path)
    if blob is not None and _sha256(blob) == digest:
        os.write(1, READY)
        return blob
    os.write(1, WANT_CODE)
    tag, blob = read_section(stream)
    if tag != magic:
        sys.exit("easycluster bootstrap: the client sent no code")
    if _sha256(blob) == digest:
        _store(folder, path, blob)
    return blob


def _private(folder: str) -> bool:
    """Whether ``folder`` is ours and nobody else may write in it (not a link)."""
    try:
        st = os.lstat(folder)
    except (OSError, ValueError):
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def _load(folder: str, path: str) -> Optional[bytes]:
    """The cached file's bytes: only a regular file (no link, no pipe: nothing to block
    on) in a private folder, at most ``_CACHE_MAX`` bytes. None otherwise."""
    if not _private(folder):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _CACHE_MAX:
            return None
        with open(fd, "rb", closefd=False) as f:
            return f.read(_CACHE_MAX + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def _default_folder() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "easycluster")


def _sha256(data: bytes) -> bytes:
    # the interpreter's own SHA-256 first: hashlib loads OpenSSL, some ms
    for name in ("_sha2", "_sha256", "hashlib"):
        try:
            return __import__(name).sha256(data).digest()
        except ImportError:
            pass
    raise ImportError("no SHA-256 in this Python")


def _store(folder: str, path: str, blob: bytes) -> None:
    """Cache ``blob`` at ``path``, only in a folder of ours nobody else may write, under
    a name of its own first (hosts sharing a home over NFS may store at once)."""
    tmp = f"{path}.{os.urandom(8).hex()}.tmp"
    made = False
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if not _private(folder):
            return
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        made = True
        with open(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
        made = False
    except (OSError, ValueError):
        pass
    finally:
        if made:  # (only the file this process made)
            try:
                os.unlink(tmp)
            except OSError:
                pass


# -- end of the cache's part


def remote_main() -> None:
    """Stage 1 on the remote host: take the modules, import from memory, serve."""
    stdin = sys.stdin.buffer  # stage 0 read through it: it may hold what follows
    tag, blob = read_section(stdin)
    key = _read(stdin, KEY_SIZE)
    if tag == CACHE_TAG:
        cached = _from_cache(stdin, blob)
        blob = _read_source(stdin) if cached is None else cached
    elif tag not in (SOURCE_TAG, python_magic()):
        os.write(1, WANT_SOURCE)
        blob = _read_source(stdin)
    else:
        os.write(1, READY)
    sys.meta_path.insert(0, ShippedModules(marshal.loads(zlib.decompress(blob))))
    del blob
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    sys.stdout = sys.stderr

    from easycluster.errors import ConnectionLost
    from easycluster.protocol.handshake import WireOptions
    from easycluster.remote.process import serve_connection
    from easycluster.transport.handshake import server_handshake
    from easycluster.transport.pipes import PipeSocket

    peer = "ssh:" + (os.environ.get("SSH_CLIENT") or "?").split(" ")[0]
    try:
        channel = server_handshake(PipeSocket(rfd, wfd), key, WireOptions(), timeout=30)
    except (OSError, ConnectionLost) as e:
        sys.exit(f"easycluster bootstrap: handshake failed: {e}")
    serve_connection(channel, peer)
