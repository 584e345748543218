"""The base-model runs of ``scripts/train_text.py`` and ``scripts/train_vision.py``: one config, its models.

A run trains one textual or one visual model per group of problems (``layout``), each through the same selection
path as the ensemble recipe (:func:`~hf_memotion.training.selection.train_with_selection`): a text config's
``search: {n_trials: N}`` runs the Optuna study first, a vision config's list of learning rates is the grid; the
winner's folds are kept and the model refit with its settings. Layout of ``output_dir``::

    <name>/                      the model's run (folds, model/, metrics.json; see training.runs)
    <name>/search/               its search: trial_N/ (text, study.db) or lr_<rate>/ (vision)

Examples:
    >>> from hf_memotion.data import make_demo_data
    >>> results = run_text_experiment({
    ...     "data": {"demo": {"output_dir": "/tmp/hf_memotion_doc_experiment", "n_train": 40, "n_test": 10}},
    ...     "output_dir": "/tmp/hf_memotion_doc_experiment_run", "problems": ["motivational"], "n_splits": 2,
    ...     "training": {"epochs": 1, "learning_rate": 1e-3},
    ...     "model": {"lstm_hidden_size": 8, "attention_size": 8, "ffn_size": 8}})
    >>> results["multitask"].oof_probabilities["motivational"].shape
    (40, 2)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hf_memotion.config import load_data
from hf_memotion.training.run_specs import BaseModelRunSpec, ModelEntry, TextRunSpec, VisionRunSpec
from hf_memotion.training.runs import ClassifierRunResult
from hf_memotion.training.selection import train_with_selection

__all__ = ["run_experiment", "run_text_experiment", "run_vision_experiment"]


def run_experiment(spec: BaseModelRunSpec, *, source: str | None = None) -> dict[str, ClassifierRunResult]:
    """Train the models a base-model run spec describes, each after its search if it has one.

    Args:
        spec: A :class:`~hf_memotion.training.run_specs.TextRunSpec` or
            :class:`~hf_memotion.training.run_specs.VisionRunSpec`.
        source: The config's file, named in errors.

    Returns:
        Result per model name (``"multitask"``, or each problem's name under ``layout: per_problem``); the
        models themselves are in ``<output_dir>/<name>/model``.
    """
    data = load_data(spec.data, source=source)
    entries = [ModelEntry(name, group, spec.name, spec) for name, group in spec.groups().items()]
    results, _ = train_with_selection(
        entries, spec.output_dir, lambda: data, n_splits=int(spec.n_splits), seed=int(spec.seed), data=data
    )
    return results


def run_text_experiment(
    config: Mapping[str, Any] | TextRunSpec, *, source: str | None = None
) -> dict[str, ClassifierRunResult]:
    """Run what a text YAML config describes (``scripts/train_text.py``): see :class:`TextRunSpec`."""
    spec = config if isinstance(config, TextRunSpec) else TextRunSpec.from_dict(config, source=source)
    if spec.modality != "text":
        raise ValueError(f"a text run has modality 'text', got {spec.modality!r}")
    return run_experiment(spec, source=source)


def run_vision_experiment(
    config: Mapping[str, Any] | VisionRunSpec, *, source: str | None = None
) -> dict[str, ClassifierRunResult]:
    """Run what a vision YAML config describes (``scripts/train_vision.py``): see :class:`VisionRunSpec`.

    A list as ``training.learning_rate`` is the paper's grid: each rate is cross-validated, the best mean
    out-of-fold macro-F1 wins and trains the final model.
    """
    spec = config if isinstance(config, VisionRunSpec) else VisionRunSpec.from_dict(config, source=source)
    if spec.modality != "vision":
        raise ValueError(f"a vision run has modality 'vision', got {spec.modality!r}")
    return run_experiment(spec, source=source)
