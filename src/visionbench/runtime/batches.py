"""Batches of one split, from memory when they fit the budget, streamed otherwise.

In memory, a split is one uint8 tensor (on the GPU when there is one) in channels-last
layout, and a batch is one indexing operation: no per-sample Python in the hot loop.
Larger splits are read from the memory-mapped cache (or decoded from their files, when
the cache streams them) by a DataLoader, a batch at a time; beside an accelerator the next
batch is read while the model works on the current one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from visionbench.data.dataset import PreparedData

T = TypeVar("T")


def chunks(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split an epoch's order into batches; a last batch of one joins the previous one
    (batch-norm cannot train on a single image)."""
    parts = list(torch.split(order, batch_size))
    if len(parts) > 1 and len(parts[-1]) < 2:
        parts[-2] = torch.cat(parts[-2:])
        parts.pop()
    return parts


class SplitImages:
    """The uint8 images and targets of one split, batched by row positions."""

    def __init__(self, data: PreparedData, split: str, device: torch.device,
                 memory_budget_mb: int) -> None:
        self.positions = data.positions(split)
        self.rows = data.index[self.positions]
        self.targets = torch.as_tensor(data.targets[self.positions], dtype=torch.long)
        self.ids = [data.ids[p] for p in self.positions]
        self.source = data.images
        self.device = device
        size = len(self.rows) * int(np.prod(data.images.shape[1:]))
        self.in_memory = size <= memory_budget_mb * 2**20
        self.images: torch.Tensor | None = None
        if self.in_memory:
            array = np.ascontiguousarray(data.images[self.rows])
            # NHWC storage permuted to NCHW is exactly the channels-last layout.
            self.images = torch.from_numpy(array).permute(0, 3, 1, 2).to(device)
        self.device_targets = self.targets.to(device)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, keep: np.ndarray) -> SplitImages:
        """These images at positions `keep` only (the same device and storage)."""
        subset = copy.copy(self)
        subset.positions, subset.rows = self.positions[keep], self.rows[keep]
        subset.ids = [self.ids[k] for k in keep.tolist()]
        subset.targets = self.targets[torch.from_numpy(keep)]
        subset.device_targets = subset.targets.to(self.device)
        if self.images is not None:
            subset.images = self.images[torch.from_numpy(keep).to(self.device)]
        return subset

    def move_to(self, device: torch.device) -> None:
        """Serve batches on `device` (another process's GPU, when several train one model)."""
        if self.images is not None:
            self.images = self.images.to(device)
        self.device_targets = self.device_targets.to(device)
        self.device = device

    def batches(self, order: torch.Tensor, batch_size: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 NCHW images, targets) on the device, batch by batch in `order`."""
        if self.images is not None:
            device_order = order.to(self.device)
            for part in chunks(device_order, batch_size):
                yield self.images[part], self.device_targets[part]
            return
        loader = torch.utils.data.DataLoader(
            _Rows(self.source, self.rows, self.targets), batch_size=None,
            sampler=chunks(order, batch_size), pin_memory=self.device.type == "cuda",
        )
        rows = iter(loader)
        # Beside an accelerator the next batch is read while the current one trains. On the
        # CPU the model's threads already use every core, and a batch decoded beside them
        # makes them wait on one another at every parallel step: reading in turn was faster
        # (benchmarks/streamed_cache.py --interleave; benchmarks/README.md).
        for images, targets in rows if self.device.type == "cpu" else read_ahead(rows):
            yield (images.to(self.device, non_blocking=True),
                   targets.to(self.device, non_blocking=True))


def read_ahead(batches: Iterator[T]) -> Iterator[T]:
    """The items of `batches`, the next one read in a thread while the caller works on the
    current one: a batch read from disk, or decoded from its files when the images are
    streamed, is ready when the model wants it."""
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(next, batches, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            yield item


class _Rows(torch.utils.data.Dataset):
    """Reads a whole batch of rows from the memory-mapped cache in one sorted read."""

    def __init__(self, source: np.ndarray, rows: np.ndarray, targets: torch.Tensor) -> None:
        self.source, self.rows, self.targets = source, rows, targets

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows[positions.numpy()]
        sort = np.argsort(rows)
        array = np.empty((len(rows), *self.source.shape[1:]), dtype=np.uint8)
        array[sort] = self.source[rows[sort]]
        return torch.from_numpy(array).permute(0, 3, 1, 2), self.targets[positions]


@dataclass
class Evaluation:
    """Loss, accuracy and (N, classes) probabilities on one split, and the (N, D)
    penultimate features when they were asked for."""

    loss: float
    accuracy: float
    probabilities: torch.Tensor
    features: torch.Tensor | None = None
