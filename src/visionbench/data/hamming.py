"""Every pair of 64-bit codes at most `threshold` bits apart, without comparing every pair.

Multi-index hashing (Norouzi, Punjani & Fleet, 2012): the 64 bits are cut into `m` chunks;
two codes at most `t` bits apart differ in at most `r` bits of some chunk as long as
`m * (r + 1) > t` (pigeonhole). So each code is looked up, chunk by chunk, among the codes
whose chunk is within `r` bits of its own (the chunk itself, and every variant with up to `r`
bits flipped), by binary search in the chunk's sorted values; the candidates are then checked
on all 64 bits. The result is exactly the all-pairs search's, at a cost that grows with the
number of codes times the candidates each meets instead of with its square: on random codes
a million take seconds instead of hours. When the threshold is so large that no choice of
chunks beats comparing every pair, every pair is compared, in row blocks so memory stays
bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

BITS = 64
# Rows of the all-pairs comparison per block: memory is block x N bytes of distances.
BLOCK_ROWS = 1024
# Bits flipped per chunk at most: more probes per code than this costs more than it saves.
LARGEST_RADIUS = 2
# Candidate pairs checked per step, to bound memory whatever the data (16 bytes each).
CANDIDATES_PER_STEP = 4_000_000


def popcount64(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    as_bytes = values.view(np.uint8).reshape(*values.shape, 8)
    table = np.array([bin(i).count("1") for i in range(256)], np.uint8)
    return table[as_bytes].sum(axis=-1)


@dataclass(frozen=True)
class Plan:
    """How to cut the codes: `chunks` chunks searched within `radius` bits each, and the
    expected number of candidate pairs that costs."""

    chunks: int
    radius: int
    expected_candidates: float

    @property
    def widths(self) -> list[int]:
        """The chunks' widths in bits, as even as 64 allows."""
        base, extra = divmod(BITS, self.chunks)
        return [base + (1 if k < extra else 0) for k in range(self.chunks)]


def plan(count: int, threshold: int) -> Plan | None:
    """The cheapest chunking for `count` random-looking codes, or None when comparing every
    pair is cheaper."""
    best = None
    for radius in range(LARGEST_RADIUS + 1):
        # Two chunks at least: a chunk is searched as 32-bit keys.
        chunks = max(2, threshold // (radius + 1) + 1)
        if chunks > BITS // 4:
            continue  # chunks of a few bits hold too many codes each
        widths = Plan(chunks, radius, 0.0).widths
        probes = [sum(comb(width, k) for k in range(radius + 1)) for width in widths]
        # Each code's probes meet count / 2**width codes each, and every lookup costs too.
        cost = sum(count * p * (1 + count / 2.0 ** w) for p, w in zip(probes, widths,
                                                                        strict=True))
        if best is None or cost < best.expected_candidates:
            best = Plan(chunks, radius, cost)
    if best is None or best.expected_candidates >= count * (count - 1) / 2:
        return None
    return best


def hamming_pairs(codes: np.ndarray, threshold: int) -> np.ndarray:
    """All pairs (i < j) of positions whose codes differ in at most `threshold` bits, shape
    (P, 2), sorted by i then j.

    Example:
        >>> hamming_pairs(np.array([0b1011, 0b1001, 0xFF00], np.uint64), 1).tolist()
        [[0, 1]]
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint64)
    chosen = plan(len(codes), threshold)
    if chosen is None:
        return all_pairs_within(codes, threshold)
    keys = []
    start = 0
    for width in chosen.widths:
        mask = np.uint64((1 << width) - 1)
        keys.append(((codes >> np.uint64(start)) & mask).astype(np.uint32))
        start += width
    found = [_chunk_candidates(codes, chunk, width, chosen.radius, threshold)
             for chunk, width in zip(keys, chosen.widths, strict=True)]
    # A pair close in several chunks is found several times: kept once, in order.
    encoded = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    count = np.int64(len(codes))
    return np.stack([encoded // count, encoded % count], axis=1).reshape(-1, 2)


def _chunk_candidates(codes: np.ndarray, chunk: np.ndarray, width: int, radius: int,
                      threshold: int) -> np.ndarray:
    """The pairs (encoded i * N + j, i < j) within `threshold` bits that meet in this chunk
    within `radius` bits."""
    order = np.argsort(chunk, kind="stable")
    ordered = chunk[order]
    flips = [np.uint32(sum(1 << bit for bit in bits)) for k in range(radius + 1)
             for bits in combinations(range(width), k)]
    kept = []
    for flip in flips:
        probe = chunk ^ flip
        low = np.searchsorted(ordered, probe, side="left")
        high = np.searchsorted(ordered, probe, side="right")
        kept.append(_verified(codes, order, low, high, threshold))
    return np.concatenate(kept)


def _verified(codes: np.ndarray, order: np.ndarray, low: np.ndarray, high: np.ndarray,
              threshold: int) -> np.ndarray:
    """The candidates of each code (positions order[low[i]:high[i]]) that are later than
    it and within `threshold` bits on all 64, encoded i * N + j; in steps of bounded size."""
    count = len(codes)
    sizes = high - low
    ends = np.cumsum(sizes)
    kept = []
    first = 0
    while first < count:
        # As many codes as keep this step's candidates under the bound (at least one).
        budget = (ends[first - 1] if first else 0) + CANDIDATES_PER_STEP
        last = max(first + 1, int(np.searchsorted(ends, budget, side="right")))
        step_sizes = sizes[first:last]
        total = int(step_sizes.sum())
        if total:
            rows = np.repeat(np.arange(first, last, dtype=np.int64), step_sizes)
            # Offsets within each code's range, then the positions they point to.
            starts = np.repeat(low[first:last] - np.cumsum(step_sizes) + step_sizes,
                               step_sizes)
            cols = order[starts + np.arange(total)]
            later = cols > rows
            rows, cols = rows[later], cols[later]
            close = popcount64(codes[rows] ^ codes[cols]) <= threshold
            kept.append(rows[close] * count + cols[close])
        first = last
    return np.concatenate(kept) if kept else np.zeros(0, np.int64)


def all_pairs_within(codes: np.ndarray, threshold: int) -> np.ndarray:
    """All pairs (i < j) within `threshold` bits, by comparing every pair in row blocks:
    the reference the indexed search is tested against, and its fallback for thresholds so
    large that no index helps."""
    codes = np.asarray(codes, dtype=np.uint64)
    pairs = []
    for start in range(0, len(codes), BLOCK_ROWS):
        block = codes[start : start + BLOCK_ROWS]
        # Only columns after the block's first row can pair with it (i < j).
        distance = popcount64(block[:, None] ^ codes[None, start:])
        rows, cols = np.nonzero(distance <= threshold)
        cols = cols + start
        rows = rows + start
        keep = cols > rows
        pairs.append(np.stack([rows[keep], cols[keep]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
