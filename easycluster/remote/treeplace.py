"""A finished tree renamed onto a directory that other nodes may be replacing at once.

A pushed directory replaces the one at its target as a whole. rename(2) cannot do that
in one step once a non-empty directory is there, so the old one is first renamed aside
(``.NAME.ecold.XXXX`` beside it: a rename within one parent needs no write permission
on the directory moved, which a 0555 tree's lacks), the new one renamed in, and the
aside removed. Nodes sharing the target's file system (an NFS home: ``copy -w
node[1-64] mydir --dest ~/``) do this at the same moment, so between one node's aside
and its rename another node's fresh tree may land on the target (the rename fails:
ENOTEMPTY, or EEXIST), and the tree a node means to move aside may already have been
moved by another (ENOENT). ``place_tree`` takes both as a lost turn and tries again
(``copy.RECEIVER`` does the same in ``sh``, for ssh and exec).

Why retrying ends: a turn is lost only when another rename onto the target succeeded
inside it, and a copy whose rename succeeded is done; so among pushes alone a node
loses at most once per other node. ``TRIES`` bounds it against anything else (a
process creating the directory again and again).

Why a tree that keeps winning is taken as ours only when identical: once ``TRIES`` turns
are lost, the tree in place was put there by someone else, and the push may only
report success if the target then holds exactly what it would have left: the same
names, types, modes, owners, bytes and symlink targets (and mtimes with ``preserve``;
without it they are the unpack's time). Then nobody can tell it from our own, put in
place just before theirs. Anything else there (another copy's content, a directory
someone is still filling) is not ours to claim, and the node fails saying so.

Imported by the node's server (standard library only) and by the rcopy's local side.
"""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple

TRIES = 100  # turns lost before giving up (copy.RECEIVER's ``place`` uses the same)
OLD_MARK = ".ecold."  # as cluster/copy.py names a tree moved aside
TAKEN = (errno.ENOTEMPTY, errno.EEXIST)  # a rename onto a non-empty directory


class PlaceError(Exception):
    """A tree that could not be put in place, or whose predecessor could not be
    removed; the message names the target and says why."""


def remove_tree(path: str) -> bool:
    """Remove the directory tree ``path`` as its owner can: a directory it may not write
    (a 0555 one inside a copied tree) is opened up first. True once nothing is left."""
    import shutil  # (here: every server imports this module, few remove trees)

    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return True

    def open_up(where: str) -> None:
        try:
            st = os.lstat(where)
            if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o700 != 0o700:
                os.chmod(where, stat.S_IMODE(st.st_mode) | 0o700)
        except OSError:
            pass

    open_up(path)
    for root, dirs, _ in os.walk(path):  # (top-down: a directory is opened before it is read)
        for name in dirs:
            open_up(os.path.join(root, name))
    shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


def place_tree(new: str, target: str, preserve: bool = False, tries: int = TRIES) -> None:
    """Rename the directory ``new`` onto ``target``, replacing a directory there as a
    whole (module docstring), however many others replace it at the same time.

    Returns once ``new`` is the target, or (after ``tries`` lost turns) once the tree
    there is identical to ``new`` (``new`` is then removed). Raises PlaceError when the
    target is something else than a directory, when other trees kept taking its place
    and the last differs from ``new`` (``new`` is left to the caller), or when a tree
    moved aside could not be removed (the message names it; ``new`` is in place if the
    message says "replaced"); OSError when a rename fails otherwise (the target then is
    as it was, a tree moved aside put back)."""
    for _ in range(tries):
        # (named before the move, which is inside the try: a Ctrl-C raised as the rename
        # aside returns found no name, and the old tree stayed aside, the target empty)
        aside, moved = aside_name(target), False
        try:
            moved = move_aside(target, aside)
            os.rename(new, target)
        except BaseException as e:  # (Ctrl-C too: the old tree goes back)
            settle_aside(aside if os.path.lexists(aside) else None, target)
            if isinstance(e, OSError) and e.errno in TAKEN:
                continue  # another tree landed between our aside and our rename
            if isinstance(e, OSError) and e.errno == errno.ENOTDIR:
                raise PlaceError(f"{target}: exists and is not a directory") from None
            raise
        if moved and not remove_aside(aside):
            why = "replaced, but the old one could not be removed: it is left as"
            raise PlaceError(f"{target}: {why} {aside}")
        return
    if not same_tree(new, target, preserve):
        raise PlaceError(f"{target}: other trees kept taking its place ({tries} tries)")
    if not remove_tree(new):
        raise PlaceError(f"{target}: in place, but {new} could not be removed")


def non_directory(path: str) -> bool:
    """True if something else than a directory (or a symlink to one) is at ``path``,
    by one look at it: a directory another node holds aside for the instant of its
    swap is gone, never something else (two looks, "exists" then "not a directory",
    could see it there, then not)."""
    try:
        return not stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        return os.path.islink(path)  # (a dangling symlink)
    except OSError:
        return False  # (what follows fails, saying why)


def aside_name(target: str) -> str:
    """A new name beside ``target`` for the tree there moved aside: ``.NAME.ecold.XXXX``."""
    parent, name = os.path.split(target)
    # (the pid and random bytes: nodes sharing the directory may share pids too)
    return os.path.join(parent, f".{name}{OLD_MARK}{os.getpid()}.{os.urandom(4).hex()}")


def move_aside(target: str, aside: str) -> bool:
    """Rename the directory at ``target`` to ``aside`` (``aside_name``); False when
    nothing is there (or another node moved it first). PlaceError if something else
    than a directory is there."""
    if non_directory(target):
        raise PlaceError(f"{target}: exists and is not a directory")
    try:
        os.rename(target, aside)
    except FileNotFoundError:
        return False
    return True


def remove_aside(aside: str) -> bool:
    """``remove_tree(aside)``, finished even when interrupted (Ctrl-C in the rcopy's
    local commit: the removal is completed, then the interrupt goes on)."""
    try:
        return remove_tree(aside)
    except BaseException:
        remove_tree(aside)
        raise


def settle_aside(aside: Optional[str], target: str) -> None:
    """After a failed rename onto ``target``: put the tree moved ``aside`` back if the
    target is still free, else remove it (a whole tree is in place: it superseded the
    one aside). PlaceError naming it when it can be neither."""
    if aside is None:
        return
    try:
        os.rename(aside, target)
        return
    except OSError as e:
        if e.errno not in TAKEN:
            raise PlaceError(f"{target}: the old one could not be put back from {aside}: {e}")
    if not remove_tree(aside):
        raise PlaceError(f"{target}: the old one could not be removed: it is left as {aside}")


def same_tree(a: str, b: str, times: bool) -> bool:
    """True if the trees ``a`` and ``b`` hold the same names, each of the same type,
    mode and owner, with the same bytes (a file) or target (a symlink), and with
    ``times`` the same mtime (all but directories, whose mtimes the renames change).
    False as soon as anything differs or cannot be read, and for any other file type."""
    pending = [""]
    try:
        while pending:
            rel = pending.pop()
            pa, pb = os.path.join(a, rel), os.path.join(b, rel)
            sa, sb = os.lstat(pa), os.lstat(pb)
            if looks(sa, times) != looks(sb, times):
                return False
            if stat.S_ISDIR(sa.st_mode):
                names = sorted(os.listdir(pa))
                if names != sorted(os.listdir(pb)):
                    return False
                pending.extend(os.path.join(rel, n) for n in names)
            elif stat.S_ISLNK(sa.st_mode):
                if os.readlink(pa) != os.readlink(pb):
                    return False
            elif not stat.S_ISREG(sa.st_mode) or not same_bytes(pa, pb):
                return False
    except OSError:
        return False
    return True


def looks(st: os.stat_result, times: bool) -> Tuple[int, ...]:
    """What ``same_tree`` compares of an entry's status."""
    seen = [st.st_mode, st.st_uid, st.st_gid]
    if not stat.S_ISDIR(st.st_mode):
        seen.append(st.st_size)
        if times:
            seen.append(st.st_mtime_ns)
    return tuple(seen)


def same_bytes(a: str, b: str) -> bool:
    """True if the files ``a`` and ``b`` hold the same bytes (read in 1 MiB blocks)."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            block = fa.read(1 << 20)
            if block != fb.read(1 << 20):
                return False
            if not block:
                return True
