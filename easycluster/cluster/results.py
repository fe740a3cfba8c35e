"""What a Task keeps of each slot's run: bounded output buffers, the state and return code.

Pure: the engine feeds bytes in, the getters read them out; tested without processes in
``tests/cluster/test_results.py``.

What the buffers hold: for each slot, the first ``buffer_max`` bytes of its stdout and
the first ``buffer_max`` bytes of its stderr (``Task.set_info('buffer_max', N)``,
default ``BUFFER_MAX``); bytes past that are counted (``dropped``) and thrown away as they
arrive, so a node that floods output costs the engine at most ``2 * buffer_max`` bytes,
and never slows the reading of the others. ``buffer_max=0`` keeps nothing (a handler
sees every line through ``ev_read`` anyway); ``None`` keeps everything.
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from .nodestate import HUP, TIMEOUT, NodeState

BUFFER_MAX = 1 << 22  # 4 MiB per stream per slot
TAIL_MAX = 4096  # bytes of the stream ssh writes its errors to, kept for classifying


class SlotResult:
    """One slot: ``key`` (``node`` or ``node#k``), ``node`` (the host name), ``rank``
    (0-based position in its worker), its ``NodeState``, kept output and dropped bytes."""

    __slots__ = ("key", "node", "rank", "state", "stdout", "stderr", "dropped", "tail")

    def __init__(self, key: str, node: str, rank: int) -> None:
        self.key = key
        self.node = node
        self.rank = rank
        self.state = NodeState()
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.dropped = 0  # bytes of output beyond buffer_max, not kept
        self.tail = b""  # the last TAIL_MAX bytes of the stream carrying stderr

    @property
    def status(self) -> str:
        return self.state.state

    @property
    def rc(self) -> Optional[int]:
        return self.state.rc

    def keep(self, sname: str, data: bytes, limit: Optional[int], tail: bool) -> None:
        """Keep ``data`` from stream ``sname`` up to ``limit`` bytes in all; ``tail``: this
        stream carries stderr (remember its end for the backend's classifier)."""
        buf = self.stdout if sname == "stdout" else self.stderr
        if limit is None:
            buf += data
        else:
            room = limit - len(buf)
            if room >= len(data):
                buf += data
            else:
                if room > 0:
                    buf += data[:room]
                self.dropped += len(data) - max(room, 0)
        if tail:
            self.tail = (self.tail + data)[-TAIL_MAX:]


class Message(bytes):
    """Output as the Task's getters return it: the bytes, without one final newline,
    that also answer ClusterShell's buffer methods, so a ported script's
    ``buf.message().decode()`` and ``for line in buf`` work: iterating gives the lines
    (bytes, without their newlines), not the byte values."""

    __slots__ = ()

    def message(self) -> bytes:
        """The output as plain bytes."""
        return bytes(self)

    def lines(self) -> Iterator[bytes]:
        """The lines, without their newlines."""
        return iter(self.split(b"\n")) if self else iter(())

    def __iter__(self) -> Iterator[bytes]:  # type: ignore[override]
        return self.lines()


def message(buf: bytes) -> Message:
    """A buffer as the getters return it: without one final newline, and CR LF line
    ends made LF, as ClusterShell's (and as ``ev_read`` gives the lines)."""
    if b"\r\n" in buf:
        buf = buf.replace(b"\r\n", b"\n")
    return Message(buf[:-1] if buf.endswith(b"\n") else buf)


class Results:
    """Every slot of the last run, in the order the slots were made."""

    def __init__(self) -> None:
        self.slots: Dict[str, SlotResult] = {}
        self.counts: Dict[str, int] = {}  # node -> times listed so far in this run

    def new_slot(self, node: str, rank: int) -> SlotResult:
        """A slot for ``node``: key ``node`` the first time, ``node#k`` the k-th time."""
        k = self.counts.get(node, 0) + 1
        self.counts[node] = k
        key = node if k == 1 else f"{node}#{k}"
        while key in self.slots:  # a node literally named "x#2" next to x listed twice
            k += 1
            key = f"{node}#{k}"
        slot = SlotResult(key, node, rank)
        self.slots[key] = slot
        return slot

    def clear(self) -> None:
        self.slots.clear()
        self.counts.clear()

    def slot(self, key: str) -> SlotResult:
        try:
            return self.slots[key]
        except KeyError:
            raise KeyError(f"no slot {key!r} in the last run") from None

    def of_node(self, node: str) -> List[SlotResult]:
        """The slots of ``node`` in the last run, in order: every listing of a plain
        node name (``n1``, ``n1#2``...: separate ``shell()`` calls on the same node, or
        one node listed twice), or the one slot a key such as ``n1#2`` names."""
        if self.counts.get(node, 0) > 1:
            return [s for s in self.slots.values() if s.node == node]
        slot = self.slots.get(node)
        return [slot] if slot is not None else []

    def matching(
        self, keys: Optional[Iterable[str]], match_keys: Optional[Iterable[str]]
    ) -> List[str]:
        """The slot keys of ``keys`` (None: every slot) that ``match_keys`` names (None:
        all of them). A key there names its slot; a plain node name also names every
        other slot of that node (``n1`` matches ``n1#2``), as ``of_node`` reads it. A
        string is a TypeError (ClusterShell's rule: a sequence of keys is meant, and a
        string would match by its characters)."""
        if isinstance(match_keys, (str, bytes)):
            raise TypeError("match_keys: a sequence of keys or nodes is expected, not a string")
        chosen = list(self.slots) if keys is None else list(keys)
        if match_keys is None:
            return chosen
        wanted = set(match_keys)
        return [k for k in chosen if k in wanted or self.slots[k].node in wanted]

    def gathered(
        self, sname: str, keys: Optional[Iterable[str]] = None
    ) -> Iterator[Tuple[Message, List[str]]]:
        """``(output, keys)`` for each distinct non-empty ``sname`` ("stdout" or
        "stderr") among ``keys`` (None: every slot), keys in slot order."""
        groups: Dict[Message, List[str]] = {}
        for key in self.slots if keys is None else keys:
            slot = self.slots[key]
            buf = slot.stdout if sname == "stdout" else slot.stderr
            if buf:
                groups.setdefault(message(bytes(buf)), []).append(key)
        return iter(groups.items())

    def per_slot(self, sname: str, keys: Iterable[str]) -> Iterator[Tuple[str, Message]]:
        """``(key, output)`` for each of ``keys`` with some ``sname`` kept."""
        for key in keys:
            slot = self.slots[key]
            buf = slot.stdout if sname == "stdout" else slot.stderr
            if buf:
                yield key, message(bytes(buf))

    def retcodes(self, keys: Optional[Iterable[str]] = None) -> Iterator[Tuple[int, List[str]]]:
        """``(rc, keys)`` for each return code seen among ``keys`` (None: every slot);
        slots that timed out, were aborted or never ran have none."""
        groups: Dict[int, List[str]] = {}
        for key in self.slots if keys is None else keys:
            rc = self.slots[key].rc
            if rc is not None:
                groups.setdefault(rc, []).append(key)
        return iter(groups.items())

    def flush(self, sname: str, keys: Optional[Iterable[str]] = None) -> None:
        """Forget the ``sname`` kept for ``keys`` (None: every slot); their dropped
        counts go too. A slot still running keeps what comes next."""
        for key in self.slots if keys is None else keys:
            slot = self.slots[key]
            del (slot.stdout if sname == "stdout" else slot.stderr)[:]
            slot.dropped = 0

    def iter_buffers(self) -> Iterator[Tuple[Message, List[str]]]:
        """``(output, keys)`` for each distinct non-empty stdout, keys in slot order."""
        return self.gathered("stdout")

    def iter_errors(self) -> Iterator[Tuple[Message, List[str]]]:
        """``(errors, keys)`` for each distinct non-empty stderr, keys in slot order."""
        return self.gathered("stderr")

    def iter_retcodes(self) -> Iterator[Tuple[int, List[str]]]:
        """``(rc, keys)`` for each return code seen (slots that timed out, were aborted
        or never ran have none)."""
        return self.retcodes()

    def max_retcode(self) -> Optional[int]:
        """The largest return code, or None if no slot has one (all timed out)."""
        codes = [s.rc for s in self.slots.values() if s.rc is not None]
        return max(codes) if codes else None

    def iter_keys_timeout(self) -> Iterator[str]:
        return (k for k, s in self.slots.items() if s.status == TIMEOUT)

    def num_timeout(self) -> int:
        return sum(1 for s in self.slots.values() if s.status == TIMEOUT)

    def iter_status(self) -> Iterator[Tuple[str, List[str]]]:
        """``(status, keys)`` for each final state seen: ``hup`` (whatever the rc),
        ``timeout``, ``unreachable``, ``hostkey``, ``failed``, ``aborted``."""
        groups: Dict[str, List[str]] = {}
        for key, slot in self.slots.items():
            groups.setdefault(slot.status, []).append(key)
        return iter(groups.items())

    def succeeded(self) -> List[str]:
        """Keys of the slots whose command ended with return code 0."""
        return [k for k, s in self.slots.items() if s.status == HUP and s.rc == 0]
