"""Optuna search over the textual model's hyperparameters, scored by k-fold cross-validation (Table 5b).

Each trial trains ``n_splits`` fold models with the sampled settings and scores the mean
out-of-fold macro-F1 over the model's problems. The study lives in a SQLite file in the output
folder, so a stopped search continues where it stopped (finished trials are kept; the count asked
for is the total). Trial ``N`` is sampled by a TPE sampler seeded with ``seed + N``, so its values depend on the
seed and the trials before it only: a killed search resumes to the same trials (a trial cut off by the kill is run
again under its number, with its values, from its finished folds). With ``pruning`` (see
:mod:`hf_memotion.training.pruning`) an Optuna pruner stops hopeless trials; a pruned trial counts as finished.

Examples:
    >>> TEXT_SEARCH_SPACE["lstm_layers"], TEXT_SEARCH_SPACE["learning_rate"]
    ([1, 2], (1e-06, 0.0003))
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import optuna
from sqlalchemy.exc import SQLAlchemyError

from hf_memotion.folder_safety import check_regular_file
from hf_memotion.tasks import PROBLEM_NAMES
from hf_memotion.training.cross_validation import CandidatePruned
from hf_memotion.training.pruning import TrialReporter, make_pruner
from hf_memotion.training.run_specs import PruningSpec
from hf_memotion.training.trainer import ClassifierTrainingArguments

__all__ = [
    "TEXT_SEARCH_SPACE",
    "search_space_from_config",
    "search_text_hyperparameters",
    "study_results",
    "trial_settings",
]

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
#: The trials that count toward ``n_trials``: those that ran every fold and those a pruner stopped.
_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
_RANGE_KEYS = ("learning_rate", "dropout")


def search_space_from_config(space: Mapping[str, Any]) -> dict[str, Any]:
    """A search space from YAML, where ranges are lists too: ``learning_rate`` and ``dropout`` become ranges.

    Examples:
        >>> search_space_from_config({"learning_rate": [1e-5, 1e-3], "lstm_layers": [1, 2]})
        {'learning_rate': (1e-05, 0.001), 'lstm_layers': [1, 2]}
    """
    unknown = sorted(set(space) - set(TEXT_SEARCH_SPACE))
    if unknown:
        raise ValueError(f"unknown search space key(s) {unknown}; valid: {sorted(TEXT_SEARCH_SPACE)}")
    return {k: tuple(v) if k in _RANGE_KEYS else list(v) for k, v in space.items()}


def trial_settings(
    values: Mapping[str, Any], training: ClassifierTrainingArguments, model_kwargs: Mapping[str, Any] | None = None
) -> tuple[ClassifierTrainingArguments, dict[str, Any]]:
    """The training settings and model fields of a trial's ``values`` (searched keys over the fixed ones).

    Examples:
        >>> run, model = trial_settings({"learning_rate": 1e-4, "dropout": 0.2}, ClassifierTrainingArguments(), {})
        >>> run.learning_rate, model
        (0.0001, {'dropout': 0.2})
    """
    run_training = dataclasses.replace(training, **{k: v for k, v in values.items() if k in _TRAINING_KEYS})
    run_model = {**(model_kwargs or {}), **{k: v for k, v in values.items() if k not in _TRAINING_KEYS}}
    return run_training, run_model


def _open_study(output_dir: str | os.PathLike, **create_options: Any) -> optuna.Study:
    """The ``memotion_text`` study of ``output_dir/study.db``; a file that is no Optuna study is one clear error.

    With ``create_options`` (``direction``, ``sampler``) the study is created when missing, else it must exist.
    """
    path = Path(output_dir) / "study.db"
    if path.exists():
        check_regular_file(path, "Optuna study", max_bytes=None)
        with open(path, "rb") as handle:
            header = handle.read(16)
        if header and header != b"SQLite format 3\x00":
            raise ValueError(f"{path} is not an Optuna study (no SQLite database): delete it and run the search again")
    try:
        if create_options:
            return optuna.create_study(
                study_name="memotion_text", storage=f"sqlite:///{path}", load_if_exists=True, **create_options
            )
        return optuna.load_study(study_name="memotion_text", storage=f"sqlite:///{path}")
    except (KeyError, ValueError, RuntimeError, SQLAlchemyError) as err:
        raise ValueError(
            f"{path} is not a readable Optuna study of this search ({type(err).__name__}: {str(err).splitlines()[0]}): "
            "delete it and run the search again"
        ) from None


def _outside_space(values: Mapping[str, Any], space: Mapping[str, Any]) -> list[str]:
    """The values of a trial that its search space could not have given (a planted or foreign study)."""
    problems = []
    for name, value in values.items():
        spec = space.get(name)
        if spec is None:
            problems.append(f"{name}={value!r} (not searched)")
        elif isinstance(spec, tuple):
            low, high = float(spec[0]), float(spec[1])
            if not isinstance(value, int | float) or not low <= float(value) <= high:
                problems.append(f"{name}={value!r} (outside {low:g}..{high:g})")
        elif value not in spec:
            problems.append(f"{name}={value!r} (not one of {list(spec)})")
    return problems


def _trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A finished trial as the selection reports it: values, score (``None`` when pruned), state, steps trained."""
    record = {
        "trial": trial.number,
        "values": dict(trial.params),
        "score": float(trial.value) if trial.state == optuna.trial.TrialState.COMPLETE else None,
        "state": "pruned" if trial.state == optuna.trial.TrialState.PRUNED else "complete",
        "train_steps": int(trial.user_attrs.get("train_steps", 0)),
        "trainings": int(trial.user_attrs.get("trainings", 0)),
    }
    if trial.state == optuna.trial.TrialState.PRUNED:
        record["pruned_at"] = trial.user_attrs.get("pruned_at")
    return record


def study_results(
    output_dir: str | os.PathLike, space: Mapping[str, Any] | None = None
) -> tuple[int, dict[str, Any], float, list[dict[str, Any]]]:
    """The finished study in ``output_dir``: ``(best trial number, its values, its score, every finished trial)``.

    Every finished trial's values are checked against ``space`` (default :data:`TEXT_SEARCH_SPACE`) and its score
    must be a macro-F1 in [0, 1]: a study that could not have come from this search is refused. The trials are the
    complete and the pruned ones (``state``; a pruned trial has no ``score`` and says where it stopped in
    ``pruned_at``), each with the optimisation steps (``train_steps``) and fold trainings (``trainings``) it ran;
    the best is a complete one.

    Raises:
        ValueError: ``study.db`` is no Optuna study, has no complete trial, or holds values outside the space.
    """
    space = dict(TEXT_SEARCH_SPACE if space is None else space)
    study = _open_study(output_dir)
    trials = [_trial_record(t) for t in study.trials if t.state in _FINISHED]
    complete = [t for t in trials if t["state"] == "complete"]
    if not complete:
        raise ValueError(f"{Path(output_dir) / 'study.db'} has no finished trial: run the search again")
    for trial in trials:
        problems = _outside_space(trial["values"], space)
        if trial["score"] is not None and not 0.0 <= trial["score"] <= 1.0:
            problems.append(f"score {trial['score']!r} (a macro-F1 is in 0..1)")
        if problems:
            raise ValueError(
                f"{Path(output_dir) / 'study.db'} trial {trial['trial']} holds {', '.join(problems)}: the study was "
                "not written by this search; delete it and run the search again"
            )
    best = max(complete, key=lambda t: t["score"])
    return best["trial"], best["values"], best["score"], trials


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
    training: ClassifierTrainingArguments | None = None,
    search_space: Mapping[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    tiny_kwargs: dict[str, Any] | None = None,
    weighted_loss: bool = True,
    sampler_seed: int | None = None,
    test_time: str = "refit",
    pruning: PruningSpec | None = None,
) -> optuna.Study:
    """Run (or continue) an Optuna study over the textual model's hyperparameters.

    Args:
        data: Training data (a ``DatasetDict`` with ``train``, or one split); only ``train`` is used.
        output_dir: Holds ``study.db`` and one folder per trial.
        backbone: As in :func:`hf_memotion.training.text.train_text_classifier`.
        problems: Problems the model predicts; the objective is their mean out-of-fold macro-F1.
        n_trials: Total trials wanted (the paper: 30); finished trials (complete or pruned) count toward it.
        n_splits: Folds per trial (the paper: 5).
        seed: Sampler and fold seed.
        training: Fixed settings (Table 5a); ``learning_rate``/``optimizer`` are searched.
        search_space: Replaces :data:`TEXT_SEARCH_SPACE` (same keys or a subset).
        model_kwargs: Fixed :class:`MemotionTextConfig` fields.
        tiny_kwargs: Sizes of a tiny backbone.
        weighted_loss: Inverse-frequency class weights (the paper's loss).
        sampler_seed: The TPE sampler's seed (default: ``seed``); trial ``N`` is sampled with ``sampler_seed + N``.
        test_time: ``"fold_average"``: each trial's fold models also predict the ``test`` split, so the winner's
            folds serve a ``test_time: fold_average`` run as they are (no fold trains twice).
        pruning: Stops hopeless trials with an Optuna pruner (:class:`~hf_memotion.training.run_specs.PruningSpec`;
            default: none, every trial runs all its folds). A pruned trial's finished folds stay in its folder.

    Trial ``N`` trains in ``output_dir/trial_N`` with exactly the settings :func:`trial_settings` gives, so a run of
    the best trial's settings reuses its folds.

    Returns:
        The study; ``study.best_params`` holds the best settings.
    """
    from hf_memotion.training.text import train_text_classifier

    splits = data if isinstance(data, datasets.DatasetDict) else datasets.DatasetDict({"train": data})
    with_test = test_time == "fold_average" and "test" in splits
    trial_data = datasets.DatasetDict({"train": splits["train"], **({"test": splits["test"]} if with_test else {})})
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    space = dict(TEXT_SEARCH_SPACE if search_space is None else search_space)
    base_training = training or ClassifierTrainingArguments()
    epochs = math.ceil(float(base_training.epochs))
    pruned = pruning is not None and pruning.enabled
    first_seed = seed if sampler_seed is None else sampler_seed
    study = _open_study(
        output,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=first_seed),
        pruner=make_pruner(pruning, n_splits=n_splits, epochs=epochs) if pruned else optuna.pruners.NopPruner(),
    )

    def run_trial(trial: optuna.Trial, reported: Sequence[int] = ()) -> None:
        values = _sample(trial, space)
        run_training, run_model = trial_settings(values, base_training, model_kwargs)
        reporter = TrialReporter(trial, epochs=epochs, reported=reported) if pruned else None
        try:
            result = train_text_classifier(
                trial_data,
                output / f"trial_{trial.number}",
                backbone=backbone,
                problems=problems,
                training=run_training,
                n_splits=n_splits,
                seed=seed,
                model_kwargs=run_model,
                tiny_kwargs=tiny_kwargs,
                refit=False,
                weighted_loss=weighted_loss,
                test_time=test_time,
                monitor=reporter,
            )
        except CandidatePruned:
            trial.set_user_attr("train_steps", reporter.train_steps)
            trial.set_user_attr("trainings", reporter.trainings)
            trial.set_user_attr("pruned_at", reporter.pruned_at)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            logger.info("trial %d: %s -> pruned at %s", trial.number, values, reporter.pruned_at)
            return
        score = result.mean_score(problems)
        trial.set_user_attr("train_steps", result.train_steps)
        trial.set_user_attr("trainings", len(result.fold_metrics))
        study.tell(trial, score)
        logger.info("trial %d: %s -> mean out-of-fold macro-F1 %.4f", trial.number, values, score)

    # a trial left running by a killed search (one search per folder) runs again under its number, with its values
    # (Optuna has no public way to reopen a RUNNING trial: Trial(study, trial_id) does, with the frozen trial's id)
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        logger.info("trial %d was cut off: running it again from its finished folds", stale.number)
        run_trial(optuna.trial.Trial(study, stale._trial_id), reported=list(stale.intermediate_values))
    while _finished_trials(study) < n_trials:
        study.sampler = optuna.samplers.TPESampler(seed=first_seed + len(study.trials))  # trial N: seed + N
        run_trial(study.ask())
    return study


def _finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=_FINISHED))
