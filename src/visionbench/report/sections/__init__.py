"""The report's sections, one module each, registered in `report.run.SECTIONS` when
imported (this package imports them all); `report.build` draws them in the order of their
names."""

from visionbench.report.sections import (
    data,
    folds,
    label_issues,
    leaderboard,
    models,
    quality,
    shift,
    summary,
    sweep,
    tta,
    unfamiliar,
    weak_segments,
)

__all__ = ["data", "folds", "label_issues", "leaderboard", "models", "quality", "shift",
           "summary", "sweep", "tta", "unfamiliar", "weak_segments"]
