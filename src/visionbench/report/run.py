"""What the report is drawn from: `Run`, the typed documents of a run folder, and
`SECTIONS`, the registry of the functions that draw the page's sections from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from visionbench.registry import Registry
from visionbench.report import charts
from visionbench.report.page import Page
from visionbench.rundir.documents import (
    Comparison,
    DataRecord,
    EvaluationDocument,
    Inspection,
    Leaderboard,
    LeaderboardRow,
    Status,
)
from visionbench.rundir.layout import RunFolder


@dataclass
class Run:
    """The typed documents of a run folder that the report is drawn from."""

    folder: RunFolder
    data: DataRecord
    board: Leaderboard
    comparison: Comparison
    inspection: Inspection | None
    evaluations: dict[str, EvaluationDocument]
    colour: dict[str, str]

    @classmethod
    def read(cls, folder: RunFolder) -> Run:
        """Every document the report needs; a finished run folder has them all."""
        board = folder.require(Leaderboard)
        models = [row.model for row in board.rows]
        evaluations = {m: e for m in models
                       if (e := folder.model(m).read(EvaluationDocument)) is not None}
        comparison = folder.read(Comparison) or Comparison(
            primary_metric="", recommended=None, alpha=0.05, marks={}, pairs=[])
        return cls(folder, folder.require(DataRecord), board, comparison,
                   folder.read(Inspection), evaluations, charts.colours(models))

    def row(self, name: str) -> LeaderboardRow:
        """The leaderboard row of model `name`."""
        return next(r for r in self.board.rows if r.model == name)

    @property
    def any_trained(self) -> bool:
        """Whether a model was trained and evaluated: without one, the leaderboard's
        sentence says why and its sub-sections have nothing to show."""
        return any(row.status == Status.OK for row in self.board.rows)


Section = Callable[[Page, Run], None]
# The report's sections, in page order (their names sort in it); a new section is one
# registered function in a module of `report.sections`.
SECTIONS: Registry[Section] = Registry("report section")
