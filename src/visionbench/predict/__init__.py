"""Putting a trained model to work: predictions for new images, from a run folder alone.

`load(run_dir, model=None)` gives a `Predictor` (the run's recommended model by default);
`predict_files` streams any number of files through it in batches with parallel decoding;
`sort_files` copies or moves them into one folder per class.
"""

from visionbench.predict.inputs import expand_inputs
from visionbench.predict.model import Explanation, Predictor, load
from visionbench.predict.sort import sort_files
from visionbench.predict.stream import Prediction, predict_files

__all__ = ["Explanation", "Prediction", "Predictor", "expand_inputs", "load", "predict_files",
           "sort_files"]
