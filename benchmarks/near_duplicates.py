"""The near-duplicate search at scale: one million random 64-bit perceptual hashes with
planted near pairs, searched at the default threshold (4 bits).

Run from the repository root:
    python benchmarks/near_duplicates.py [--count 1000000] [--planted 10000] [--threshold 4]

Prints the time, the peak resident memory of the process, how many planted pairs were
found (all must be) and how many pairs in all. With `--check N` it also compares the
result on the first N codes with the all-pairs search.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from visionbench.data.hamming import all_pairs_within, hamming_pairs, plan


def planted_codes(count: int, planted: int, threshold: int, seed: int = 0
                  ) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Random codes, and pairs (i < j) made by copying code i to j with up to `threshold`
    bits flipped (each code in at most one planted pair)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, count, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    codes |= rng.integers(0, 2, count).astype(np.uint64)
    chosen = rng.choice(count, 2 * planted, replace=False).reshape(planted, 2)
    pairs = set()
    for source, target in chosen.tolist():
        flipped = rng.choice(64, int(rng.integers(0, threshold + 1)), replace=False)
        codes[target] = codes[source] ^ np.uint64(sum(1 << int(bit) for bit in flipped))
        pairs.add((min(source, target), max(source, target)))
    return codes, pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--planted", type=int, default=10_000)
    parser.add_argument("--threshold", type=int, default=4)
    parser.add_argument("--check", type=int, default=0,
                        help="compare with the all-pairs search on the first N codes")
    args = parser.parse_args()
    codes, planted = planted_codes(args.count, args.planted, args.threshold)
    chosen = plan(len(codes), args.threshold)
    started = time.perf_counter()
    pairs = hamming_pairs(codes, args.threshold)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found = {tuple(pair) for pair in pairs.tolist()}
    missed = planted - found
    how = f"{chosen.chunks} chunks, radius {chosen.radius}" if chosen else "every pair"
    print(f"{args.count:,} codes, threshold {args.threshold}: {how}; "
          f"{seconds:.1f} s, peak memory {peak_mb:,.0f} MB; {len(pairs):,} pairs, "
          f"planted {len(planted):,} found {len(planted) - len(missed):,}")
    if args.check:
        head = codes[:args.check]
        same = hamming_pairs(head, args.threshold).tolist() == all_pairs_within(
            head, args.threshold).tolist()
        print(f"first {args.check:,} codes: {'same' if same else 'DIFFERENT'} pairs as the "
              "all-pairs search")
        if not same:
            return 1
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
