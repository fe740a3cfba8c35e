"""The local side of ``Task.copy`` and ``Task.rcopy``: what is sent, what is written here.

``open_push(path)`` turns the local source into a ``FileFeed`` (the bytes every node's
receiver reads on stdin, ``copy.RECEIVER``): a regular file is read where it lies; a
directory is packed once into an anonymous temporary tar file. ``PullSink`` is the
engine's ``Sink`` for rcopy: each slot's stdout (``copy.SENDER``'s header line, then the
data) goes to a temporary in the destination directory, which becomes the slot's name
only when the node's command ended with 0; anything else removes it.

The engine calls these on the Task's thread; a commit that unpacks a directory does
so there, delaying the other nodes' I/O for that long (GNU ``tar`` unpacks it where there
is one, ten times faster than ``tarfile``: ``filecopy.gnu_tar``).
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import tempfile
from typing import IO, Any, Callable, Dict, NamedTuple, Optional

from ..remote.filecopy import CopyError, current_umask, gnu_tar, tar_extract
from ..remote.treeplace import PlaceError, non_directory, place_tree, remove_tree
from .copy import TAR_TOP, Header, base_name, parse_header, temp_name
from .feed import CHUNK, StdinFeed
from .results import SlotResult

CACHE_CHUNKS = 32  # chunks of a pushed file kept in memory for nodes a little behind
HEADER_MAX = 256  # bytes: a longer first line is not a sender's header


class FileFeed(StdinFeed):
    """A ``StdinFeed`` over a seekable file of ``size`` bytes: any node may be at any
    offset, and a chunk is read again (``os.pread``) when a node needs one no longer
    cached, so memory stays at ``CACHE_CHUNKS`` chunks however many nodes wait for the
    fan-out window. If the file turns out shorter than ``size`` (it shrank), the stream
    ends there: receivers then see fewer bytes than announced and fail. ``close()`` closes
    the file (the worker's ``release``)."""

    __slots__ = ("file", "cache")

    def __init__(self, file: IO[bytes], size: int) -> None:
        super().__init__()
        self.file: Optional[IO[bytes]] = file
        self.total = size
        self.eof = True
        self.cache: Dict[int, bytes] = {}

    def view(self, pos: int) -> memoryview:
        if pos >= self.total or self.file is None:
            return memoryview(b"")
        index = pos // CHUNK
        chunk = self.cache.get(index)
        if chunk is None:
            start = index * CHUNK
            want = min(CHUNK, self.total - start)
            try:
                chunk = os.pread(self.file.fileno(), want, start)
            except OSError:
                chunk = b""
            if len(chunk) < want:  # the file shrank (or cannot be read): end here
                self.total = start + len(chunk)
            if len(self.cache) >= CACHE_CHUNKS:
                del self.cache[next(iter(self.cache))]
            self.cache[index] = chunk
        return memoryview(chunk)[pos - index * CHUNK :]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.cache.clear()


class PushSource(NamedTuple):
    """A local source opened for ``copy``: its base ``name``, ``kind`` ("f" or "d"),
    ``mode`` and ``mtime`` (for ``preserve``), and the ``feed`` of its bytes (``feed.total``
    of them: the file, or the tar stream of the directory)."""

    name: str
    kind: str
    mode: int
    mtime: float
    feed: FileFeed


def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A member as packed for a push: no owner names, uid and gid 0 (a root receiver
    gives the files to root, anyone else to themselves, as ``scp`` does)."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def open_push(path: str) -> PushSource:
    """Open the local source of a copy. Raises FileNotFoundError (with the path) when it
    does not exist, ValueError when it is neither a regular file nor a directory, and
    what reading it raises (a directory is packed here, before anything starts)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "copy: no such file or directory", path) from None
    name = base_name(os.path.abspath(path))  # ("." is named after the directory)
    if stat.S_ISREG(st.st_mode):
        file = open(path, "rb")
        return PushSource(name, "f", st.st_mode, st.st_mtime, FileFeed(file, st.st_size))
    if not stat.S_ISDIR(st.st_mode):
        raise ValueError(f"copy: {path!r} is neither a regular file nor a directory")
    packed = tempfile.TemporaryFile()
    try:
        with tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(os.path.join(path, ""), arcname=TAR_TOP, filter=owned_by_root)
        size = packed.tell()
        packed.flush()  # (the feed reads the descriptor)
    except BaseException:
        packed.close()
        raise
    return PushSource(name, "d", st.st_mode, st.st_mtime, FileFeed(packed, size))


class Incoming:
    """One slot's pull in progress: the header read so far, the temporary file it goes
    to once the header is known, and the first error met (then the rest is ignored)."""

    __slots__ = ("head", "header", "file", "temp", "error")

    def __init__(self) -> None:
        self.head = bytearray()
        self.header: Optional[Header] = None
        self.file: Optional[IO[bytes]] = None
        self.temp: Optional[str] = None  # the file written: the copy, or a directory's tar
        self.error: Optional[str] = None


class PullSink:
    """``worker.Sink`` of an rcopy into the local directory ``dest``: slot key -> its
    file name (``names``, from ``copy.pull_names``). A slot's data goes to
    ``dest/.NAME.ectmp.XXXX`` (mode 0600); ``commit`` gives a file its mode (the
    node's, less the umask; exactly the node's with ``preserve``, which also keeps its
    mtime) and renames it to ``dest/NAME``, replacing a file of that name; a directory's
    tar stream is unpacked into a temporary directory first, which then replaces a
    directory of that name as a whole. A failure removes every temporary, appends
    ``easycluster rcopy: KEY: REASON`` to the slot's stderr and reports return code 1."""

    def __init__(self, dest: str, names: Dict[str, str], preserve: bool) -> None:
        self.dest = dest
        self.names = names
        self.preserve = preserve
        self.umask = current_umask()
        self.incoming: Dict[str, Incoming] = {}

    # -- the Sink interface ------------------------------------------------------------

    def write(self, slot: SlotResult, data: bytes) -> None:
        inc = self.incoming.get(slot.key)
        if inc is None:
            inc = self.incoming[slot.key] = Incoming()
        if inc.error is not None:
            return
        try:
            if inc.header is None:
                data = self.read_header(inc, slot.key, data)
            if data and inc.file is not None:
                inc.file.write(data)
        except (OSError, ValueError) as e:
            inc.error = str(e)
            self.drop(inc)

    def commit(self, slot: SlotResult) -> int:
        # (left in ``incoming`` until the end: a Ctrl-C before the try is entered leaves
        # it to ``discard``, which the engine calls for a commit broken off)
        inc = self.incoming.get(slot.key) or Incoming()
        try:
            if inc.error is not None:
                raise CopyFailed(inc.error)
            if inc.header is None or inc.file is None or inc.temp is None:
                raise CopyFailed("the node sent no data")
            inc.file.close()
            final = os.path.join(self.dest, self.names[slot.key])
            if inc.header.kind == "f":
                self.finish_file(inc.temp, inc.header, final)
            else:
                self.finish_dir(inc.temp, final)
            inc.temp = None
            return 0
        except (OSError, CopyFailed, tarfile.TarError) as e:
            self.drop(inc)
            slot.stderr += f"easycluster rcopy: {slot.key}: {e}\n".encode()
            return 1
        except BaseException:  # (Ctrl-C while a directory is unpacked: nothing is kept)
            self.drop(inc)
            raise
        finally:
            self.incoming.pop(slot.key, None)

    def discard(self, slot: SlotResult) -> None:
        inc = self.incoming.pop(slot.key, None)
        if inc is not None:
            self.drop(inc)

    # -- the steps -----------------------------------------------------------------------

    def read_header(self, inc: Incoming, key: str, data: bytes) -> bytes:
        """Take the header line from the start of the stream; open the temporary once it
        is complete. Returns the data after it."""
        end = data.find(b"\n")
        if end < 0:
            inc.head += data
            if len(inc.head) > HEADER_MAX:
                raise ValueError("the node sent no copy header")
            return b""
        inc.head += data[:end]
        inc.header = parse_header(bytes(inc.head))
        suffix = ".tar" if inc.header.kind == "d" else ""
        # (named before it is made: see ``new_temp``)
        inc.temp = new_temp(self.dest, self.names[key]) + suffix
        try:
            inc.file = open(inc.temp, "xb", opener=private)
        except FileExistsError:
            inc.temp = None  # (not ours: never removed)
            raise
        return data[end + 1 :]

    def finish_file(self, temp: str, header: Header, final: str) -> None:
        mode = 0o666 if header.mode is None else header.mode
        os.chmod(temp, mode if self.preserve else mode & ~self.umask & 0o777)
        if self.preserve and header.mtime is not None:
            os.utime(temp, (header.mtime, header.mtime))
        if os.path.isdir(final):
            raise CopyFailed(f"{final}: is a directory")
        os.replace(temp, final)

    def finish_dir(self, tar_path: str, final: str) -> None:
        if non_directory(final):
            raise CopyFailed(f"{final}: exists and is not a directory")
        # (named before it is made, and made inside the try: see ``new_temp``)
        unpacked, ours = new_temp(self.dest, os.path.basename(final)), True
        try:
            try:
                os.mkdir(unpacked, 0o700)
            except FileExistsError:
                ours = False  # (never removed)
                raise
            tar = gnu_tar()
            if tar is not None:
                try:
                    tar_extract(tar, tar_path, unpacked, self.preserve)
                except CopyError as e:
                    raise CopyFailed(str(e)) from None
                settle_pulled(unpacked)
            else:
                with tarfile.open(tar_path, mode="r:") as archive:
                    unpack(archive, unpacked, self.member_filter())
            os.unlink(tar_path)
            replace_dir(unpacked, final, self.preserve)
        except BaseException as e:
            if not ours:
                raise
            if not remove_tree(unpacked) and not isinstance(e, KeyboardInterrupt):
                raise CopyFailed(f"{e}; {unpacked} could not be removed") from e
            raise

    def member_filter(self) -> Callable[[tarfile.TarInfo, str], Optional[tarfile.TarInfo]]:
        """tarfile's ``tar`` filter (nothing lands outside the directory), owners left to
        us; without ``preserve`` modes less the umask and mtimes not restored; with it,
        each member's mode as the node sent it (the filter would drop group and other
        write) less setuid and setgid, which a file fetched from a node never gets here."""

        def member(info: tarfile.TarInfo, path: str) -> Optional[tarfile.TarInfo]:
            sent = info.mode
            info = tarfile.tar_filter(info, path)  # (raises for a member outside ``path``)
            changes: Dict[str, Any] = {"uid": None, "gid": None, "uname": None, "gname": None}
            if not self.preserve:
                changes["mtime"] = None
                if sent is not None and info.mode is not None:
                    changes["mode"] = sent & ~self.umask & 0o777  # (as tar -x -m's)
            elif sent is not None and info.mode is not None:
                changes["mode"] = sent & 0o1777
            return info.replace(**changes, deep=False)

        return member

    def drop(self, inc: Incoming) -> None:
        """Close and remove a slot's temporary."""
        if inc.file is not None:
            try:
                inc.file.close()
            except OSError:
                pass
            inc.file = None
        if inc.temp is not None:
            try:
                os.unlink(inc.temp)
            except OSError:
                pass
            inc.temp = None


def new_temp(dest: str, name: str) -> str:
    """The path of a new temporary for ``name`` in ``dest``, not made yet:
    ``.NAME.ectmp.PID.RANDOM`` (``copy.temp_name``). Its holder records the name first
    and makes it after (``open(..., "xb")``, ``os.mkdir``), so that whatever removes the
    holder's temporaries on Ctrl-C knows it the moment it exists: ``mkstemp`` and
    ``mkdtemp`` say the name only as they return, and a SIGINT that arrived during
    their system call raises KeyboardInterrupt as that call returns, before the name is
    given (a temporary nobody removes; seen under CPU load). A name already there
    (FileExistsError: 8 random bytes make that a 2**-64 chance) is not ours: the holder
    forgets it before it raises."""
    return os.path.join(dest, temp_name(name, f"{os.getpid()}.{os.urandom(8).hex()}"))


def private(path: str, flags: int) -> int:
    """``open``'s opener for a temporary: mode 0600 (as ``mkstemp``'s), not inherited."""
    return os.open(path, flags | os.O_CLOEXEC, 0o600)


class CopyFailed(Exception):
    """A pull that cannot be committed (the message says why); caught in ``commit``."""


def unpack(
    tar: tarfile.TarFile,
    into: str,
    member: Callable[[tarfile.TarInfo, str], Optional[tarfile.TarInfo]],
) -> None:
    """Extract ``tar`` into ``into`` through the member filter ``member``. Where tarfile
    has no filters (Python before 3.9.17, 3.10.12, 3.11.4) a member named outside
    ``into`` (absolute, or through ``..``) or linking outside it is refused, and modes,
    mtimes and owners are restored as the archive says."""
    if hasattr(tarfile, "tar_filter"):
        tar.extractall(into, filter=member)
        return
    members = tar.getmembers()
    for info in members:
        for name in (info.name, info.linkname if info.issym() or info.islnk() else ""):
            if name.startswith("/") or ".." in name.split("/"):
                raise CopyFailed(f"refusing the archive member {info.name!r}")
    tar.extractall(into, members)


def settle_pulled(root: str) -> None:
    """Make a tree unpacked by ``tar`` from a node's stream safe to keep here (``tar``
    runs as we do: as root it makes device files and keeps setuid): setuid and setgid
    are cleared everywhere, and a device, FIFO or socket fails the pull (CopyFailed,
    naming it), as ``tarfile``'s data filter refuses them. ``root`` is a private
    temporary (``mkdtemp``: 0700), so nobody else saw either meanwhile; a directory
    that cannot be read fails the pull rather than keep what it may hold."""
    set_id = stat.S_ISUID | stat.S_ISGID

    def settle(path: str) -> None:
        mode = os.lstat(path).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            where = os.path.relpath(path, root)
            raise CopyFailed(f"{where}: a device, FIFO or socket: refused (nothing kept)")
        if mode & set_id and not stat.S_ISLNK(mode):
            os.chmod(path, stat.S_IMODE(mode) & ~set_id)

    def fail(error: OSError) -> None:
        raise error

    settle(root)
    for where, dirs, files in os.walk(root, onerror=fail):
        for name in dirs + files:
            settle(os.path.join(where, name))


def replace_dir(new: str, final: str, preserve: bool) -> None:
    """Rename the directory ``new`` to ``final``; a directory already there is moved
    aside first and removed after (put back if the rename fails). Another rcopy into
    the same directory may replace it at the same moment (``treeplace.place_tree``).
    CopyFailed says why it failed or what it left."""
    try:
        place_tree(new, final, preserve)
    except PlaceError as e:
        raise CopyFailed(str(e)) from None
