"""What training, evaluation, explanation and prediction share to run a model: the device,
batches of a split, and the input pipeline. Sits above data and models, below train and
evaluate, so neither of those imports the other."""
