"""File copy as shell commands: the remote side of ``Task.copy`` and ``Task.rcopy`` (pure).

Nothing here touches a file or a process: it builds the POSIX ``sh`` command lines a
node runs (through any backend that runs a shell command: ssh, local exec, a
``docker exec %h sh -c %c`` template) and chooses names. The local side (the bytes
sent, the files written here) is in ``copyio.py``.

Push (``copy``): every node runs ``RECEIVER`` with the data on its stdin (a file's
bytes, or a tar stream of a directory) and these arguments::

    $1 dest   $2 name (the source's base name)   $3 size (bytes that must arrive)
    $4 mode (octal)   $5 keep ("p": preserve)   $6 stamp (touch -t, UTC, or "")
    $7 kind ("f" file, "d" directory)   $8 the guard's script (``GUARD``)

Where it goes: if ``dest`` is an existing directory the copy is ``dest/name``, else it
is ``dest`` itself (whose directory must exist; a ``dest`` ending in ``/`` names a
directory, so it must exist). A file never replaces a directory; a
directory replaces a directory of that name as a whole (it is not merged) and never
replaces a file. A ``dest`` that is ``~`` or starts with ``~/`` is under ``$HOME``
(``~user`` is refused here, ``check_remote_path``); names are kept byte for byte, a
trailing newline too (no command substitution touches them). A directory the node user
cannot write fails at once (``cannot write``), before anything is sent.

How it fails safe: the data is written to ``.NAME.ectmp.PID`` next to the target (a
file: the copy itself, made with umask 077 and given its mode at the end; a
directory: a temporary directory holding the tar file, then the unpacked tree), and
renamed onto the target only once exactly ``size`` bytes arrived and every step
succeeded. A replaced directory is first renamed to ``.NAME.ecold.PID``; nodes sharing
the directory (an NFS home) that replace it at the same moment take turns until each
one's tree went in as a whole (``place`` in ``RECEIVER``; ``remote/treeplace.py``
for rpc), so the last one stays and every node succeeds. The writer
runs on the left of a pipeline whose right side is the guard (detached with ``setsid``
where there is one, so that a SIGKILL of the receiver's process group does not reach
it): the writer sends its exit status down the pipe when it ends; the guard waits for
that (or for the pipe's end, if the writer was killed), removes the temporary, puts a
moved-aside directory back if the new one never took its place (else removes it), and
exits with the writer's status (1 if it had none). A tree it cannot remove at once (a
read-only directory inside) is made writable and removed again; if something is still
left, the node fails (1) with a line naming it. So whatever ends the writer
(killed, timed out, disk full, the connection lost: stdin ends early and the byte
count is short) leaves neither a half-written target nor a temporary, and a failure
is the node's return code 1 with the reason on its stderr, each line starting with
``easycluster copy:`` (or the failing tool's own message).

Pull (``rcopy``): every node runs ``SENDER`` with the source path as ``$1`` (``~``
and ``~/`` as for a push). It writes one header line then the data on stdout: ``F MODE
MTIME`` and the file's bytes (MODE in octal and MTIME in seconds, negative before 1970,
or ``-`` where ``stat`` cannot tell), or ``D`` and a tar stream of the directory's
content. A source that cannot be read exits non-zero
with the reason on stderr; the local side keeps nothing unless the command's return
code is 0 (for ssh that also means every byte arrived).
"""

from __future__ import annotations

import os
import shlex
import time
from typing import Dict, List, NamedTuple, Optional

TEMP_MARK = ".ectmp."  # in every temporary name (remote and local): ``.NAME.ectmp.PID``
OLD_MARK = ".ecold."  # a directory moved aside while its replacement is renamed in
DUP_MARK = "~"  # rcopy names the k-th listing of a node ``NAME.NODE~k``

# Shared by the receiver and its guard. ``wipe PATH`` removes a tree as its owner can: a
# directory without write permission (a 0555 one inside a pushed tree) is opened up
# first. ``put SRC DST`` renames the directory SRC to DST as rename(2) does (fails if
# DST is a non-empty directory by then). POSIX ``mv SRC DST`` moves SRC *into* DST when
# DST is a directory, so ``mv -T`` (GNU coreutils') is asked for first; a ``mv``
# without it (BSD's) is used only once DST was seen free, and if SRC still went into
# a DST that appeared meanwhile (found there under its own name, which holds the
# copy's random bytes), it is taken back out and ``put`` fails (SRC may then be gone,
# if that DST was moved and removed meanwhile).
TREE_FUNCTIONS = r"""wipe() {
  [ -e "$1" ] || [ -L "$1" ] || return 0
  rm -rf -- "$1" 2>/dev/null && return 0
  [ -L "$1" ] || (cd -- "${1%/*}/" && find "./${1##*/}" -type d ! -perm -700 \
    -exec chmod u+rwx {} \;) 2>/dev/null  # (from its directory: find needs a cwd)
  rm -rf -- "$1" 2>/dev/null
}
put() {
  mv -f -T -- "$1" "$2" 2>/dev/null && return 0
  [ ! -d "$2" ] && mv -f -- "$1" "$2" 2>/dev/null || return 1
  [ -e "$2/${1##*/}" ] || [ -L "$2/${1##*/}" ] || return 0
  mv -f -- "$2/${1##*/}" "$1" 2>/dev/null
  return 1
}
"""

# The guard: $1 the temporary, $2 the moved-aside directory, $3 the target; stdin is the
# pipe the writer sends its exit status down. It first makes ``$1.g``: the writer waits
# for it, so that a kill of the receiver's process group in its first moments cannot
# catch the guard before ``setsid`` took it out of the group (a temporary left behind).
# (With ``true``, not ``:``: a failed redirection of a special built-in ends the shell.)
# What ``wipe`` cannot remove is named.
GUARD = (
    r"""true 2>/dev/null >"$1.g"
rc=; read -r rc
"""
    + TREE_FUNCTIONS
    + r"""left=
wipe "$1" || left="$1: a temporary that could not be removed is left behind"
rm -f -- "$1.g"
# (a tree of ours left inside another node's by a mv without -T, if killed just then)
[ "$rc" = 0 ] || wipe "$3/new.${1##*.ectmp.}" || left="$3/new.${1##*.ectmp.}: is left"
if [ -e "$2" ] || [ -L "$2" ]; then
  # (once the new tree went in, the aside is superseded, whatever is at the target now:
  # another node may hold it aside for the instant of its own swap)
  if [ "$rc" = 0 ] || [ -e "$3" ] || [ -L "$3" ]; then
    wipe "$2" || left="$3: replaced, but the old one could not be removed: it is left as $2"
  elif ! put "$2" "$3"; then  # (put back, unless another node's tree took its place)
    if [ -d "$3" ]; then
      wipe "$2" || left="$3: the old one could not be removed: it is left as $2"
    else
      left="$3: the old one could not be put back: it is left as $2"
    fi
  fi
fi
# (said last: once the receiver was killed, nobody may read stderr any more)
case $rc in
''|*[!0-9]*) echo "easycluster copy: the receiver was killed" >&2; rc=1 ;;
esac
if [ -n "$left" ]; then
  printf 'easycluster copy: %s\n' "$left" >&2
  [ "$rc" != 0 ] || rc=1
fi
exit "$rc"
"""
)

# (dir and base come from parameter expansions: a command substitution would drop a
# trailing newline of the name; ``~`` and ``~/`` are the node user's home, as for scp)
RECEIVER = (
    r"""dest=$1 name=$2 size=$3 mode=$4 keep=$5 stamp=$6 kind=$7 guard=$8
fail() { printf 'easycluster copy: %s\n' "$*" >&2; exit 1; }
"""
    + TREE_FUNCTIONS
    + r"""case $dest in
'~'|'~/'*) [ -n "$HOME" ] || fail "$dest: HOME is not set"; dest=$HOME${dest#?} ;;
esac
if [ -d "$dest" ]; then target=${dest%/}/$name; else target=$dest; fi
case $target in */)
  [ -e "${target%/}" ] && fail "${target%/}: not a directory"
  fail "$target: no such directory" ;;
esac
case $target in
*/*) dir=${target%/*}/ base=${target##*/} ;;
*) dir=./ base=$target ;;
esac
case $dir in -*) dir=./$dir ;; esac
[ -d "$dir" ] || fail "$dir: no such directory"
target=$dir$base
[ -w "$dir" ] && [ -x "$dir" ] || fail "$target: cannot write: $dir is not writable"
if [ "$kind" = f ] && [ -d "$target" ]; then fail "$target: is a directory"; fi
# (each a single look: a directory another node holds aside for the instant of its
# swap is gone, never something else; "exists" then "not a directory" could see both)
if [ "$kind" = d ] && { [ -f "$target" ] || [ -p "$target" ] || [ -S "$target" ] ||
  [ -b "$target" ] || [ -c "$target" ]; }; then
  fail "$target: exists and is not a directory"
fi
# (the pid and 4 random bytes: nodes sharing a file system may share pids too, as
# containers on one volume, each in its own pid namespace)
uniq=$$.$(od -An -N4 -tx4 /dev/urandom 2>/dev/null | tr -dc 0-9a-f)
tmp=$dir.$base.ectmp.$uniq old=$dir.$base.ecold.$uniq mask=$(umask)
# place NEW: rename the tree NEW onto $target, the directory there first put aside as
# $old (the guard removes it once NEW is in place, else puts it back). Nodes sharing
# the directory do this at once: between our aside and our rename another node's tree
# may land on the target, or another node may move it aside first. Either is a lost
# turn, and the next starts from what is there: a tree on the target supersedes the
# one we put aside (removed), and is put aside in turn. A turn is lost only to another
# rename that succeeded, which ends that node's copy, so among copies a node loses at
# most once per other node; 100 turns (as ``treeplace.TRIES``) bound it against
# anything else. No tree in place is taken as ours here, even after 100 turns: telling
# it identical (modes, owners, bytes) is more than POSIX tools do portably, so the node
# fails instead (rpc compares: ``treeplace.same_tree``).
place() {
  turn=0
  while [ "$turn" -lt 100 ]; do
    turn=$((turn + 1))
    if [ -d "$target" ]; then
      wipe "$old" || fail "$target: the old one could not be removed: it is left as $old"
      put "$target" "$old" || { why="cannot move it aside"; continue; }
    fi
    put "$1" "$target" && return 0
    [ -d "$1" ] || unpack
    why="cannot rename into place"
  done
  fail "$target: $why ($turn tries)"
}
# unpack: the tree from $tmp/t.tar as $tmp/new.$uniq (a name of its own: ``put`` finds
# it by that name if it went into another node's tree); the tar is kept until the end,
# to unpack again if the tree was lost that way (removed with the tree it went into)
unpack() {
  tar -x "$how" -f "$tmp/t.tar" -C "$tmp" || fail "$target: cannot unpack"
  mv -f -- "$tmp/d" "$tmp/new.$uniq" || fail "$tmp: cannot rename within it"
}
receive() {
  n=0  # nothing is written before the guard is out of this process group (or 2 s)
  while [ ! -e "$tmp.g" ] && [ "$n" -lt 400 ]; do sleep 0.005; n=$((n + 1)); done
  umask 077
  if [ "$kind" = d ]; then
    mkdir -- "$tmp" && cat >"$tmp/t.tar" || fail "$tmp: cannot write"
    got=$(($(wc -c <"$tmp/t.tar")))
    [ "$got" -eq "$size" ] || fail "$target: incomplete, $got of $size bytes came"
    umask "$mask"
    if [ -n "$keep" ]; then how=-p; else how=-m; fi
    unpack
    place "$tmp/new.$uniq"
  else
    cat >"$tmp" || fail "$tmp: cannot write"
    got=$(($(wc -c <"$tmp")))
    [ "$got" -eq "$size" ] || fail "$target: incomplete, $got of $size bytes came"
    [ -n "$keep" ] || mode=$(printf %o $((0$mode & ~0$mask & 0777)))
    chmod "$mode" "$tmp" || fail "$target: cannot set its mode"
    if [ -n "$stamp" ]; then
      TZ=UTC0 touch -m -t "$stamp" "$tmp" || fail "$target: cannot set its time"
    fi
    mv -f -- "$tmp" "$target" || fail "$target: cannot rename into place"
  fi
}
detach=
if command -v setsid >/dev/null 2>&1; then detach=setsid; fi
exec 4>&1
{ (receive) 4>&-; echo $? >&3; } 3>&1 >&4 |
  $detach sh -c "$guard" guard "$tmp" "$old" "$target" >/dev/null 4>&-
"""
)

SENDER = r"""src=$1
case $src in
'~'|'~/'*) [ -n "$HOME" ] || { echo "easycluster rcopy: $src: HOME is not set" >&2; exit 1; }
  src=$HOME${src#?} ;;
esac
if [ ! -e "$src" ]; then
  printf 'easycluster rcopy: %s: no such file or directory\n' "$src" >&2; exit 1
fi
if [ -d "$src" ]; then
  cd -- "$src" || exit 1
  echo D && exec tar -cf - .
fi
if [ ! -f "$src" ]; then
  printf 'easycluster rcopy: %s: not a regular file or directory\n' "$src" >&2; exit 1
fi
exec 3<"$src" || exit 1
meta=$(stat -L -c '%a %Y' -- "$src" 2>/dev/null ||
  stat -L -f '%Lp %m' -- "$src" 2>/dev/null) || meta=
[ -n "$meta" ] || meta='- -'
echo "F $meta" && exec cat <&3
"""

TAR_TOP = "d"  # the name of the pushed directory inside its tar stream


class Header(NamedTuple):
    """What a sender's header line says: ``kind`` "f" or "d"; for a file its ``mode``
    and ``mtime`` when the node could tell (else None)."""

    kind: str
    mode: Optional[int] = None
    mtime: Optional[int] = None


def sh_command(script: str, name: str, args: List[str]) -> str:
    """``sh -c SCRIPT NAME ARGS...`` as one shell command line, every word quoted."""
    return " ".join(["sh", "-c", shlex.quote(script), name, *map(shlex.quote, args)])


def touch_stamp(mtime: float) -> str:
    """``mtime`` as ``touch -t`` reads it with ``TZ=UTC0``: ``CCYYMMDDhhmm.SS``."""
    return time.strftime("%Y%m%d%H%M.%S", time.gmtime(int(mtime)))


def push_command(
    dest: str, name: str, size: int, mode: int, kind: str, preserve: bool, mtime: float
) -> str:
    """The command a node runs to receive a pushed file (``kind`` "f") or directory
    ("d", a tar stream of ``size`` bytes) on stdin; see the module docstring."""
    if kind not in ("f", "d"):
        raise ValueError(f"kind must be 'f' or 'd', not {kind!r}")
    if not dest:
        raise ValueError("copy: the destination is empty")
    check_remote_path(dest)
    args = [
        dest,
        name,
        str(size),
        f"{mode & 0o7777:04o}",
        "p" if preserve else "",
        touch_stamp(mtime) if preserve and kind == "f" else "",
        kind,
        GUARD,
    ]
    return sh_command(RECEIVER, "easycluster-copy", args)


def pull_command(source: str) -> str:
    """The command a node runs to send ``source`` (a header line, then the data) on
    stdout."""
    if not source:
        raise ValueError("rcopy: the source is empty")
    check_remote_path(source)
    return sh_command(SENDER, "easycluster-rcopy", [source])


def check_remote_path(path: str) -> None:
    """Refuse a node's path that starts with ``~user`` (ValueError): only ``~`` and
    ``~/...`` are expanded on the node (to its user's home, as scp does)."""
    if path.startswith("~") and path != "~" and not path.startswith("~/"):
        user = path[1:].split("/", 1)[0]
        raise ValueError(
            f"{path}: ~{user} is not expanded on the nodes (only ~ and ~/ are): write "
            f"the home directory in full, or ./{path} for a name that starts with ~"
        )


def parse_header(line: bytes) -> Header:
    """The header line of a sender (without its newline). Raises ValueError if it is not
    one."""
    words = line.split()
    if words == [b"D"]:
        return Header("d")
    if len(words) == 3 and words[0] == b"F":
        octal = words[1] and all(c in b"01234567" for c in words[1])
        mode = int(words[1], 8) & 0o7777 if octal else None
        digits = words[2][1:] if words[2][:1] == b"-" else words[2]  # (before 1970)
        mtime = int(words[2]) if digits.isdigit() else None
        return Header("f", mode, mtime)
    raise ValueError(f"not a copy header: {line[:80]!r}")


def base_name(path: str) -> str:
    """The last component of ``path`` (trailing slashes ignored); ValueError for a path
    without one (``/``, empty)."""
    name = os.path.basename(path.rstrip("/"))
    if not name or name in (".", ".."):
        raise ValueError(f"cannot name a copy of {path!r}: it has no base name")
    return name


def safe_part(text: str) -> str:
    """``text`` usable inside one file name: ``/`` and NUL become ``_``."""
    return text.replace("/", "_").replace("\0", "_")


def pull_names(name: str, keys: List[str], hosts: List[str]) -> Dict[str, str]:
    """The local file name of each slot's copy of ``name``, for one rcopy: ``NAME.NODE``
    for a node's first listing in it and ``NAME.NODE~k`` for its k-th, with ``/`` in a
    node's name as ``_``; a name already taken (a node literally called ``n1~2``) gets
    ``~k`` bumped until it is free. ``hosts[i]`` is the node of the slot ``keys[i]``."""
    names: Dict[str, str] = {}
    taken = set()
    seen: Dict[str, int] = {}
    for key, host in zip(keys, hosts):
        k = seen[host] = seen.get(host, 0) + 1
        while True:
            candidate = f"{name}.{safe_part(host)}" + (f"{DUP_MARK}{k}" if k > 1 else "")
            if candidate not in taken:
                break
            k += 1
        taken.add(candidate)
        names[key] = candidate
    return names


def temp_name(name: str, unique: str) -> str:
    """A hidden temporary name for ``name`` in the same directory: ``.NAME.ectmp.UNIQUE``."""
    return f".{name}{TEMP_MARK}{unique}"
