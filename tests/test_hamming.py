"""The indexed Hamming search gives exactly the all-pairs search's pairs."""

from __future__ import annotations

import numpy as np
import pytest

from visionbench.data.hamming import all_pairs_within, hamming_pairs, plan


def _codes(count: int, planted: int, seed: int, spread: int = 6) -> np.ndarray:
    """Random 64-bit codes, with `planted` copies of earlier ones moved by 0..spread bits."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, count, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    codes |= rng.integers(0, 2, count).astype(np.uint64)
    for _ in range(planted):
        source, target = rng.choice(count, 2, replace=False)
        flipped = rng.choice(64, rng.integers(0, spread + 1), replace=False)
        codes[target] = codes[source] ^ np.uint64(sum(1 << int(bit) for bit in flipped))
    return codes


@pytest.mark.parametrize("threshold", [0, 1, 2, 3, 4, 5, 8, 12])
def test_the_indexed_search_equals_the_all_pairs_search(threshold):
    codes = _codes(3000, 400, seed=threshold)
    assert plan(len(codes), threshold) is not None  # the index, not the fallback
    expected = all_pairs_within(codes, threshold)
    found = hamming_pairs(codes, threshold)
    assert len(expected) > 0
    assert found.tolist() == expected.tolist()


def test_a_large_collection_uses_an_index_and_a_huge_threshold_compares_every_pair():
    indexed = plan(1_000_000, 4)
    assert indexed is not None and indexed.radius == 1 and indexed.chunks == 3
    assert plan(2000, 32) is None
    codes = _codes(500, 50, seed=1, spread=30)
    assert hamming_pairs(codes, 32).tolist() == all_pairs_within(codes, 32).tolist()


def test_identical_codes_pair_with_each_other_once(monkeypatch):
    # Many equal codes make large buckets: they are checked in several bounded steps.
    import visionbench.data.hamming as hamming

    monkeypatch.setattr(hamming, "CANDIDATES_PER_STEP", 50)
    codes = np.concatenate([np.full(40, 12345, np.uint64), _codes(200, 0, seed=2)])
    pairs = hamming_pairs(codes, 2)
    assert pairs.tolist() == all_pairs_within(codes, 2).tolist()
    assert sum(1 for i, j in pairs.tolist() if j < 40) == 40 * 39 // 2


def test_nothing_to_pair():
    assert hamming_pairs(np.zeros(0, np.uint64), 4).shape == (0, 2)
    assert hamming_pairs(np.array([7], np.uint64), 4).shape == (0, 2)
