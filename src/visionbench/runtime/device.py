"""Which device a model runs on."""

from __future__ import annotations

import torch

from visionbench.errors import UserError


def pick_device(name: str) -> torch.device:
    """`auto` -> CUDA, then Apple MPS, then CPU; an explicit name must be available."""
    mps = getattr(torch.backends, "mps", None)
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": mps is not None and mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available[name]:
        raise UserError(f"train.device: {name} is not available here; use auto or cpu")
    return torch.device(name)
