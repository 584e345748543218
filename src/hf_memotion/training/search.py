"""Optuna search over the textual model's hyperparameters, scored by k-fold cross-validation (Table 5b).

Each trial trains ``n_splits`` fold models with the sampled settings and scores the mean
out-of-fold macro-F1 over the model's problems. The study lives in a SQLite file in the output
folder, so a stopped search continues where it stopped (finished trials are kept; the count asked
for is the total).

Example:
    >>> TEXT_SEARCH_SPACE["lstm_layers"], TEXT_SEARCH_SPACE["learning_rate"]
    ([1, 2], (1e-06, 0.0003))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import optuna

from hf_memotion.tasks import PROBLEM_NAMES
from hf_memotion.training.trainer import ClassifierTrainingConfig

__all__ = ["TEXT_SEARCH_SPACE", "search_space_from_config", "search_text_hyperparameters"]

logger = logging.getLogger(__name__)

#: Table 5b of the Memotion paper: tuples are (low, high) float ranges (learning rate on a log
#: scale), lists are choices.
TEXT_SEARCH_SPACE: dict[str, Any] = {
    "learning_rate": (1e-6, 3e-4),
    "optimizer": ["adam", "adam_warmup"],
    "dropout": (0.0, 0.3),
    "lstm_layers": [1, 2],
    "lstm_hidden_size": [256, 512, 1024],
    "attention_size": [256, 512, 1024],
    "ffn_size": [256, 512, 1024],
}
_TRAINING_KEYS = ("learning_rate", "optimizer")
_RANGE_KEYS = ("learning_rate", "dropout")


def search_space_from_config(space: Mapping[str, Any]) -> dict[str, Any]:
    """A search space from YAML, where ranges are lists too: ``learning_rate`` and ``dropout`` become ranges.

    Example:
        >>> search_space_from_config({"learning_rate": [1e-5, 1e-3], "lstm_layers": [1, 2]})
        {'learning_rate': (1e-05, 0.001), 'lstm_layers': [1, 2]}
    """
    unknown = sorted(set(space) - set(TEXT_SEARCH_SPACE))
    if unknown:
        raise ValueError(f"unknown search space key(s) {unknown}; valid: {sorted(TEXT_SEARCH_SPACE)}")
    return {k: tuple(v) if k in _RANGE_KEYS else list(v) for k, v in space.items()}


def _sample(trial: optuna.Trial, space: Mapping[str, Any]) -> dict[str, Any]:
    values = {}
    for name, spec in space.items():
        if isinstance(spec, tuple) and len(spec) == 2:
            values[name] = trial.suggest_float(name, float(spec[0]), float(spec[1]), log=name == "learning_rate")
        elif isinstance(spec, list) and spec:
            values[name] = trial.suggest_categorical(name, spec)
        else:
            raise ValueError(f"search space entry {name!r} must be a (low, high) tuple or a non-empty list of choices")
    return values


def search_text_hyperparameters(
    data: datasets.DatasetDict | datasets.Dataset,
    output_dir: str | os.PathLike,
    *,
    backbone: str = "tiny:bert",
    problems: Sequence[str] = PROBLEM_NAMES,
    n_trials: int = 30,
    n_splits: int = 5,
    seed: int = 0,
    training: ClassifierTrainingConfig | None = None,
    search_space: Mapping[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    tiny_kwargs: dict[str, Any] | None = None,
) -> optuna.Study:
    """Run (or continue) an Optuna study over the textual model's hyperparameters.

    Args:
        data: Training data (a ``DatasetDict`` with ``train``, or one split); only ``train`` is used.
        output_dir: Holds ``study.db`` and one folder per trial.
        backbone: As in :func:`hf_memotion.training.text.train_text_classifier`.
        problems: Problems the model predicts; the objective is their mean out-of-fold macro-F1.
        n_trials: Total trials wanted (the paper: 30); finished trials count toward it.
        n_splits: Folds per trial (the paper: 5).
        seed: Sampler and fold seed.
        training: Fixed settings (Table 5a); ``learning_rate``/``optimizer`` are searched.
        search_space: Replaces :data:`TEXT_SEARCH_SPACE` (same keys or a subset).
        model_kwargs: Fixed :class:`MemotionTextConfig` fields.
        tiny_kwargs: Sizes of a tiny backbone.

    Returns:
        The study; ``study.best_params`` holds the best settings.
    """
    from hf_memotion.training.text import train_text_classifier

    splits = data if isinstance(data, datasets.DatasetDict) else datasets.DatasetDict({"train": data})
    train_only = datasets.DatasetDict({"train": splits["train"]})
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    space = dict(TEXT_SEARCH_SPACE if search_space is None else search_space)
    base_training = training or ClassifierTrainingConfig()
    study = optuna.create_study(
        study_name="memotion_text",
        storage=f"sqlite:///{output / 'study.db'}",
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    finished = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

    def objective(trial: optuna.Trial) -> float:
        values = _sample(trial, space)
        run_training = ClassifierTrainingConfig.from_dict(
            {**base_training.to_dict(), **{k: v for k, v in values.items() if k in _TRAINING_KEYS}}
        )
        run_model = {**(model_kwargs or {}), **{k: v for k, v in values.items() if k not in _TRAINING_KEYS}}
        result = train_text_classifier(
            train_only, output / f"trial_{trial.number}", backbone=backbone, problems=problems,
            training=run_training, n_splits=n_splits, seed=seed, model_kwargs=run_model, tiny_kwargs=tiny_kwargs,
            refit=False,
        )  # fmt: skip
        score = sum(result.oof_scores[p] for p in problems) / len(problems)
        logger.info("trial %d: %s -> mean out-of-fold macro-F1 %.4f", trial.number, values, score)
        return score

    remaining = max(0, n_trials - finished)
    if remaining:
        study.optimize(objective, n_trials=remaining)
    return study
