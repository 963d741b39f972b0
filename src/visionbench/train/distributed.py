"""One model trained by several processes with PyTorch's DistributedDataParallel
(`train.distributed`): the processes are started here on this machine (gloo on CPUs,
NCCL with one GPU each), each trains on its share of every batch, and the first one hands
its final state back; the caller's trainer loads it and goes on as after an ordinary fit,
so only the calling process writes the model folder.
"""

from __future__ import annotations

import copy
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from visionbench.errors import UserError
from visionbench.models.build import BuiltModel
from visionbench.runtime.batches import SplitImages
from visionbench.schemas.train import DistributedConfig, TrainConfig
from visionbench.train.callbacks import Checkpoint, Progress
from visionbench.train.loop import Stage, Trainer

STATE = "state.pt"


@dataclass
class FitSpec:
    """What every process needs to build the same trainer (sent to each once)."""

    built: BuiltModel
    cfg: TrainConfig
    stages: list[Stage]
    train: SplitImages
    val: SplitImages | None
    classes: list[str]
    device: torch.device
    meta: dict[str, Any]
    state: dict[str, Any] | None
    checkpoints: tuple[Path, Path] | None
    progress: tuple[str, str]
    # A finished model trained further: `stages` already holds the extra epochs.
    continued: bool = False


def backend_for(settings: DistributedConfig, device: torch.device) -> str:
    """The process-group backend: NCCL for GPUs, gloo for CPUs, unless told."""
    if settings.backend != "auto":
        return settings.backend
    return "nccl" if device.type == "cuda" else "gloo"


def fit_distributed(spec: FitSpec, settings: DistributedConfig) -> dict[str, Any]:
    """Train in `settings.processes` processes; the first one's final trainer state, with
    `meta.process_spread`: the largest difference between any two processes' weights
    (zero when they stayed in step, as they must)."""
    if spec.device.type == "cuda" and torch.cuda.device_count() < settings.processes:
        raise UserError(f"train.distributed.processes is {settings.processes} but "
                        f"{torch.cuda.device_count()} GPU(s) are visible: one per process")
    # The processes meet through a key-value store this process holds on 127.0.0.1: it
    # exists before any of them starts, so none races another to create it. Left to
    # itself TCPStore listens on every interface, so it is handed a socket bound to
    # loopback (the store owns it from then on).
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]
    store = torch.distributed.TCPStore("127.0.0.1", port, is_master=True,
                                       wait_for_workers=False,
                                       master_listen_fd=listener.detach())
    with tempfile.TemporaryDirectory(prefix="visionbench-ddp-") as folder:
        torch.multiprocessing.spawn(
            _process, args=(settings.processes, backend_for(settings, spec.device), spec,
                            store.port, folder),
            nprocs=settings.processes, join=True)
        return torch.load(Path(folder) / STATE, map_location="cpu", weights_only=True)


def _loopback() -> str | None:
    """The loopback interface's name (`lo` on Linux, `lo0` on macOS), if there is one."""
    return next((name for _, name in socket.if_nameindex() if name.startswith("lo")), None)


def _process(index: int, processes: int, backend: str, spec: FitSpec, port: int,
             folder: str) -> None:
    loopback = _loopback()
    if backend == "gloo" and "GLOO_SOCKET_IFNAME" not in os.environ and loopback:
        # The processes are on this machine: gloo talks over loopback, not whatever
        # interface the host name resolves to.
        os.environ["GLOO_SOCKET_IFNAME"] = loopback
    store = torch.distributed.TCPStore("127.0.0.1", port, is_master=False,
                                       wait_for_workers=False)
    torch.distributed.init_process_group(backend, store=store, rank=index,
                                         world_size=processes)
    try:
        device = torch.device("cuda", index) if spec.device.type == "cuda" else spec.device
        for split in (spec.train, spec.val):
            if split is not None:
                split.move_to(device)
        # The first process alone writes checkpoints and shows progress.
        callbacks = ([Checkpoint(*spec.checkpoints)] if spec.checkpoints and index == 0
                     else []) + [Progress(*spec.progress) if index == 0
                                 else Progress(spec.progress[0], "quiet")]
        torch.manual_seed(spec.cfg.seed)
        # The spec arrives from the calling process through multiprocessing, its tensors in
        # memory shared by every process: each trains its own copy of the model
        # (DistributedDataParallel keeps the copies equal), or every step would be applied
        # once per process.
        trainer = Trainer(copy.deepcopy(spec.built), spec.cfg, spec.stages, spec.train, spec.val,
                          spec.classes, device, callbacks=callbacks, meta=dict(spec.meta),
                          rank=(index, processes))
        if spec.state is not None:
            trainer.load_state_dict(spec.state)
            if spec.continued:
                trainer.extend(0)
        trainer.fit()
        weights = torch.cat([p.detach().flatten().float() for p in trainer.model.parameters()])
        everyone = [torch.zeros_like(weights) for _ in range(processes)]
        torch.distributed.all_gather(everyone, weights)
        if index == 0:
            state = trainer.state_dict()
            state["meta"]["process_spread"] = float(max(
                (other - weights).abs().max() for other in everyone))
            torch.save(state, Path(folder) / STATE)
        # Leave together: a process tearing its connections down while another still
        # uses them aborts the other.
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()
    # Done, and the result is on disk: leave at once. Finalising the interpreter would
    # destroy the process group's native threads in an order that now and then aborts
    # the process (std::terminate) after its work is finished.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
