"""Memotion metrics: plain functions and the offline ``evaluate`` module beside them."""

from __future__ import annotations

from pathlib import Path

from hf_memotion.metrics.scoring import memotion_scores

__all__ = ["MEMOTION_METRIC_PATH", "load_memotion_metric", "memotion_scores"]

#: Folder of the local ``evaluate`` module: ``evaluate.load(MEMOTION_METRIC_PATH)`` works offline.
MEMOTION_METRIC_PATH = str(Path(__file__).parent / "memotion")


def load_memotion_metric(**kwargs):
    """Load the Memotion metric as an ``evaluate`` module, from the installed package (no network).

    Examples:
        >>> from hf_memotion.metrics import load_memotion_metric
        >>> metric = load_memotion_metric()
        >>> metric.compute(predictions=["1_1101_2301"], references=["1_1101_2301"])["subtask_c"]
        1.0
    """
    import evaluate

    return evaluate.load(MEMOTION_METRIC_PATH, **kwargs)
