"""Models trained elsewhere (ONNX through onnxruntime, or TorchScript), evaluated exactly
like visionbench's own: same input pipeline, same predictions file, same metrics.

The preprocessing is the model entry's `input:` (size, channels, mean/std, `layout`
nchw|nhwc, `scale`); `external_outputs` says whether the file returns probabilities
(Keras's softmax) or logits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from visionbench.data.normalize import luma_statistics
from visionbench.errors import UserError
from visionbench.models.family import DataFacts, ModelFamily, register_family, resolve_input
from visionbench.registry import Registry
from visionbench.runtime.batches import Evaluation, SplitImages
from visionbench.runtime.pipeline import InputPipeline
from visionbench.schemas.inputs import InputSpec
from visionbench.schemas.models import ModelConfig

Runner = Callable[[Path], Callable[[np.ndarray], np.ndarray]]
RUNNERS: Registry[Runner] = Registry("external model format")


@RUNNERS.register(".onnx")
def _onnx(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    try:
        import onnxruntime
    except ImportError:
        raise UserError("ONNX models need onnxruntime: pip install 'visionbench[onnx]'") from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise UserError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
    graph_input = session.get_inputs()[0]
    if graph_input.type == "tensor(uint8)":
        # A graph that takes the decoded image as it is (visionbench's own exports).
        return lambda batch: session.run(None, {
            graph_input.name: np.rint(batch).clip(0, 255).astype(np.uint8)})[0]
    return lambda batch: session.run(None, {graph_input.name: batch})[0]


@RUNNERS.register(".pt")
def _torchscript(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # torch.jit raises RuntimeError or pickle errors
        raise UserError(f"cannot load TorchScript model {path}: "
                        f"{str(exc).splitlines()[0]}") from None

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(batch)).float().numpy()

    return run


# File endings read as TorchScript.
TORCHSCRIPT = (".pt", ".pth", ".ts", ".torchscript")


def _format(path: Path) -> str:
    return ".pt" if path.suffix in TORCHSCRIPT else path.suffix


@register_family
class ExternalFamily(ModelFamily):
    """A model trained elsewhere, evaluated through visionbench's input pipeline."""

    name = "external"
    summary = "`external` (an ONNX or TorchScript file trained elsewhere)"
    keys = ("external",)
    trainable = False

    def check(self, config: ModelConfig) -> None:
        """The file's format must be one visionbench can run."""
        if _format(Path(str(config.external))) not in RUNNERS:
            raise ValueError(f"external: {config.external} is neither ONNX (.onnx) nor "
                             f"TorchScript ({', '.join(TORCHSCRIPT)})")

    def input_spec(self, config: ModelConfig, facts: DataFacts) -> InputSpec:
        """What the file is fed: the entry's `input:`, else the data's size, channels and
        normalisation."""
        height, width, data_channels = facts.image_shape
        channels = config.input.channels or data_channels
        mean, std = facts.mean, facts.std
        if channels == 1:
            mean, std = luma_statistics(mean), luma_statistics(std)
        return resolve_input(config, (height, width), channels, mean, std, facts.per_image)


class ExternalModel:
    """An ONNX or TorchScript classifier behind visionbench's input pipeline."""

    def __init__(self, config: ModelConfig, spec: InputSpec, n_classes: int) -> None:
        path = Path(config.external or "").expanduser()
        if not path.is_file():
            raise UserError(f"external model file not found: {path}")
        self.run = RUNNERS.get(_format(path))(path)
        self.config, self.spec, self.n_classes = config, spec, n_classes
        self.device = torch.device("cpu")
        self.pipeline = InputPipeline(spec, self.device, channels_last=False)

    def _probabilities(self, outputs: np.ndarray) -> np.ndarray:
        outputs = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
        if outputs.shape[1] == 1 and self.n_classes == 2:
            positive = outputs[:, 0]
            if self.config.external_outputs == "logits":
                positive = 1 / (1 + np.exp(-positive))
            return np.stack([1 - positive, positive], axis=1)
        if outputs.shape[1] != self.n_classes:
            raise UserError(f"{self.config.external} returns {outputs.shape[1]} values per "
                            f"image for {self.n_classes} classes")
        if self.config.external_outputs == "logits":
            shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)
        return outputs

    def evaluate(self, split: SplitImages,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> Evaluation:
        """Loss, accuracy and probabilities on `split`, as `Trainer.evaluate` gives them."""
        found = []
        for images, targets in split.batches(torch.arange(len(split)), 64):
            x = self.pipeline(images, targets, train=False, transform=transform)
            x = x * self.config.input.scale
            if self.config.input.layout == "nhwc":
                x = x.permute(0, 2, 3, 1)
            batch = x.contiguous().numpy().astype(np.float32)
            try:
                outputs = self.run(batch)
            except Exception as exc:  # each runtime has its own error types
                raise UserError(
                    f"{self.config.external} rejected input of shape {batch.shape} "
                    f"({self.config.input.layout}): {str(exc).splitlines()[0][:200]}; set "
                    "the model's input: size, channels and layout to what it was trained on"
                ) from None
            found.append(self._probabilities(outputs))
        prob = np.concatenate(found) if found else np.zeros((0, self.n_classes))
        truth = split.targets.numpy()
        true_prob = np.clip(prob[np.arange(len(truth)), truth], 1e-15, 1.0)
        loss = float(-np.log(true_prob).mean()) if len(truth) else 0.0
        accuracy = float((prob.argmax(axis=1) == truth).mean()) if len(truth) else 0.0
        return Evaluation(loss, accuracy, torch.from_numpy(prob))
