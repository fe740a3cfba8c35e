"""Gathering output: lines per key, blocks of keys with identical output, and the ways
to print them. ``easycluster gather`` and ``easycluster shell`` share this code.

Pure: nothing here reads a clock or a file; writers write to the binary file object
they are given. Output lines are ``bytes`` without their newline (whatever a node
printed, undecodable or not); keys are ``str`` (see ``slots``: ``node1``, ``node1#2``)
and are written as UTF-8 with ``surrogateescape``, so a key decoded from bytes the same
way is written back byte for byte.

Collecting: ``Gatherer.add(key, line)`` appends a line to a key, in arrival order.
``Gatherer.blocks()`` groups keys whose line sequences are identical into ``Block``s
(with ``codes``, keys must also share their exit code: the shell gathers on output and
return code); ``blocks(gather=False)`` gives one block per key.

Order (the contract every mode keeps):

* keys, inside a block and in ``-L`` mode, in natural order (``slots.natural_key``:
  ``n2`` before ``n10``);
* blocks by their first key in natural order;
* lines of a key in the order they were added;
* ``--diff``: the reference is the block with the most keys (on a tie, the first block
  in block order); every other block follows in block order.

Formats (``label=False`` is ``-N``: no header, no prefix):

=============== ===============================================================
mode            output
=============== ===============================================================
``blocks``      per block, a header line ``--- NODES (N nodes, exit code C) ---``
                (each bracketed part only when it applies; dashes pad it to
                ``HEADER_WIDTH``), then the block's lines (``-b``)
``per-key``     the same with one block per key, nothing gathered (clubak's
                default)
``lines``       ``key: line`` for every line, keys in natural order (``-L``)
``block-lines`` ``NODES: line``: each block's lines under its folded set (a
                whole block at a time; the shell's live ``-bL`` is ``LineGatherer``)
``diff``        a unified diff (difflib) of each block against the reference,
                the described blocks as file names (``--diff``)
=============== ===============================================================

Streaming (clush's default live output) is ``LineWriter``: ``key: line`` written as
lines arrive; ``LineGatherer`` (``-bL``) writes each row of lines, the i-th line of
every key, gathered as ``NODES: line`` as soon as every key has sent it.
"""

from __future__ import annotations

from collections import deque
from typing import (
    IO,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from .events import Piece
from .slots import Regroup, fold_keys, natural_key, natural_sorted
from .terminal import Palette

__all__ = [
    "MODES",
    "HEADER_WIDTH",
    "Gatherer",
    "Block",
    "describe",
    "header_line",
    "reference_block",
    "encode_key",
    "write_blocks",
    "write_by_key",
    "write_block_lines",
    "write_diff",
    "write_gathered",
    "LineWriter",
]

MODES = ("blocks", "per-key", "lines", "block-lines", "diff")
HEADER_WIDTH = 64
_PLAIN = Palette.plain()


def encode_key(key: str) -> bytes:
    """A key as written: UTF-8, with ``surrogateescape`` for bytes that were not (and
    a backslash escape for a lone surrogate that did not come from bytes)."""
    try:
        return key.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return key.encode("utf-8", "backslashreplace")


class Block(NamedTuple):
    """Keys with identical output (and exit code, when gathered with codes).

    ``keys`` are in natural order, ``nodes`` is their folded text (``slots.fold_keys``)
    and ``code`` the shared exit code, or None when gathered without codes.
    """

    keys: Tuple[str, ...]
    lines: Tuple[bytes, ...]
    nodes: str
    code: Optional[int] = None


class Gatherer:
    """Output lines per key, in arrival order. Not thread-safe: one thread feeds it
    (the Task's, for the shell). ``literal``: the keys are text, not node names: a
    block's ``nodes`` lists them as they are, comma-separated, never folded."""

    __slots__ = ("_lines", "literal")

    def __init__(self, literal: bool = False) -> None:
        self._lines: Dict[str, List[bytes]] = {}
        self.literal = literal

    def add(self, key: str, line: bytes) -> None:
        """Append ``line`` (without its newline) to ``key``'s output."""
        lines = self._lines.get(key)
        if lines is None:
            self._lines[key] = [line]
        else:
            lines.append(line)

    def extend(self, key: str, lines: Iterable[bytes]) -> None:
        """Append several lines to ``key``'s output, in order."""
        self._lines.setdefault(key, []).extend(lines)

    def add_key(self, key: str) -> None:
        """Make ``key`` known even if it prints nothing (it then takes part in blocks
        and ``--diff`` with an empty output)."""
        self._lines.setdefault(key, [])

    def sorted_keys(self) -> List[str]:
        """Every key, in natural order."""
        return natural_sorted(self._lines)

    def lines(self, key: str) -> Sequence[bytes]:
        """``key``'s lines so far (empty for an unknown key); do not modify."""
        return self._lines.get(key, ())

    def __len__(self) -> int:
        return len(self._lines)

    def __contains__(self, key: object) -> bool:
        return key in self._lines

    def blocks(
        self,
        codes: Optional[Mapping[str, int]] = None,
        gather: bool = True,
        regroup: Optional[Regroup] = None,
    ) -> List[Block]:
        """Keys grouped by identical output (and identical ``codes[key]`` when
        ``codes`` is given; a key missing from it has code None), in block order
        (module docstring). With ``gather=False``, one block per key. ``regroup``:
        each block's ``nodes`` written with groups (``slots.fold_keys``)."""
        groups: Dict[object, List[str]] = {}
        for key, lines in self._lines.items():
            code = None if codes is None else codes.get(key)
            # a tuple hashes its lines (each bytes caches its hash): no copy of the text
            signature: object = (code, tuple(lines)) if gather else key
            group = groups.get(signature)
            if group is None:
                groups[signature] = [key]
            else:
                group.append(key)
        blocks: List[Block] = []
        for keys in groups.values():
            ordered = tuple(natural_sorted(keys))
            code = None if codes is None else codes.get(ordered[0])
            output = tuple(self._lines[ordered[0]])
            nodes = ",".join(ordered) if self.literal else fold_keys(ordered, regroup)
            blocks.append(Block(ordered, output, nodes, code))
        blocks.sort(key=lambda block: natural_key(block.keys[0]))
        return blocks


def describe(block: Block) -> str:
    """``NODES (N nodes, exit code C)``, each bracketed part only when it applies."""
    notes = []
    if len(block.keys) > 1:
        notes.append(f"{len(block.keys)} nodes")
    if block.code:
        notes.append(f"exit code {block.code}")
    return f"{block.nodes} ({', '.join(notes)})" if notes else block.nodes


def header_line(block: Block, palette: Palette = _PLAIN) -> bytes:
    """The ``-b`` header of ``block``, with its newline: ``--- TEXT ----...``, padded
    with dashes to ``HEADER_WIDTH`` (at least three)."""
    text = f"--- {describe(block)} "
    text += "-" * max(3, HEADER_WIDTH - len(text))
    return palette.paint_bytes("header", encode_key(text)) + b"\n"


def reference_block(blocks: Sequence[Block]) -> Optional[Block]:
    """The block ``--diff`` compares against: the most keys, the first on a tie."""
    best: Optional[Block] = None
    for block in blocks:
        if best is None or len(block.keys) > len(best.keys):
            best = block
    return best


def _lines_text(lines: Sequence[bytes], prefix: bytes = b"") -> bytes:
    # one join per block: no per-line write calls (a million lines stay cheap)
    if not lines:
        return b""
    return prefix + (b"\n" + prefix).join(lines) + b"\n"


def write_blocks(
    out: IO[bytes], blocks: Iterable[Block], label: bool = True, palette: Palette = _PLAIN
) -> None:
    """``-b``: each block that has lines, under its header (none with ``label=False``)."""
    for block in blocks:
        if not block.lines:
            continue
        if label:
            out.write(header_line(block, palette))
        out.write(_lines_text(block.lines))


def _prefix(text: str, palette: Palette) -> bytes:
    return palette.paint_bytes("label", encode_key(text + ":")) + b" "


def write_by_key(
    out: IO[bytes], gatherer: Gatherer, label: bool = True, palette: Palette = _PLAIN
) -> None:
    """``-L``: every line as ``key: line``, keys in natural order, lines in order."""
    for key in gatherer.sorted_keys():
        out.write(_lines_text(gatherer.lines(key), _prefix(key, palette) if label else b""))


def write_block_lines(
    out: IO[bytes], blocks: Iterable[Block], label: bool = True, palette: Palette = _PLAIN
) -> None:
    """``-bL``: every line of a block as ``NODES: line``."""
    for block in blocks:
        prefix = _prefix(block.nodes, palette) if label else b""
        out.write(_lines_text(block.lines, prefix))


def _paint_diff_line(line: bytes, palette: Palette) -> bytes:
    if line.startswith((b"---", b"+++", b"@@")):
        return palette.paint_bytes("header", line)
    if line.startswith(b"-"):
        return palette.paint_bytes("removed", line)
    if line.startswith(b"+"):
        return palette.paint_bytes("added", line)
    return line


def write_diff(out: IO[bytes], blocks: Sequence[Block], palette: Palette = _PLAIN) -> None:
    """``--diff``: a unified diff of every block against ``reference_block``. Blocks
    whose lines equal the reference's (they differ by exit code only) get the two
    file-name lines alone. Nothing is written when there is one block or none."""
    reference = reference_block(blocks)
    if reference is None:
        return
    import difflib  # (only --diff needs it: the other modes start without it)

    ref_name = encode_key(describe(reference))
    for block in blocks:
        if block is reference:
            continue
        name = encode_key(describe(block))
        diff = list(
            difflib.diff_bytes(
                difflib.unified_diff,
                list(reference.lines),
                list(block.lines),
                fromfile=ref_name,
                tofile=name,
                lineterm=b"",
            )
        )
        if not diff:
            diff = [b"--- " + ref_name, b"+++ " + name]
        out.write(b"".join(_paint_diff_line(line, palette) + b"\n" for line in diff))


def write_gathered(
    out: IO[bytes],
    gatherer: Gatherer,
    mode: str = "blocks",
    label: bool = True,
    palette: Palette = _PLAIN,
    codes: Optional[Mapping[str, int]] = None,
    regroup: Optional[Regroup] = None,
) -> None:
    """Write everything ``gatherer`` holds in ``mode`` (one of ``MODES``, see the
    module docstring); ``codes`` and ``regroup`` as for ``Gatherer.blocks``.
    ValueError for an unknown mode."""
    if mode not in MODES:
        raise ValueError(f"unknown display mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "lines":
        write_by_key(out, gatherer, label, palette)
        return
    blocks = gatherer.blocks(codes, gather=mode != "per-key", regroup=regroup)
    if mode == "diff":
        write_diff(out, blocks, palette)
    elif mode == "block-lines":
        write_block_lines(out, blocks, label, palette)
    else:
        write_blocks(out, blocks, label, palette)


JOIN_MAX = 1 << 22  # bytes of a long line LineWriter joins before writing them as a line


class LineWriter:
    """Live output: each line written as it arrives, as ``key: line`` (just ``line``
    with ``label=False``). One ``write`` call per line on ``out``; flushing is the
    caller's choice.

    A long line comes from the engine in pieces (``events.Piece``): they are held and
    written as one line with the piece that ends it, up to ``JOIN_MAX`` bytes (a longer
    line is written as lines of that size, so one node's line holds at most that much
    memory). ``end(keys)`` says these keys will send no more: what is held of their
    unfinished lines is written."""

    __slots__ = ("_out", "_label", "_palette", "_prefixes", "_held")

    def __init__(self, out: IO[bytes], label: bool = True, palette: Palette = _PLAIN) -> None:
        self._out = out
        self._label = label
        self._palette = palette
        self._prefixes: Dict[str, bytes] = {}
        self._held: Dict[str, bytearray] = {}  # key -> the pieces of its unfinished line

    def write(self, key: str, line: bytes) -> None:
        """Write one line of ``key``'s output (``line`` without its newline)."""
        if isinstance(line, Piece) or key in self._held:
            held = self._held.setdefault(key, bytearray())
            held += line
            if isinstance(line, Piece) and len(held) < JOIN_MAX:
                return
            line = bytes(self._held.pop(key))
        self._line(key, line)

    def end(self, keys: Iterable[str]) -> None:
        """``keys`` are done: write the held part of their unfinished lines, if any."""
        for key in keys:
            if key in self._held:
                self.write(key, b"")

    def _line(self, key: str, line: bytes) -> None:
        self._out.write(self._label_of(key) + line + b"\n")

    def _label_of(self, text: str) -> bytes:
        if not self._label:
            return b""
        prefix = self._prefixes.get(text)
        if prefix is None:
            prefix = self._prefixes[text] = _prefix(text, self._palette)
        return prefix


class LineGatherer(LineWriter):
    """Live ``-bL`` (clush's line gathering): the i-th lines of all ``keys`` are written
    together, as soon as every key has sent its i-th line or ended; keys whose i-th
    lines are the same share one line, ``NODES: line`` (folded as ``fold_keys`` with
    ``regroup``), in natural order of their first key. A key that ended with fewer
    lines is left out of the rows it has no line in. Lines wait in memory for the
    slowest key, up to ``WAITING_MAX`` bytes in all (clush's wait without a bound): past
    that, the oldest rows are written without the keys that have not sent their line
    yet (a stopped node beside a flooding one), and those keys' lines come in later
    rows."""

    WAITING_MAX = 16 << 20

    __slots__ = ("_regroup", "_queues", "_blocking", "_filled", "_ended", "_waiting")

    def __init__(
        self,
        out: IO[bytes],
        keys: Iterable[str],
        label: bool = True,
        palette: Palette = _PLAIN,
        regroup: Optional[Regroup] = None,
    ) -> None:
        super().__init__(out, label, palette)
        self._regroup = regroup
        self._queues: Dict[str, Deque[bytes]] = {k: deque() for k in keys}
        self._blocking = set(self._queues)  # keys not ended with no line waiting
        self._filled: Dict[str, None] = {}  # keys with a line waiting
        self._ended: Set[str] = set()
        self._waiting = 0  # bytes of the lines waiting

    def end(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        super().end(keys)
        for key in keys:
            self._ended.add(key)
            self._blocking.discard(key)
        self._drain()

    def _line(self, key: str, line: bytes) -> None:
        self._queues.setdefault(key, deque()).append(line)
        self._waiting += len(line)
        self._blocking.discard(key)
        self._filled[key] = None
        self._drain()

    def _drain(self) -> None:
        while self._filled and (not self._blocking or self._waiting > self.WAITING_MAX):
            row: Dict[bytes, List[str]] = {}
            for key in list(self._filled):
                queue = self._queues[key]
                line = queue.popleft()
                self._waiting -= len(line)
                row.setdefault(line, []).append(key)
                if not queue:
                    del self._filled[key]
                    if key not in self._ended:
                        self._blocking.add(key)
            groups = sorted(row.items(), key=lambda item: min(map(natural_key, item[1])))
            for line, keys in groups:
                self._out.write(self._label_of(fold_keys(keys, self._regroup)) + line + b"\n")
