"""visionbench: train, evaluate and compare image classifiers, with evidence."""

__version__ = "0.1.0"
