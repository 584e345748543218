"""A run of one member, what ``scripts/train_text.py`` and ``scripts/train_vision.py`` run: one config, its models.

A run trains one member per group of problems (``layout``), each through the same selection path as the ensemble
recipe (:func:`~hf_memotion.recipe.selection.train_with_selection`): a ``search:`` runs first (an Optuna study, a
learning-rate grid), the winner's folds are kept and the model refit with its values. Layout of ``output_dir``::

    <name>/                      the model's run (folds, model/, metrics.json; see training.runs)
    <name>/search/               its search: trial_N/ (a study, study.db) or lr_<rate>/ (a grid)

Examples:
    >>> results = run_member({
    ...     "family": "text",
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

from hf_memotion.data.loading import load_data
from hf_memotion.families import MemberRun, MemberSpec, ModelEntry
from hf_memotion.recipe.selection import train_with_selection
from hf_memotion.recipe.specs import MemberRunSpec
from hf_memotion.training.runs import ClassifierRunResult

__all__ = ["run_member"]


def run_member(config: Mapping[str, Any] | MemberSpec, *, source: str | None = None) -> dict[str, ClassifierRunResult]:
    """Train the models a member run describes, each after its search if it has one.

    Args:
        config: A :class:`~hf_memotion.recipe.specs.MemberRunSpec` (as read) or its mapping (a YAML config).
        source: The config's file, named in errors.

    Returns:
        Result per model name (``"multitask"``, or each problem's name under ``layout: per_problem``); the models
        themselves are in ``<output_dir>/<name>/model``.
    """
    spec = config if isinstance(config, MemberSpec) else MemberRunSpec.from_dict(config, source=source)
    data = load_data(spec.data, source=source)
    entries = [ModelEntry(name, group, spec.name, spec) for name, group in spec.groups().items()]
    run = MemberRun(n_splits=int(spec.n_splits), seed=int(spec.seed))
    results, _ = train_with_selection(entries, spec.output_dir, lambda: data, run, data=data)
    return results
