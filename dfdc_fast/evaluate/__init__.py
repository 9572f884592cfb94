"""``python -m dfdc_fast.evaluate SUBMISSION LABELS...``: how good a submission is.

The DFDC metric (log loss, plain and class-balanced), the ranking figures DeepfakeBench
users expect (AUC, AP, EER), accuracy at 0.5, the same per DFDC part, and a picture (ROC
and calibration). A submission that misses a labelled video or has a bad row (not a
number, outside [0, 1], a name twice) is refused: a score over part of the videos would
not be the competition's.
"""
from dfdc_fast.evaluate.labels import Label, read_labels
from dfdc_fast.evaluate.score import evaluate, figures

__all__ = ["Label", "evaluate", "figures", "read_labels"]
