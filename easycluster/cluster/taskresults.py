"""``TaskResults``, a mixin of ``task.Task``: ClusterShell's getters over the last run.

They read ``Results`` (``results.py``), the slots of the last run: kept until the next
``resume()`` starts (as ClusterShell resets its buffers then), so work scheduled after a
run does not hide that run's results. A key is a slot key (``n1``, ``n1#2`` for a node's
second listing); where a getter takes a node, a plain node name stands for all of that
node's slots (``Results.of_node``, ``Results.matching``). ``key_*`` are ClusterShell's
names of ``node_*``.
"""

from __future__ import annotations

from typing import Iterable, Iterator, List, Optional, Tuple

from .results import Message, Results, message


class TaskResults:
    """The Task's result getters (see the module docstring)."""

    results: Results  # (set by Task: the last run's slots)

    def iter_buffers(
        self, match_keys: Optional[Iterable[str]] = None
    ) -> Iterator[Tuple[Message, List[str]]]:
        """``(output, keys)`` per distinct non-empty stdout (without its final newline),
        keys in slot order; with ``match_keys``, only those keys (or nodes)."""
        return self.results.gathered("stdout", self.results.matching(None, match_keys))

    def iter_errors(
        self, match_keys: Optional[Iterable[str]] = None
    ) -> Iterator[Tuple[Message, List[str]]]:
        """``(errors, keys)`` per distinct non-empty stderr, as ``iter_buffers``."""
        return self.results.gathered("stderr", self.results.matching(None, match_keys))

    def iter_retcodes(
        self, match_keys: Optional[Iterable[str]] = None
    ) -> Iterator[Tuple[int, List[str]]]:
        """``(rc, keys)`` per return code (timed out, aborted: none); with
        ``match_keys``, only those keys (or nodes), and no code left without keys."""
        return self.results.retcodes(self.results.matching(None, match_keys))

    def iter_status(self) -> Iterator[Tuple[str, List[str]]]:
        """``(status, keys)`` per final state: hup, timeout, unreachable, hostkey,
        failed, aborted (``nodestate.py``)."""
        return self.results.iter_status()

    def max_retcode(self) -> Optional[int]:
        """The largest return code of the last run, None if no slot has one."""
        return self.results.max_retcode()

    def node_buffer(self, node: str) -> Message:
        """``node``'s stdout in the last run (``Message``: bytes without one final
        newline). A node that ran several times (separate ``shell()`` calls, or listed
        twice) gives each run's output in order, a newline between them, as ClusterShell
        joins what its workers got; a key such as ``n1#2`` gives that slot's alone. A
        node that did not run gives ``b""``."""
        return self._joined(node, "stdout")

    key_buffer = node_buffer

    def node_error(self, node: str) -> Message:
        """``node``'s stderr, as ``node_buffer`` gives its stdout."""
        return self._joined(node, "stderr")

    key_error = node_error

    def _joined(self, node: str, sname: str) -> Message:
        parts = [
            message(bytes(s.stdout if sname == "stdout" else s.stderr))
            for s in self.results.of_node(node)
        ]
        return parts[0] if len(parts) == 1 else message(b"\n".join(p for p in parts if p))

    def node_retcode(self, node: str) -> Optional[int]:
        """The return code, or None (timed out, aborted); for a node that ran several
        times, the largest of its codes (as ClusterShell's). Raises KeyError for a node
        or key that was not in the last run."""
        slots = self.results.of_node(node)
        if not slots:
            raise KeyError(f"no slot {node!r} in the last run")
        codes = [s.rc for s in slots if s.rc is not None]
        return max(codes) if codes else None

    key_retcode = node_retcode

    def node_status(self, node: str) -> str:
        """The final state of slot ``node`` (KeyError if it was not in the last run)."""
        return self.results.slot(node).status

    def node_dropped(self, node: str) -> int:
        """Bytes of output beyond ``buffer_max``, not kept."""
        return self.results.slot(node).dropped

    def num_timeout(self) -> int:
        """Slots that timed out: past their command timeout, or still running when the
        run's own timeout passed."""
        return self.results.num_timeout()

    def iter_keys_timeout(self) -> Iterator[str]:
        """The keys of the slots ``num_timeout`` counts."""
        return self.results.iter_keys_timeout()

    def flush_buffers(self) -> None:
        """Forget every slot's stdout kept so far (slots still running keep what comes
        next)."""
        self.results.flush("stdout")

    def flush_errors(self) -> None:
        """Forget every slot's stderr kept so far."""
        self.results.flush("stderr")
