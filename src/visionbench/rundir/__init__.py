"""The run folder as a typed contract: its layout (`layout`), its JSON documents
(`documents`) and its predictions files (`predictions`). No other module names a file in a
run folder or parses one of its documents."""

from visionbench.rundir.documents import (
    Comparison,
    DataRecord,
    ErrorAnalysis,
    EvaluationDocument,
    Explanations,
    ExportCard,
    ExportTrainingHashes,
    History,
    Inspection,
    Interval,
    Leaderboard,
    LeaderboardRow,
    ModelCard,
    ModelMetrics,
    Notice,
    Robustness,
    RunDocument,
    RunEntry,
    SplitScore,
    Status,
    Sweep,
    Tracking,
    TrainingHashes,
)
from visionbench.rundir.layout import ExportFolder, ModelFolder, RunFolder
from visionbench.rundir.predictions import Predictions

__all__ = [
    "Comparison",
    "DataRecord",
    "ErrorAnalysis",
    "EvaluationDocument",
    "Explanations",
    "ExportCard",
    "ExportFolder", "ExportTrainingHashes",
    "History",
    "Inspection",
    "Interval",
    "Leaderboard",
    "LeaderboardRow",
    "ModelCard",
    "ModelFolder",
    "ModelMetrics",
    "Notice",
    "Predictions",
    "Robustness",
    "RunDocument",
    "RunEntry",
    "RunFolder",
    "SplitScore",
    "Status",
    "Sweep", "Tracking", "TrainingHashes",
]
