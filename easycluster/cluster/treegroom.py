"""Grooming for tree mode: what a gateway (or the admin) has received but not yet sent
up, grouped by identical content under node sets. Pure: no I/O, no clock, no lock (the
caller holds one; ``treerun.py``).

What goes in, from the sources of one run:

- ``line(node, sid, data)``: one line of a node's stdout (sid 1) or stderr (sid 2), from
  a Task run here (kept per node, in plain dicts: ClusterShell #560), or a piece of a
  longer line (an ``events.Piece``: no newline is added, the line goes on);
- ``block(source, nodes, sid, data)``: lines already grouped by a gateway below (``nodes``
  a folded node set, ``data`` one or more lines, each ending with ``\\n``);
- ``end(nodes, status, rc)``: nodes that ended (``hup`` with rc, ``timeout``,
  ``unreachable``, ``hostkey``, ``failed``, ``lost``, ``aborted``);
- ``reason(nodes, why)``: why targets did not run (gateway lost, no route);
- for an rcopy, ``raw(node, data)``: a node's stdout as it came, not lines (sid ``RAW``),
  and ``void(nodes)``: what came for ``nodes`` so far is void (they were rerouted and
  run again from the start; sid ``RESET``, a barrier nothing is merged across).

``take()`` returns everything pending as one ``Batch`` and starts afresh. In a batch, a
node's output entries come in the order its lines came; every output entry of a batch
is to be applied before its end entries (a node's end never precedes its output). Lines
from this host's Task are grouped at ``take``: nodes whose pending bytes per stream are
identical share one entry. Blocks from gateways below are merged with an identical
entry only where that cannot reorder a node's lines (see ``block``). So what one batch
costs to send and to apply grows with distinct outputs, not with nodes.
"""

from __future__ import annotations

from typing import Dict, Hashable, List, Optional, Tuple

from ..nodeset import RESOLVER_NOGROUP, NodeSet
from .events import Piece

STDOUT, STDERR = 1, 2
RAW, RESET = 3, 4  # an rcopy's data, and "forget what came for these nodes"

# The wire form of a batch (plain data: it crosses every level as a call's reply).
# (folded nodes, STDOUT or STDERR, lines each ending "\n", the last one possibly
# unfinished: a long line cut where its pieces came, continued in the node's next entry)
Output = Tuple[str, int, bytes]
End = Tuple[str, str, Optional[int]]  # (folded nodes, status, rc or None)
Reason = Tuple[str, str]  # (folded nodes, why they did not run)
Batch = Tuple[List[Output], List[End], List[Reason], bool]  # ..., done (the last batch)


def empty_batch(done: bool = False) -> Batch:
    return [], [], [], done


class Groomer:
    """Pending results of one run, grouped at ``take`` (module docstring)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything pending."""
        self.local: Dict[int, Dict[str, bytearray]] = {STDOUT: {}, STDERR: {}, RAW: {}}
        # blocks from below, in arrival order: [parts of the node set, sid, data]
        self.blocks: List[Tuple[List[str], int, bytes]] = []
        self.block_at: Dict[Tuple[int, bytes], int] = {}  # (sid, data) -> index in blocks
        self.last_of: Dict[Hashable, int] = {}  # source -> index of its latest block
        self.ends: Dict[Tuple[str, Optional[int]], List[str]] = {}
        self.reasons: List[Reason] = []
        self.count = 0  # entries pending (for "is there anything to send")

    def __bool__(self) -> bool:
        return self.count > 0

    def line(self, node: str, sid: int, data: bytes) -> None:
        buf = self.local[sid].get(node)
        if buf is None:
            buf = self.local[sid][node] = bytearray()
            self.count += 1
        buf += data
        if not isinstance(data, Piece):  # (a piece: the line goes on in the next one)
            buf += b"\n"

    def raw(self, node: str, data: bytes) -> None:
        buf = self.local[RAW].get(node)
        if buf is None:
            buf = self.local[RAW][node] = bytearray()
            self.count += 1
        buf += data

    def void(self, nodes: str) -> None:
        """Void what came for ``nodes`` so far (after every entry pending, before every
        later one: nothing later is merged into an entry before it)."""
        self.blocks.append(([nodes], RESET, b""))
        self.block_at.clear()
        self.count += 1

    def block(self, source: Hashable, nodes: str, sid: int, data: bytes) -> None:
        """Lines of ``nodes`` from ``source`` (one gateway's stream of batches). Merged
        into an earlier identical entry only if that entry comes after every entry this
        source added before (else a node of it could see later lines sent first)."""
        key = (sid, data)
        at = self.block_at.get(key)
        if at is not None and at > self.last_of.get(source, -1):
            self.blocks[at][0].append(nodes)
        else:
            at = len(self.blocks)
            self.blocks.append(([nodes], sid, data))
            self.block_at[key] = at
            self.count += 1
        self.last_of[source] = at

    def end(self, nodes: str, status: str, rc: Optional[int]) -> None:
        parts = self.ends.get((status, rc))
        if parts is None:
            parts = self.ends[(status, rc)] = []
            self.count += 1
        parts.append(nodes)

    def reason(self, nodes: str, why: str) -> None:
        self.reasons.append((nodes, why))
        self.count += 1

    def take(self, done: bool = False) -> Batch:
        """Everything pending as one batch (``done``: say it is the last one)."""
        outputs: List[Output] = [(fold(parts), sid, data) for parts, sid, data in self.blocks]
        for sid in (STDOUT, STDERR, RAW):
            alike: Dict[bytes, List[str]] = {}
            for node, buf in self.local[sid].items():
                alike.setdefault(bytes(buf), []).append(node)
            outputs += [(fold(names), sid, data) for data, names in alike.items()]
        ends: List[End] = [(fold(parts), s, rc) for (s, rc), parts in self.ends.items()]
        batch: Batch = (outputs, ends, self.reasons, done)
        self.reset()
        return batch


def fold(parts: List[str]) -> str:
    """Node names and folded node sets, joined and folded once."""
    if len(parts) == 1:
        return parts[0]
    return str(NodeSet(",".join(parts), resolver=RESOLVER_NOGROUP))


def expand(nodes: str) -> List[str]:
    """The names of a folded node set (a plain name without brackets costs no parse)."""
    if "[" not in nodes and "," not in nodes:
        return [nodes]
    return list(NodeSet(nodes, resolver=RESOLVER_NOGROUP))


def lines_of(data: bytes, limit: int) -> List[bytes]:
    """The ``ev_read`` messages of an entry's data, as the engine would give them: its
    lines without their newlines, a line longer than ``limit`` in pieces of ``limit``,
    every piece but a line's last an ``events.Piece``, and an unfinished last line
    (no newline: it goes on in the node's next entry) all in ``Piece``s."""
    parts = data.split(b"\n")
    out: List[bytes] = []
    for i, line in enumerate(parts):
        last = i == len(parts) - 1
        if last and not line:
            break  # (the data ended with a newline)
        while len(line) > limit:
            out.append(Piece(line[:limit]))
            line = line[limit:]
        if line or not last:
            out.append(Piece(line) if last else line)
    return out
