"""The run in TensorBoard: one folder of event files per model under `<run>/tensorboard/`,
a curve per history column by epoch (`loss/train` beside `loss/val`), and the test metrics
at the last epoch."""

from __future__ import annotations

from typing import Any

from visionbench.rundir.documents import History, Leaderboard
from visionbench.rundir.layout import RunFolder
from visionbench.schemas.tracking import TrackingConfig
from visionbench.track.trackers import TRACKERS, epoch_curves


def scalar_name(column: str) -> str:
    """A history column as a TensorBoard tag, so a split's curves share one chart.

    Example:
        >>> scalar_name("val_loss"), scalar_name("lr")
        ('loss/val', 'lr')
    """
    split, _, metric = column.partition("_")
    return f"{metric}/{split}" if split in ("train", "val") and metric else column


@TRACKERS.register("tensorboard")
def log_to_tensorboard(run: RunFolder, settings: TrackingConfig) -> dict[str, Any]:
    """Write each model's curves and test metrics as TensorBoard event files."""
    from torch.utils.tensorboard import SummaryWriter

    board = run.require(Leaderboard)
    folders = {}
    for row in board.rows:
        history = run.model(row.model).read(History)
        if history is None:
            continue
        target = run.tensorboard_dir(row.model)
        last = 0
        with SummaryWriter(log_dir=str(target)) as writer:
            for epoch in history.epochs:
                last = epoch.epoch
                for column, value in epoch_curves(epoch).items():
                    writer.add_scalar(scalar_name(column), value, last)
            for metric, interval in row.metrics.items():
                if interval.value is not None:
                    writer.add_scalar(f"{metric}/test", interval.value, last)
        folders[row.model] = str(target)
    where = str(run.tensorboard_dir(board.rows[0].model).parent) if folders else ""
    return {"where": f"tensorboard --logdir {where}" if where else "no history to log",
            "folders": folders}
