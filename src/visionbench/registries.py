"""Every module that fills a registry, imported here once: whatever validates a config or
rebuilds a model from its card (`visionbench.config`, `visionbench.predict`) imports this
module first, so every registered name is known. A new registering module is added here.
"""

from visionbench.evaluate import (
    conformal,
    explain,
    external,
    metrics,
    robustness,
    unfamiliar,
)
from visionbench.models import cnn, layers, outputs, timm_backbone
from visionbench.runtime import executors
from visionbench.track import mlflow_log, tensorboard_log
from visionbench.train import balance, optim

__all__ = ["balance", "cnn", "conformal", "executors", "explain", "external", "layers", "metrics",
           "mlflow_log", "optim", "outputs", "robustness", "tensorboard_log", "timm_backbone",
           "unfamiliar"]
