"""The node's side of ``Task.copy`` and ``Task.rcopy`` over an RPC session, in Python.

Over ssh and exec a copy is a POSIX ``sh`` receiver or sender (``cluster/copy.py``);
over our own server the same streams are handled here, with no shell and no tools
needed on the node (a directory's tar stream is made and unpacked by GNU ``tar`` where
the node has one, else by ``tarfile``: ``gnu_tar``). ``commands.py`` keeps these
objects under the client's token, as it keeps a shell command: the client sends a
pushed file's bytes in raw chunks with ``write`` (out of band: no base64, never the
whole file in one message), ends them with
``close_stdin`` and learns the outcome with ``read``; a pull's ``read`` returns the
next chunks of ``copy.SENDER``'s stream (a header line, then the data).

``Receiver`` follows ``copy.RECEIVER``'s rules: the target is ``dest/name`` when
``dest`` is a directory, else ``dest`` (whose directory must exist); a file never
replaces a directory; a directory replaces a directory as a whole and never a file.
The bytes go to ``.NAME.ectmp.XXXX`` next to the target (mode 0600 until the end),
which is renamed onto it only once exactly ``size`` bytes came and every step
succeeded; any failure, a ``kill`` or the session's end removes the temporary. (A
server killed with SIGKILL in the middle of a push leaves its temporary, never a
partial target.) Failures are return code 1 with ``easycluster copy: ...`` on stderr.
"""

from __future__ import annotations

import os
import stat
import threading

from .treeplace import PlaceError, non_directory, place_tree, remove_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

    Chunks = List[Tuple[int, bytes]]

STDOUT, STDERR = 1, 2
CHUNK = 1 << 20  # bytes a pull's read() returns at most
RC_KILLED = 128 + 9
TEMP_MARK = ".ectmp."  # as cluster/copy.py names temporaries (the cleanup tools look for it)


class CopyError(Exception):
    """A copy that cannot go on; the message is the line for the node's stderr."""


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (changing it
    is process-wide, so another thread could create a file with the wrong one)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def expand_home(path: str) -> str:
    """``~`` and ``~/...`` as the node user's home (``copy.RECEIVER`` and ``SENDER`` do
    the same in ``sh``); any other path as given (``~user`` is refused before a copy
    starts: ``copy.check_remote_path``)."""
    if path == "~" or path.startswith("~/"):
        return os.path.expanduser("~") + path[1:]
    return path


def gnu_tar() -> Optional[str]:
    """The path of GNU tar on this host, or None (then ``tarfile`` does the work). Its
    options and its safety on extraction (no member outside the directory, nothing
    written through a symlink it made) are what the copies rely on, so another ``tar``
    is not used. ``tarfile`` costs 150 us a member where ``tar`` costs 15 (5,000 small
    files: 0.8 s against 0.09 s, per node and per pull here)."""
    import shutil
    import subprocess

    path = shutil.which("tar")
    if path is None:
        return None
    known = _GNU_TAR.get(path)  # (asked once per path: an rcopy asks for every node)
    if known is not None:
        return path if known else None
    try:
        out = subprocess.run(
            [path, "--version"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    _GNU_TAR[path] = gnu = out.returncode == 0 and b"GNU tar" in out.stdout[:100]
    return path if gnu else None


_GNU_TAR: Dict[str, bool] = {}  # gnu_tar's answers, by the path of the tar it found


def tar_extract(tar: str, archive: str, into: str, preserve: bool) -> None:
    """Extract ``archive`` into ``into`` with GNU ``tar`` (``gnu_tar()``): owners left to
    us; with ``preserve`` every mode and mtime as sent (setuid too: ``-p``), without it
    the umask applied and mtimes not restored (``-m``). Raises CopyError with tar's
    message when it fails."""
    import subprocess

    words = [tar, "-x", "-f", archive, "-C", into, "--no-same-owner"]
    words += ["-p"] if preserve else ["-m", "--no-same-permissions"]
    proc = subprocess.Popen(
        words, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _, err = proc.communicate()
    except BaseException:
        # (Ctrl-C: tar is killed and waited for before the caller removes ``into``;
        # ``subprocess.run`` kills without waiting once 0.25 s passed, and a tar still
        # running could write into the tree while it is removed: a tree left behind)
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        why = err.decode("utf-8", "replace").strip().replace("\n", "; ")
        raise CopyError(f"cannot unpack: {why or f'tar exited with {proc.returncode}'}")


def _remove(path: Optional[str]) -> bool:
    """Remove a temporary (a file, or a tree); False if something of it is left."""
    if not path:
        return True
    if os.path.isdir(path) and not os.path.islink(path):
        return remove_tree(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


class Receiver:
    """One pushed file (``kind`` "f") or directory ("d": a tar stream whose top member
    is ``top``) of ``size`` bytes arriving for ``dest`` (module docstring). Raises
    CopyError when the target is refused before any byte came."""

    def __init__(
        self,
        dest: str,
        name: str,
        size: int,
        mode: int,
        kind: str,
        preserve: bool,
        mtime: float,
        top: str,
    ) -> None:
        import tempfile

        if kind not in ("f", "d"):
            raise CopyError(f"easycluster copy: unknown kind {kind!r}")
        dest = expand_home(dest)
        target = os.path.join(dest, name) if os.path.isdir(dest) else dest
        parent, base = os.path.split(target)
        parent = parent or "."
        if not base and os.path.lexists(parent) and not os.path.isdir(parent):
            raise CopyError(f"easycluster copy: {parent}: not a directory")
        if not base or not os.path.isdir(parent):
            raise CopyError(f"easycluster copy: {parent}/: no such directory")
        if kind == "f" and os.path.isdir(target):
            raise CopyError(f"easycluster copy: {target}: is a directory")
        if kind == "d" and non_directory(target):
            raise CopyError(f"easycluster copy: {target}: exists and is not a directory")
        self.target = target
        self.size, self.mode, self.kind = size, mode, kind
        self.preserve, self.mtime, self.top = preserve, mtime, top
        self.got = 0
        self.rc: Optional[int] = None
        self.message = b""
        self.cond = threading.Condition()
        prefix = f".{base}{TEMP_MARK}"
        try:
            if kind == "f":
                fd, self.temp = tempfile.mkstemp(prefix=prefix, dir=parent)  # (mode 0600)
                self.data = self.temp
            else:
                self.temp = tempfile.mkdtemp(prefix=prefix, dir=parent)
                self.data = os.path.join(self.temp, "t.tar")
                fd = os.open(self.data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise CopyError(f"easycluster copy: {target}: cannot write: {e.strerror}") from None
        self.fd: Optional[int] = fd

    def write(self, data: bytes) -> None:
        """Append ``data`` (ignored once the copy failed or ended)."""
        with self.cond:
            if self.fd is None:
                return
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view) :]
                self.got += len(data)
            except OSError as e:
                self._fail(f"{self.target}: cannot write: {e.strerror}")

    def close_stdin(self) -> None:
        """The stream ended: check, finish and rename into place (or fail and clean up)."""
        with self.cond:
            if self.fd is None:
                return
            try:
                os.close(self.fd)
                self.fd = None
                if self.got != self.size:
                    got, size = self.got, self.size
                    raise CopyError(f"{self.target}: incomplete, {got} of {size} bytes came")
                if self.kind == "f":
                    self._finish_file()
                else:
                    self._finish_dir()
                self._end(0, b"")
            except CopyError as e:
                self._fail(str(e))
            except (OSError, ValueError, EOFError) as e:  # (tarfile's errors are these)
                self._fail(f"{self.target}: {e}")

    def kill(self) -> None:
        """Give up: remove the temporary; ``read`` reports 137."""
        with self.cond:
            if self.rc is None:
                left = self._abandon()
                self._end(RC_KILLED, left.encode("utf-8", "replace"))

    def read(self) -> Tuple[Chunks, Optional[int]]:
        """Wait for the outcome: ``([(STDERR, why)] or [], rc)``."""
        with self.cond:
            self.cond.wait_for(lambda: self.rc is not None)
            chunks = [(STDERR, self.message)] if self.message else []
            return chunks, self.rc

    # -- the steps (with self.cond held) --------------------------------------------------

    def _finish_file(self) -> None:
        mode = self.mode & 0o7777 if self.preserve else self.mode & ~current_umask() & 0o777
        os.chmod(self.temp, mode)
        if self.preserve:
            os.utime(self.temp, (self.mtime, self.mtime))
        if os.path.isdir(self.target):
            raise CopyError(f"{self.target}: is a directory")
        os.replace(self.temp, self.target)
        self.temp = ""

    def _finish_dir(self) -> None:
        tar = gnu_tar()
        if tar is not None:
            try:
                tar_extract(tar, self.data, self.temp, self.preserve)
            except CopyError as e:
                raise CopyError(f"{self.target}: {e}") from None
        else:
            import tarfile

            with tarfile.open(self.data, mode="r:") as archive:
                _unpack(archive, self.temp, self.preserve)
        os.unlink(self.data)
        new = os.path.join(self.temp, self.top)
        if not os.path.isdir(new):
            raise CopyError(f"{self.target}: the stream held no directory")
        try:  # (other nodes sharing the directory may replace it at once: treeplace.py)
            place_tree(new, self.target, self.preserve)
        except PlaceError as e:
            raise CopyError(str(e)) from None
        temp, self.temp = self.temp, ""
        if not _remove(temp):
            raise CopyError(f"{temp}: a temporary that could not be removed is left")

    def _fail(self, why: str) -> None:
        left = self._abandon()
        self._end(1, f"easycluster copy: {why}\n{left}".encode("utf-8", "replace"))

    def _abandon(self) -> str:
        """Close and remove the temporary; the line that names it if it could not go."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        temp, self.temp = self.temp, ""
        if _remove(temp):
            return ""
        return f"easycluster copy: {temp}: a temporary that could not be removed is left\n"

    def _end(self, rc: int, message: bytes) -> None:
        if self.rc is None:
            self.rc, self.message = rc, message
            self.cond.notify_all()


def _unpack(tar: Any, into: str, preserve: bool) -> None:
    """Extract ``tar`` into ``into``: nothing outside it, owners left to us; without
    ``preserve`` the umask applied and mtimes not restored (as ``tar -x -m`` does), with
    it every mode as sent (as ``tar -x -p`` does over ssh)."""
    import tarfile

    umask = current_umask()
    if hasattr(tarfile, "tar_filter"):

        def member(info: Any, path: str) -> Any:
            sent = info.mode
            info = tarfile.tar_filter(info, path)  # (raises for a member outside ``path``)
            changes: Dict[str, Any] = {"uid": None, "gid": None, "uname": None, "gname": None}
            if not preserve:
                changes["mtime"] = None
                if sent is not None and info.mode is not None:
                    changes["mode"] = sent & ~umask & 0o777  # (as tar's: the filter
                    # also drops group and other write)
            elif sent is not None and info.mode is not None:
                changes["mode"] = sent & 0o7777  # (the filter drops group/other write)
            return info.replace(**changes, deep=False)

        tar.extractall(into, filter=member)
        return
    members = tar.getmembers()  # (Python without tarfile filters: check names by hand)
    for info in members:
        for name in (info.name, info.linkname if info.issym() or info.islnk() else ""):
            if name.startswith("/") or ".." in name.split("/"):
                raise CopyError(f"refusing the archive member {info.name!r}")
    tar.extractall(into, members)


class Sender:
    """``source`` sent as ``copy.SENDER`` sends it: ``F MODE MTIME`` and the file's bytes,
    or ``D`` and a tar stream of the directory's content: GNU ``tar -c``'s output as it
    comes where there is one (``gnu_tar``; its messages and return code are the copy's,
    as over ssh), else packed first by ``tarfile`` into an anonymous temporary file
    (memory stays bounded either way). Raises CopyError when it cannot be read."""

    def __init__(self, source: str) -> None:
        source = expand_home(source)
        self.proc: Any = None  # the tar streaming a directory
        self.killed = False
        self.errors: Any = None  # its stderr (a temporary file: never a full pipe)
        try:
            st = os.stat(source)
            if stat.S_ISDIR(st.st_mode):
                self.file = self._pack(source)
                head = b"D\n"
            elif not stat.S_ISREG(st.st_mode):  # (a FIFO would block, a device never end)
                raise CopyError(f"easycluster rcopy: {source}: not a regular file or directory")
            else:
                self.file = open(source, "rb")
                head = b"F %o %d\n" % (st.st_mode & 0o7777, int(st.st_mtime))
        except FileNotFoundError:
            raise CopyError(f"easycluster rcopy: {source}: no such file or directory") from None
        except OSError as e:
            raise CopyError(f"easycluster rcopy: {source}: {e.strerror or e}") from None
        self.head: Optional[bytes] = head
        self.rc: Optional[int] = None
        self.lock = threading.Lock()

    def _pack(self, source: str) -> Any:
        import tempfile

        tar = gnu_tar()
        if tar is not None:
            import subprocess

            self.errors = tempfile.TemporaryFile()
            try:
                self.proc = subprocess.Popen(
                    [tar, "-c", "-f", "-", "."],
                    cwd=source,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=self.errors,
                    bufsize=CHUNK,
                )
            except BaseException:
                self.errors.close()
                raise
            return self.proc.stdout
        import tarfile

        packed = tempfile.TemporaryFile()
        try:
            with tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as archive:
                archive.add(source, arcname=".")
            packed.seek(0)
        except BaseException:
            packed.close()
            raise
        return packed

    def read(self) -> Tuple[Chunks, Optional[int]]:
        """The next piece of the stream (at most ``CHUNK`` bytes), with 0 once it ended
        (or tar's return code and messages, if it failed)."""
        with self.lock:
            if self.rc is not None:
                return [], self.rc
            out = self.head or b""
            self.head = None
            try:
                data = self.file.read(CHUNK - len(out))  # (a pipe: until that much, or EOF)
            except OSError as e:
                self._close(1)
                why = f"easycluster rcopy: cannot read: {e.strerror or e}\n".encode()
                return ([(STDOUT, out)] if out else []) + [(STDERR, why)], 1
            chunks = [(STDOUT, out + data)] if out or data else []
            if not data:
                rc, why = self._ended()
                if why:
                    chunks.append((STDERR, why))
                self._close(rc)
            return chunks, self.rc

    def _ended(self) -> Tuple[int, bytes]:
        """The stream's end: tar's return code and messages (0 and none without tar)."""
        if self.proc is None:
            return 0, b""
        rc = self.proc.wait()
        if self.killed:
            return RC_KILLED, b""
        if rc < 0:  # (killed by signal -rc: as a shell reports it)
            rc = 128 - rc
        self.errors.seek(0)
        return rc, self.errors.read()

    def kill(self) -> None:
        """Give up: ``read`` reports 137 (tar is killed first: a ``read`` waiting for
        it returns, and the lock with it)."""
        self.killed = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            try:
                proc.kill()
            except OSError:
                pass
        with self.lock:
            if self.rc is None:
                self._close(RC_KILLED)

    def write(self, data: bytes) -> None:
        raise ValueError("a copy's sender takes no input")

    def close_stdin(self) -> None:
        pass

    def _close(self, rc: int) -> None:
        self.rc = rc
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.file.close()
        if self.proc is not None:
            self.proc.wait()
            self.errors.close()
