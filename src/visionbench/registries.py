"""Every module that fills a registry, imported here once: whatever validates a config or
rebuilds a model from its card (`visionbench.config`, `visionbench.predict`) imports this
module first, so every registered name is known. A new registering module is added here.
"""

from visionbench.evaluate import explain, external, metrics, robustness
from visionbench.models import cnn, layers, outputs, timm_backbone
from visionbench.train import balance, optim

__all__ = ["balance", "cnn", "explain", "external", "layers", "metrics", "optim", "outputs",
           "robustness", "timm_backbone"]
