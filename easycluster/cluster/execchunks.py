"""How ``ClusterExecutor.map`` sends its items in chunks: the function a chunk runs on a
server (``chunk_runner``) and the chunk size map picks by itself (``auto_chunksize``).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, List

AUTO_CHUNK_MAX = 5000  # largest chunk map picks by itself (see auto_chunksize)


def chunk_runner(fn: Callable[..., Any], star: bool) -> Callable[[List[Any]], Any]:
    """What a chunked map sends: ``fn`` over a list of items (``star``: of argument
    tuples, for several iterables). Made in a function so cloudpickle sends it by value
    (servers have no easycluster.cluster; ``itertools`` travels as a module reference).

    It returns the list of values, or, when an item raises an ``Exception``, the tuple
    ``(values before it, its index, the exception, its traceback lines)`` so that the
    exception is raised at that item and the items before it are still yielded (the
    items after it in the chunk are not run: map's iterator ends at the exception, and
    the items not started are cancelled). A BaseException (SystemExit...) fails the
    chunk as a whole, as does an exception that cannot be pickled back."""

    def run_chunk(chunk: List[Any]) -> Any:
        # one loop in C (map / starmap into extend); when an item raises, the values
        # before it are already in ``out``, so its index is len(out): no try per item
        out: List[Any] = []
        try:
            out.extend(itertools.starmap(fn, chunk) if star else map(fn, chunk))
        except Exception as e:
            import traceback

            return out, len(out), e, traceback.format_exception(type(e), e, e.__traceback__)
        if len(out) < len(chunk):  # map ends quietly when fn raises StopIteration
            return out, len(out), StopIteration(f"item {len(out)} raised StopIteration"), []
        return out

    return run_chunk


def auto_chunksize(items: int, servers: int) -> int:
    """The chunk size map uses when the caller gives none: ``multiprocessing.Pool``'s
    rule (about 4 chunks per server, so the per-call cost is paid a few times per
    server, not once per item) capped at ``AUTO_CHUNK_MAX`` (a lost server's chunk is
    rerun whole, so a chunk bounds the work lost with it)."""
    if items <= 0 or servers <= 0:
        return 1
    return max(1, min(AUTO_CHUNK_MAX, -(-items // (4 * servers))))
