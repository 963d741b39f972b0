"""Evaluation: metrics, uncertainty, paired significance, clinical readings, robustness."""
