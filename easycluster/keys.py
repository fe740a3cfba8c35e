"""Shared keys: make, write (atomically, mode 0600), read (refusing loose permissions).

A key file holds one line: the key in hex. Any other first line is a passphrase, turned
into a key by PBKDF2-HMAC-SHA256. Keys are never logged.
"""

from __future__ import annotations

import os
import stat
import sys
import warnings

from .errors import KeyFileError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

KEY_BYTES = 32
PASSPHRASE_MIN = 16  # shorter passphrases are warned about (guessable offline)
_HEX = set("0123456789abcdefABCDEF")


class WeakKeyWarning(UserWarning):
    """A passphrase short enough to be guessed offline (from one recorded handshake)."""


def generate_key() -> bytes:
    """A new random key (32 bytes from the OS)."""
    return os.urandom(KEY_BYTES)


def decode_key(text: str) -> bytes:
    """Key bytes from text: an even-length hex string of 32+ digits is taken as is,
    anything else is a passphrase stretched with PBKDF2-HMAC-SHA256 (one shorter than
    ``PASSPHRASE_MIN`` characters gets a ``WeakKeyWarning``)."""
    text = text.strip()
    if not text:
        raise KeyFileError("empty key: make one with 'easycluster -g FILE'")
    if len(text) >= 32 and len(text) % 2 == 0 and set(text) <= _HEX:
        return bytes.fromhex(text)
    if len(text) < PASSPHRASE_MIN:
        warnings.warn(
            f"a passphrase of {len(text)} characters can be guessed offline by anyone who "
            f"recorded one handshake; use at least {PASSPHRASE_MIN} characters, or better a "
            "key file made by 'easycluster -g FILE'",
            WeakKeyWarning,
            stacklevel=2,
        )
    import hashlib  # (loads OpenSSL: a key file's reader, such as easycluster -S, need not)

    return hashlib.pbkdf2_hmac("sha256", text.encode("utf-8"), b"easycluster passphrase", 200_000)


def read_key_file(path: str) -> bytes:
    """Read a key file. Refuses a file others may read, a missing or an empty one,
    with a message that says how to fix it."""
    try:  # O_NONBLOCK: a FIFO must not hang us; it is refused below as not a regular file
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} does not exist; create it with 'easycluster -g {path}'"
        )
    except OSError as e:
        raise KeyFileError(
            f"cannot read key file {path}: {e.strerror} (a key file must "
            "be a regular file, not a symlink)"
        )
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise KeyFileError(
            f"key file {path} is not a regular file (a key file holds one "
            f"line of hex; make one with 'easycluster -g FILE')"
        )
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as f:
        if os.name == "posix" and st.st_mode & 0o077:
            raise KeyFileError(
                f"key file {path} can be read by other users (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); fix it with "
                f"'chmod 600 {path}'"
            )
        line = f.readline().rstrip("\r\n")
    if not line.strip():
        raise KeyFileError(
            f"key file {path} is empty; make a new one with 'easycluster -g {path} -O'"
        )
    return decode_key(line)


def write_key_file(path: str, key: Optional[bytes] = None, overwrite: bool = False) -> bool:
    """Write ``key`` (a new one if None) to ``path`` as hex, mode 0600, atomically.

    Returns False, leaving the file alone, if it exists and ``overwrite`` is false.
    The file appears whole or not at all (written to a temporary file, then renamed).
    """
    if key is None:
        key = generate_key()
    if not key:
        raise KeyFileError("refusing to write an empty key")
    if os.path.lexists(path) and not overwrite:
        return False
    directory = os.path.dirname(os.path.abspath(path))
    import tempfile  # (only key writers need it: -S starts without it)

    fd, tmp = tempfile.mkstemp(prefix=".easycluster-key-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if someone created path meanwhile
            os.unlink(tmp)
    except FileExistsError:
        os.unlink(tmp)
        return False
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def add_key_options(parser: Any, key_option: str = "-K", keyfile_option: str = "-k") -> None:
    """Add ``-K/--key`` and ``-k/--keyfile`` to an argparse (or optparse) parser."""
    add = getattr(parser, "add_argument", None) or parser.add_option
    add(
        key_option,
        "--key",
        dest="key",
        default=None,
        help="key as text (visible to other users in ps: prefer --keyfile)",
    )
    add(keyfile_option, "--keyfile", dest="keyfile", default=None, help="read the key from FILE")


def key_from_options(opts: Any, warn: bool = True) -> bytes:
    """The key chosen by ``add_key_options`` options, or b'' if none was given."""
    if getattr(opts, "keyfile", None):
        return read_key_file(opts.keyfile)
    if getattr(opts, "key", None):
        if warn:
            print(
                "SECURITY WARNING: a key on the command line can be seen by other users; "
                "use a key file (-k FILE)",
                file=sys.stderr,
            )
        return decode_key(opts.key)
    return b""
