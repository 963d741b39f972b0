"""Images that are not stored decoded: read from their files (or a dataset's encoded
images) and decoded a batch at a time, in threads, whenever rows are asked for.

The decode cache uses this when the decoded images would not fit its disk budget
(`data.cache.max_gb`). Indexing decodes exactly as the cache's workers do
(`data.decode.decode_item`), so the pixels are the same; only the time differs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from visionbench.data.decode import decode_item
from visionbench.data.sources import EncodedImages
from visionbench.rasters import decode_threads
from visionbench.schemas.data import PreprocessConfig


class StreamedImages:
    """uint8 (N, H, W, C) images indexed like the decoded cache's array (an integer, a
    slice, or an array of positions), each decoded when asked for."""

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, items: list[Path] | EncodedImages, settings: PreprocessConfig,
                 shape: tuple[int, int, int], threads: int | None = None) -> None:
        self.items = items
        self.settings = settings
        self.shape = (len(items), *shape)
        self.threads = threads or decode_threads(os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None

    def __getstate__(self) -> dict[str, Any]:
        # A thread pool does not travel to another process; the other side makes its own.
        return {**self.__dict__, "_pool": None}

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes the images would take decoded."""
        return int(np.prod(self.shape))

    def _decode(self, position: int) -> np.ndarray:
        return decode_item(self.items[position], self.settings, self.threads)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, int | np.integer):
            return self._decode(int(key))
        positions = np.arange(len(self))[key]
        if positions.ndim != 1:
            raise IndexError("streamed images are indexed by one position, a slice or a "
                             "1-d array of positions")
        out = np.empty((len(positions), *self.shape[1:]), np.uint8)
        if len(positions) == 0:
            return out
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="decode")
        # Pillow releases the GIL while it decodes and resizes: threads share the work.
        for row, pixels in enumerate(self._pool.map(self._decode, positions.tolist())):
            out[row] = pixels
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        every = self[np.arange(len(self))]
        return every if dtype is None else every.astype(dtype)
