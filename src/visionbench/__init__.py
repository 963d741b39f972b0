"""visionbench: train, evaluate and compare image classifiers, with evidence.

In a notebook, put a run's model to work::

    import visionbench
    model = visionbench.load("runs/quickstart/20261202-120000")   # the recommended model
    model.classes, model.card.input.size
    model.predict(["scan1.png", "scan2.png"])   # the numbers `visionbench predict` gives
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from visionbench.version import __version__

if TYPE_CHECKING:
    from visionbench.predict import load

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    # `load` brings in torch: imported on first use, so `import visionbench` and the
    # command line stay quick.
    if name == "load":
        from visionbench.predict import load

        return load
    raise AttributeError(f"module 'visionbench' has no attribute {name!r}")
