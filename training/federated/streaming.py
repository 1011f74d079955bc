"""What every aggregation rule is built on: updates in hash order, read chunk by chunk on
worker threads, and the reductions whose bits must not depend on how that is done.

- Updates are ordered by their hash before anything is reduced, so arrival order is gone;
  duplicates (equal hashes) are refused here, the caller excludes them first.
- Values are taken in chunks of ``chunk_elements`` from the page cache, each chunk of each
  file mapped read-only while it is used, or read (``preadv``) into a buffer of the
  thread's (never the whole set in memory: O(model + workers x updates x chunk)), widened
  to float64 (exact) where a rule needs it, and every per-element sum accumulates in
  float64 over the updates in hash order from +0.0, then is cast to float32 once.
- FedAvg's weights are integers below 2**29, so ``weight x value`` is exact in float64:
  adding it to the sum rounds once, the same whether the multiply is fused into the add
  (FedAvg's one compiled pass, ``kernels.py``) or not (numpy's separate passes, which
  clipping needs, as ``value x weight x scale`` rounds).
- Norms and distances (clipping, Krum, DP) sum squares in float64 over fixed blocks of
  ``BLOCK`` elements of the flat vector (numpy's pairwise sum, single-threaded, fixed
  association), and the block sums are combined with ``math.fsum`` (exactly rounded, so
  independent of their order); chunks are whole blocks, so the chunk size changes nothing.
- Chunks are spread over ``workers`` threads (numpy and file reads release the GIL). Every
  value a chunk produces depends on that chunk's inputs alone, and whatever runs in
  sequence (the aggregate's hash, the DP noise stream, the block sums' order) runs in
  chunk order in the calling thread (the hash on one thread of its own, fed in chunk
  order, when there is one worker), so the number of workers changes nothing.

Torch is not used for any arithmetic here, so its thread count and SIMD path change no bit;
the one compiled loop (``kernels.py``) keeps each element's additions in row order.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import math
import mmap
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.federated.updates import MAX_WEIGHT, Layout, Update, delta_from_flat

BLOCK = 4096  # elements per norm/distance partial sum; chunks are whole blocks
DEFAULT_CHUNK = 16 * BLOCK  # 256 KiB of float32 per update at a time, cache-sized
MAX_WORKERS = 8  # threads over chunks; past the memory bandwidth more only cost memory
# Enter a span's pages at once rather than fault each (Linux; elsewhere a plain mapping).
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


@dataclass(frozen=True)
class Aggregate:
    """An aggregate delta (flat float32, layout order) and what went into it."""

    rule: str
    layout: Layout
    flat: np.ndarray
    hash: str
    included: tuple[str, ...]  # update hashes reduced, in reduction (hash) order
    selected: tuple[str, ...]  # those whose values make the aggregate (Krum's pick; else all)

    @property
    def delta(self) -> dict[str, torch.Tensor]:
        return delta_from_flat(self.flat, self.layout)

    def write(self, path: Path) -> str:
        """Write in the update format; returns the hash (equal to ``self.hash``)."""
        with open(path, "wb") as out:
            out.write(self.layout.header)
            out.write(self.flat.data.cast("B"))
        return self.hash


def default_workers() -> int:
    """The CPUs this process may run on, at most ``MAX_WORKERS``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def in_hash_order(updates: Sequence[Update]) -> list[Update]:
    if not updates:
        raise ValueError("no updates to aggregate")
    layout = updates[0].layout
    if any(u.layout != layout for u in updates):
        raise ValueError("updates checked against different base models cannot be aggregated")
    ordered = sorted(updates, key=lambda u: u.hash)
    for a, b in itertools.pairwise(ordered):
        if a.hash == b.hash:
            raise ValueError(f"update {a.hash} appears twice: exclude duplicates first")
    return ordered


class Scratch:
    """One thread's buffers of ``rows x width`` (a whole chunk), allocated once per scan and
    reused for every span it handles."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, rows: int, dtype: str = "<f8") -> np.ndarray:
        array = self._arrays.get(name)
        if array is None or array.shape[0] < rows or array.dtype != np.dtype(dtype):
            array = self._arrays[name] = np.empty((rows, self.width), dtype=dtype)
        return array[:rows]


@dataclass(frozen=True)
class Span:
    start: int
    stop: int
    padded: int  # stop - start rounded up to whole blocks

    @property
    def count(self) -> int:
        return self.stop - self.start


class Scan:
    """Maps the same span of some updates' flat vectors, read-only, and runs a function
    over every span on ``workers`` threads.

    Each span of each file is mapped on its own (``MAP_POPULATE``: its pages are entered at
    once, no fault per page) and unmapped once the function returns, so the values are read
    straight from the page cache, never copied by ``read()``, and the memory mapped at a time
    is one chunk of every update per worker. A file shorter than the span needs, checked
    just before the span is mapped, was changed after it was checked (``OSError``). One cut
    short in the instant between that check and the function's reads would raise SIGBUS
    and end the process: it fails closed, as a file rewritten in place would not under any
    reader (checked updates are the node's own files, written once under their hash).

    With ``copy``, each span is read instead (``os.preadv`` at known offsets, no shared file
    position) into a (rows, chunk) float32 buffer of the thread's, whose rows ``work`` may
    reorder in place: the rules that sort read that way, as a copy through the kernel is
    cheaper than mapping and then copying; a short read means a changed file (``OSError``).
    With ``block``, the same, and ``work`` gets that buffer as one (rows, count) array:
    FedAvg sums it in one pass (the kernel's copy lands in cache, where mapping costs more
    than that copy and leaves the values in memory).
    """

    def __init__(
        self,
        updates: Sequence[Update],
        chunk_elements: int,
        workers: int | None,
        *,
        copy: bool = False,
        block: bool = False,
    ) -> None:
        if chunk_elements < BLOCK or chunk_elements % BLOCK:
            raise ValueError(f"chunk_elements must be a positive multiple of {BLOCK}")
        workers = default_workers() if workers is None else workers
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.updates = updates
        self.layout = updates[0].layout
        self.copy = copy or block
        self.block = block
        numel = self.layout.numel
        self.chunk = min(chunk_elements, -(-numel // BLOCK) * BLOCK)
        self.spans = []
        for start in range(0, numel, self.chunk):
            stop = min(start + self.chunk, numel)
            self.spans.append(Span(start, stop, -(-(stop - start) // BLOCK) * BLOCK))
        self.workers = min(workers, len(self.spans))

    def run(
        self,
        work: Callable[[Span, Any, Scratch], Any],  # values: list[np.ndarray], or a block
        then: Callable[[Span, Any], None] | None = None,
        rows: Sequence[int] | None = None,
    ) -> None:
        """``work(span, values, scratch)`` on every span, ``values`` being the read-only
        float32 values (``count`` of them) of each update numbered in ``rows`` (all by
        default; writable rows of one buffer with ``copy``, that buffer itself with
        ``block``); then, in this thread and in span order, ``then(span, result)``.
        ``work`` must return neither ``values`` nor scratch buffers to ``then``: the values
        are unmapped, and the thread reuses its scratch for its next span."""
        which = list(range(len(self.updates))) if rows is None else list(rows)
        fds: list[int] = []
        try:
            for i in which:
                fds.append(os.open(self.updates[i].path, os.O_RDONLY))
            local = threading.local()

            def one(span: Span) -> Any:
                scratch = getattr(local, "scratch", None)
                if scratch is None:
                    scratch = local.scratch = Scratch(self.chunk)
                if self.copy:
                    buf = scratch.get("read", len(which), "<f4")[:, : span.count]
                    for k, fd in enumerate(fds):
                        self._read(fd, which[k], span, buf[k])
                    return work(span, buf if self.block else list(buf), scratch)
                maps: list[mmap.mmap] = []
                try:
                    for k, fd in enumerate(fds):
                        maps.append(self._map(fd, which[k], span))
                    return work(span, [self._values(m, span) for m in maps], scratch)
                finally:
                    for m in maps:
                        # A view still held (by a traceback) keeps it open: the GC unmaps it.
                        with contextlib.suppress(BufferError):
                            m.close()

            if self.workers == 1:
                for span in self.spans:
                    result = one(span)
                    if then is not None:
                        then(span, result)
                return
            with ThreadPoolExecutor(self.workers, thread_name_prefix="aggregate") as pool:
                pending: collections.deque[tuple[Span, Future[Any]]] = collections.deque()
                queue = iter(self.spans)
                try:
                    for span in itertools.islice(queue, 2 * self.workers):
                        pending.append((span, pool.submit(one, span)))
                    while pending:
                        span, future = pending.popleft()
                        result = future.result()
                        following = next(queue, None)
                        if following is not None:
                            pending.append((following, pool.submit(one, following)))
                        if then is not None:
                            then(span, result)
                finally:
                    for _, future in pending:
                        future.cancel()
        finally:
            for fd in fds:
                os.close(fd)

    def _read(self, fd: int, index: int, span: Span, out: np.ndarray) -> None:
        view = out.data.cast("B")
        offset = self.layout.data_offset + 4 * span.start
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:
                raise OSError(f"{self.updates[index].path} changed after it was checked")
            done += got

    def _map(self, fd: int, index: int, span: Span) -> mmap.mmap:
        start = self.layout.data_offset + 4 * span.start
        stop = start + 4 * span.count
        if os.fstat(fd).st_size < stop:
            raise OSError(f"{self.updates[index].path} changed after it was checked")
        base = start - start % mmap.ALLOCATIONGRANULARITY
        return mmap.mmap(fd, stop - base, flags=_MAP_FLAGS, prot=mmap.PROT_READ, offset=base)

    def _values(self, mapped: mmap.mmap, span: Span) -> np.ndarray:
        start = self.layout.data_offset + 4 * span.start
        skip = start % mmap.ALLOCATIONGRANULARITY
        return np.frombuffer(mapped, dtype="<f4", count=span.count, offset=skip)


def widen(
    values: Sequence[np.ndarray], scales: np.ndarray | None, span: Span, scratch: Scratch
) -> np.ndarray:
    """(rows, span.padded) float64: the values widened (exact), each row times its clipping
    scale, the tail past the span's end zero (the zero padding of the last block)."""
    wide = scratch.get("wide", len(values))[:, : span.padded]
    for row, value in zip(wide, values, strict=True):
        np.copyto(row[: span.count], value)
    wide[:, span.count :] = 0.0
    if scales is not None:
        wide[:, : span.count] *= scales[:, None]
    return wide


def block_sums(squares: np.ndarray) -> np.ndarray:
    """Sums over consecutive BLOCK-element blocks of each row of a (rows, whole blocks)
    float64 array: numpy's pairwise sum of each block, as ``add.reduce`` over 4096
    contiguous values."""
    rows, width = squares.shape
    return np.add.reduce(squares.reshape(rows, width // BLOCK, BLOCK), axis=2)


def clip_scales(scan: Scan, clip_norm: float | None) -> np.ndarray | None:
    """Per update, min(1, C / ||u||) with the norm summed deterministically; None: no clipping."""
    if clip_norm is None:
        return None
    if not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive, not {clip_norm}")
    parts: list[np.ndarray] = []

    def work(span: Span, values: list[np.ndarray], scratch: Scratch) -> np.ndarray:
        squares = scratch.get("squares", 1)[:, : span.padded]
        squares[0, span.count :] = 0.0  # the zero padding of the last block
        sums = np.empty((len(values), span.padded // BLOCK))
        for k, value in enumerate(values):  # exact: 24 + 24 significand bits
            np.multiply(value, value, out=squares[0, : span.count], dtype=np.float64)
            sums[k] = block_sums(squares)[0]
        return sums

    scan.run(work, lambda span, sums: parts.append(sums))
    sums = np.concatenate(parts, axis=1)
    norms = [math.sqrt(math.fsum(row)) for row in sums]
    return np.array([1.0 if n <= clip_norm else clip_norm / n for n in norms])


def capped_weights(updates: Sequence[Update], sample_cap: int | None) -> list[int]:
    if sample_cap is not None and not 1 <= sample_cap <= MAX_WEIGHT:
        raise ValueError(f"sample_cap must be between 1 and {MAX_WEIGHT}, not {sample_cap}")
    cap = MAX_WEIGHT if sample_cap is None else sample_cap
    heavy = [u.hash for u in updates if u.samples > cap and sample_cap is None]
    if heavy:
        raise ValueError(f"sample counts above {MAX_WEIGHT} need a sample_cap: {heavy[:3]}")
    return [min(u.samples, cap) for u in updates]


def weighted_sum(
    values: Sequence[np.ndarray],
    weights: np.ndarray,
    scales: np.ndarray | None,
    count: int,
    scratch: Scratch,
) -> np.ndarray:
    """Per element, the sum over rows in order of ``value x weight`` (x the row's clipping
    scale) in float64, from +0.0: a scratch row, so the caller uses it before the next span.

    Given one (rows, count) array (a ``block`` scan's buffer) and no scales, in one
    compiled pass (``kernels.weighted_rows``); otherwise row by row into one float64 term,
    so the sum and the term stay in the core's cache while each row is read once."""
    acc = scratch.get("sum", 1)[0, :count]
    if scales is None and isinstance(values, np.ndarray):
        # One pass: the sum starts at +0.0 and takes each row's exact products in row
        # order, so every step rounds as the loop below does (kernels.py says why).
        from training.federated.kernels import weighted_rows  # numba: imported when used

        return weighted_rows(weights, values, acc)
    term = scratch.get("term", 1)[0, :count]
    for k, value in enumerate(values):
        out = acc if k == 0 else term
        np.copyto(out, value)  # widened (exact); faster than a mixed-type multiply
        if weights[k] != 1.0:  # x 1.0 changes no bit
            out *= weights[k]  # exact: an integer weight below 2**29
        if scales is not None:
            out *= scales[k]
        if k == 0:
            acc += 0.0  # the sum starts at +0.0: 0.0 + t is t + 0.0 (-0.0 becomes +0.0)
        else:
            acc += term
    return acc


def weighted_mean(
    values: Sequence[np.ndarray],
    weights: np.ndarray,
    scales: np.ndarray | None,
    total: float,
    scratch: Scratch,
) -> np.ndarray:
    """``weighted_sum`` divided by ``total`` (float64, in the same scratch row)."""
    acc = weighted_sum(values, weights, scales, len(values[0]), scratch)
    acc /= total
    return acc


def finish(
    rule: str,
    ordered: Sequence[Update],
    scan: Scan,
    reduce_chunk: Callable[[Span, list[np.ndarray], Scratch], np.ndarray],
    *,
    rows: Sequence[int] | None = None,
    in_order: Callable[[Span, np.ndarray], np.ndarray] | None = None,
    selected: Sequence[Update] | None = None,
    total: float | None = None,
    fused: Callable[[Span, np.ndarray, Scratch, np.ndarray], None] | None = None,
) -> Aggregate:
    """Run ``reduce_chunk`` (float64 out) over every chunk of the updates numbered ``rows``
    (all by default) on the scan's workers, then ``in_order`` (if any) in chunk order in
    this thread; cast to float32 once and hash in chunk order (on a thread of its own when
    the scan has one worker). With ``total``, what ``reduce_chunk`` returns is divided by
    it in float64 first (without ``in_order``, in the same pass as the cast: the same bits
    as dividing, then casting). ``fused(span, block, scratch, out)``, when given, replaces
    ``reduce_chunk`` and the division: it writes a chunk's float32 result into ``out``."""
    layout = ordered[0].layout
    flat = np.empty(layout.numel, dtype="<f4")
    digest = hashlib.sha256(layout.header)

    def work(span: Span, values: list[np.ndarray], scratch: Scratch) -> np.ndarray | None:
        if fused is not None and isinstance(values, np.ndarray):
            fused(span, values, scratch, flat[span.start : span.stop])
            return None
        result = reduce_chunk(span, values, scratch)
        if in_order is not None:
            if total is not None:
                result /= total
            return np.array(result)  # the scratch row is reused before this thread's turn
        out = flat[span.start : span.stop]
        if total is None:
            out[...] = result
        else:
            np.divide(result, total, out=out, dtype=np.float64, casting="same_kind")
        return None

    def then(span: Span, result: np.ndarray | None) -> None:
        if result is not None and in_order is not None:
            flat[span.start : span.stop] = in_order(span, result)
        chunk = flat[span.start : span.stop].data.cast("B")
        if hasher is None:
            digest.update(chunk)
        else:
            hashed.append(hasher.submit(digest.update, chunk))

    # On one worker the chunks are reduced in this thread: hash them on another, in order
    # (one thread takes its queue in order), while the next chunks are reduced.
    hasher = ThreadPoolExecutor(1, thread_name_prefix="hash") if scan.workers == 1 else None
    hashed: list[Future[None]] = []
    try:
        scan.run(work, then, rows)
    finally:
        if hasher is not None:
            hasher.shutdown(wait=True)
    for future in hashed:
        future.result()  # raises what a hash step raised
    chosen = ordered if selected is None else selected
    return Aggregate(
        rule=rule,
        layout=layout,
        flat=flat,
        hash=digest.hexdigest(),
        included=tuple(u.hash for u in ordered),
        selected=tuple(u.hash for u in chosen),
    )
