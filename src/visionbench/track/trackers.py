"""The tracker registry, the check that a config's trackers are installed, and the run of
them at the end of a run."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from visionbench.errors import UserError
from visionbench.registry import Registry
from visionbench.rundir.documents import EpochRow, Tracking
from visionbench.rundir.layout import RunFolder
from visionbench.schemas.tracking import TrackingConfig

# A tracker logs a finished run folder and says where: `(run, settings) -> facts`.
Tracker = Callable[[RunFolder, TrackingConfig], dict[str, Any]]
TRACKERS: Registry[Tracker] = Registry("tracker")
# The package each tracker imports; the extra of the same name installs it.
PACKAGES = {"mlflow": "mlflow", "tensorboard": "tensorboard"}


def check_trackers(settings: TrackingConfig) -> None:
    """A UserError naming what to install, before any training, for a tracker whose
    package is missing."""
    for name in settings.to:
        package = PACKAGES.get(name, name)
        if importlib.util.find_spec(package) is None:
            raise UserError(f"tracking: {name} needs the {package} package: pip install "
                            f"'visionbench[{name}]' (or remove it from tracking)")


def track_run(run: RunFolder, settings: TrackingConfig, report: Callable[[str], None]
              ) -> Tracking | None:
    """Log the finished run to every tracker `settings` names; `tracking.json` says where,
    or why one failed. A tracker that fails costs nothing of the run folder."""
    if not settings.to:
        return None
    facts: dict[str, dict[str, Any]] = {}
    for name in settings.to:
        try:
            facts[name] = TRACKERS.get(name)(run, settings)
        except Exception as exc:  # a tracker server or store can fail in many ways
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}" \
                if str(exc).strip() else type(exc).__name__
            facts[name] = {"error": reason}
            report(f"warning: logging to {name} failed ({reason}); the run folder is "
                   "complete, and `tracking.json` keeps the reason")
        else:
            report(f"logged to {name}: {facts[name].get('where', '')}")
    document = Tracking(trackers=facts)
    run.write(document)
    return document


def flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as `a.b.c -> text`, the shape trackers take parameters in.

    Example:
        >>> flatten({"train": {"lr": 0.1, "augment": {"hflip": 0.5}}, "seed": None})
        {'train.lr': '0.1', 'train.augment.hflip': '0.5', 'seed': 'None'}
    """
    flat: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


# Columns of a history row that are not curves.
NOT_CURVES = ("epoch", "seconds", "images")


def epoch_curves(row: EpochRow) -> dict[str, float]:
    """The numbers of one history row worth a curve (losses, accuracies, learning rate).

    Example:
        >>> epoch_curves(EpochRow(epoch=2, stage="all", train_loss=0.5, lr=0.01, seconds=3.0))
        {'train_loss': 0.5, 'lr': 0.01}
    """
    return {key: float(value) for key, value in row.model_dump().items()
            if key not in NOT_CURVES and isinstance(value, int | float)
            and not isinstance(value, bool)}
