"""After the models ran: each model's status in run.json, the evaluation of every finished
model from its predictions (leaderboard, comparison), and the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from visionbench.config import Config
from visionbench.data.dataset import PreparedData
from visionbench.errors import UserError
from visionbench.evaluate.leaderboard import evaluate_folder
from visionbench.orchestrate.label_issues import write_label_issues
from visionbench.orchestrate.segments import write_segments
from visionbench.report.build import write_report
from visionbench.rundir.documents import Leaderboard, ModelMetrics, RunDocument, RunEntry
from visionbench.rundir.layout import RunFolder
from visionbench.track import track_run


@dataclass
class RunResult:
    """Where the run went, each model's outcome and the leaderboard."""

    run: RunFolder
    models: dict[str, ModelMetrics] = field(default_factory=dict)
    board: Leaderboard | None = None
    # `continue` only: models whose continuation failed, kept as they were before it.
    not_continued: dict[str, ModelMetrics] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """The run folder's path."""
        return self.run.path

    @property
    def exit_code(self) -> int:
        """0 if every model trained; 2 if a failure was the user's to fix; 1 otherwise."""
        codes = [m.exit_code or 1 for m in [*self.models.values(), *self.not_continued.values()]
                 if not m.ok]
        return max(codes, default=0)

    @property
    def failed(self) -> list[str]:
        """The models that did not finish (or whose continuation did not)."""
        return [name for name, metrics in self.models.items() if not metrics.ok] + list(
            self.not_continued)


def finish_run(result: RunResult, config: Config, data: PreparedData,
               report: Callable[[str], None] = print) -> None:
    """Record each model's status, evaluate the run from its predictions, find label issues
    (with `evaluate.label_issues`) and weak segments (with `evaluate.segments`), write the
    report, then log the run to the config's
    trackers."""
    result.run.write(RunDocument(
        name=config.output.name, folder=str(result.run.path),
        models={name: RunEntry(status=m.status, **({"error": m.error} if m.error else {}))
                for name, m in result.models.items()},
    ))
    result.board = evaluate_folder(result.run, config.evaluate, list(result.models),
                                   config.train.progress)
    if config.evaluate.label_issues is not None:
        try:
            found = write_label_issues(result.run, config.evaluate.label_issues, data)
            report(f"label issues: {found.found} of {found.images_scored} images "
                   f"({found.source} predictions of {found.model}) have a label the model "
                   "disputes; listed in the report")
        except UserError as exc:
            # The models' results stand; this one finding is missing, and says why.
            report(str(exc))
    if config.evaluate.segments is not None:
        write_segments(result.run, config.evaluate.segments, data,
                       [row.model for row in result.board.rows],
                       result.board.primary_metric, config.evaluate.confidence,
                       config.train.seed)
    write_report(result.run, config.train.progress)
    # Last: the run folder is complete before anything is sent elsewhere.
    track_run(result.run, config.tracking, report)
