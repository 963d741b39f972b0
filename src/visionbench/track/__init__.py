"""Logging a finished run to experiment trackers (MLflow, TensorBoard), from its run folder
alone: the folder is the record, a tracker a view of it. Each tracker is one registered
function `(run, settings) -> where`; `track_run` calls those the config names and writes
where each one logged to `tracking.json`."""

from visionbench.track.trackers import TRACKERS, check_trackers, track_run

__all__ = ["TRACKERS", "check_trackers", "track_run"]
