"""Hyperparameter selection of the base models: the candidates of a model, the winner, its folds kept.

Section 5.2 of the Memotion paper: each visual model's learning rate is the best of a 9-value grid (Table 4), each
textual model is tuned by 30 Optuna trials (Table 5b), all scored by 5-fold cross-validation, per problem. This is
the one selection path: the ensemble recipe (``scripts/train.py``) and the base-model runs (``scripts/train_text.py``,
``scripts/train_vision.py``, :mod:`hf_memotion.training.experiments`) all call :func:`train_with_selection`. In a
config (:class:`~hf_memotion.training.run_specs.BaseModelSpec`):

- vision: ``training: {learning_rate: [1e-4, 2e-4, ...]}``: one candidate job per rate
  (``models/<name>/search/lr_<rate>/``, folds only);
- text: ``search: {n_trials: 30, space: ..., seed: ...}``: one Optuna study per model
  (``models/<name>/search/``, trial ``N`` in ``trial_N/``; trials run in order inside the study, as the TPE
  sampler learns from the finished ones: the seeded sequence is the same wherever the study runs).

Every candidate of a model is cross-validated on the same folds (same seed, same rows) and scored by the mean
out-of-fold macro-F1 over the model's problems. The winner's fold results are copied into ``models/<name>/folds``,
where the model's own job finds them under the same settings' key and only refits: no fold trains twice. The
choice is recorded in ``report.json`` (``selection``), in the base model's card and its ``metrics.json``; a
backbone split into per-problem models stays one row of Table 7.

Examples:
    >>> from hf_memotion.training.run_specs import BaseModelSpec, ModelEntry
    >>> spec = BaseModelSpec(name="cnn", modality="vision", training={"learning_rate": [0.01, 0.1]})
    >>> entry = ModelEntry("cnn", ["humour"], "cnn", spec)
    >>> [job.name for job in candidate_jobs(entry, "/tmp/runs", n_splits=2, seed=0)]
    ['cnn/lr_0.01', 'cnn/lr_0.1']
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from hf_memotion.distributed import process_state
from hf_memotion.models.ensemble.stacking import with_aliases
from hf_memotion.training.jobs import TrainingJob, run_jobs
from hf_memotion.training.run_specs import JobsSpec, ModelEntry
from hf_memotion.training.runs import ClassifierRunResult, load_finished_run
from hf_memotion.training.search import (
    search_space_from_config,
    search_text_hyperparameters,
    study_results,
    trial_settings,
)
from hf_memotion.training.text import train_text_classifier
from hf_memotion.training.vision import train_vision_classifier

__all__ = ["adopt_folds", "candidate_jobs", "model_job", "select_candidate", "train_with_selection"]

logger = logging.getLogger(__name__)

METRIC = "mean out-of-fold macro-F1 over the model's problems"


def _common(entry: ModelEntry, n_splits: int, seed: int, test_time: str) -> dict[str, Any]:
    return {"problems": list(entry.problems), "n_splits": int(n_splits), "seed": int(seed), "test_time": test_time}


def _search_folder(output: Path, entry: ModelEntry) -> Path:
    return output / entry.name / "search"


def _rate_folder(output: Path, entry: ModelEntry, rate: float) -> Path:
    return _search_folder(output, entry) / f"lr_{rate:g}"


def _space(entry: ModelEntry) -> dict[str, Any] | None:
    return search_space_from_config(entry.spec.search.space) if entry.spec.search.space else None


def candidate_jobs(
    entry: ModelEntry, output: str | Path, *, n_splits: int, seed: int, test_time: str = "refit"
) -> list[TrainingJob]:
    """The search jobs of one model (``[]`` when its config has no search); ``output`` holds the models' folders."""
    spec = entry.spec
    output = Path(output)
    common = _common(entry, n_splits, seed, test_time)
    if spec.modality == "vision" and spec.learning_rates():
        jobs = []
        for rate in spec.learning_rates():
            arguments = {
                **common,
                **spec.recipe_kwargs(),
                "training": entry.training_arguments(learning_rate=rate),
                "refit": False,
                "keep_model": False,
            }
            folder = str(_rate_folder(output, entry, rate))
            jobs.append(
                TrainingJob(f"{entry.name}/lr_{rate:g}", "vision", "train", folder, arguments, train_vision_classifier)
            )
        return jobs
    if spec.modality == "text" and spec.search is not None:
        arguments = {
            **common,
            "backbone": spec.backbone,
            "n_trials": int(spec.search.n_trials),
            "training": entry.training_arguments(),
            "search_space": _space(entry),
            "model_kwargs": spec.model,
            "tiny_kwargs": spec.tiny,
            "weighted_loss": spec.weighted_loss,
            "sampler_seed": spec.search.seed,
        }
        folder = str(_search_folder(output, entry))
        return [TrainingJob(f"{entry.name}/search", "text", "search", folder, arguments, search_text_hyperparameters)]
    return []


def select_candidate(entry: ModelEntry, output: str | Path) -> dict[str, Any] | None:
    """The winner of a model's finished search: its values, score, folder and every candidate (``None``: no search)."""
    spec = entry.spec
    output = Path(output)
    problems = list(entry.problems)
    if spec.modality == "vision" and spec.learning_rates():
        candidates = []
        for rate in spec.learning_rates():
            run = load_finished_run(_rate_folder(output, entry, rate), refit=False, load_model=False)
            if run is None:
                raise RuntimeError(f"{entry.name}: the learning-rate candidate {rate:g} did not finish")
            score = sum(run.oof_scores[p] for p in problems) / len(problems)
            candidates.append({"values": {"learning_rate": rate}, "score": score, "folder": str(run.output_dir)})
        best = max(candidates, key=lambda c: c["score"])  # the first of equal scores: the grid's order decides
        method = "grid search of the learning rate"
    elif spec.modality == "text" and spec.search is not None:
        folder = _search_folder(output, entry)
        number, values, score, trials = study_results(folder, _space(entry))
        candidates = [
            {"values": t["values"], "score": t["score"], "folder": str(folder / f"trial_{t['trial']}")} for t in trials
        ]
        best = {"values": values, "score": score, "folder": str(folder / f"trial_{number}")}
        method = "Optuna search (TPE sampler)"
    else:
        return None
    logger.info("%s: %s chose %s (%s %.4f)", entry.name, method, best["values"], METRIC, best["score"])
    return {
        "method": method,
        "metric": METRIC,
        "chosen": best["values"],
        "score": best["score"],
        "folder": best["folder"],
        "candidates": [{"values": c["values"], "score": c["score"]} for c in candidates],
    }


def adopt_folds(source: str | Path, destination: str | Path) -> int:
    """Copy a finished run's fold results (``folds/fold_K/``) into another run folder; returns how many.

    The destination's folds of the same numbers are replaced (a fold is reused only under its settings' key, so
    folds of another candidate would be trained again, not mixed in).
    """
    copied = 0
    for fold in sorted((Path(source) / "folds").glob("fold_*")):
        if not (fold / "metrics.json").is_file():
            continue
        target = Path(destination) / "folds" / fold.name
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(fold, target, ignore=shutil.ignore_patterns("checkpoints"))
        copied += 1
    return copied


def model_job(
    entry: ModelEntry,
    output: str | Path,
    *,
    n_splits: int,
    seed: int,
    test_time: str = "refit",
    selection: Mapping[str, Any] | None = None,
) -> TrainingJob:
    """The job of a model itself (folds and refit) in ``<output>/<name>/``, with its search's choice if it had one."""
    spec = entry.spec
    arguments = {**_common(entry, n_splits, seed, test_time), **spec.recipe_kwargs(), "keep_model": False}
    chosen = dict((selection or {}).get("chosen") or {})
    if spec.modality == "vision":
        arguments["training"] = entry.training_arguments(**chosen)
        train = train_vision_classifier
    else:
        arguments["training"], arguments["model_kwargs"] = trial_settings(
            chosen, entry.training_arguments(), spec.model
        )
        train = train_text_classifier
    if selection is not None:
        arguments["card_data"] = {"selection": {k: v for k, v in selection.items() if k != "folder"}}
    return TrainingJob(entry.name, spec.modality, "train", str(Path(output) / entry.name), arguments, train)


def train_with_selection(
    entries: Sequence[ModelEntry],
    output: str | Path,
    load: Callable[[], datasets.DatasetDict],
    *,
    n_splits: int,
    seed: int,
    test_time: str = "refit",
    jobs: JobsSpec | None = None,
    data: datasets.DatasetDict | None = None,
) -> tuple[dict[str, ClassifierRunResult], dict[str, dict[str, Any]]]:
    """Train every model, its search first where it has one; results read back from the folders.

    The search candidates run first (with the models that have no search, side by side); each searched model's
    winner is chosen (:func:`select_candidate`), its folds copied into the model's folder (:func:`adopt_folds`),
    and the model refit with the winner's settings. Every job is resumable: its folder is its checkpoint.

    Args:
        entries: The models (:func:`~hf_memotion.training.run_specs.expand_models`).
        output: Holds one folder per model (``<output>/<name>/``, its search in ``<output>/<name>/search/``).
        load: Loads the data (what a Ray worker calls; picklable for ``jobs.engine: ray``).
        n_splits: Folds of every model and candidate.
        seed: Seed of folds and training.
        test_time: ``"refit"`` or ``"fold_average"`` (see :func:`~hf_memotion.training.runs.run_classifier`).
        jobs: The engine (default: one job after another in this process).
        data: The data already loaded here.

    Returns:
        ``(results, selections)``: per model name its :class:`~hf_memotion.training.runs.ClassifierRunResult`
        (probabilities with its aliases added; the model itself is not loaded), and per searched model the choice.
    """
    state = process_state()
    output = Path(output)
    jobs = jobs or JobsSpec()
    common = {"n_splits": int(n_splits), "seed": seed, "test_time": test_time}
    candidates = {e.name: candidate_jobs(e, output, **common) for e in entries}
    searched = [e for e in entries if candidates[e.name]]
    first = [job for e in searched for job in candidates[e.name]]
    first += [model_job(e, output, **common) for e in entries if not candidates[e.name]]  # unsearched meanwhile
    run_jobs(first, load, jobs, data)
    state.wait_for_everyone()
    selections = {}
    for entry in searched:
        selections[entry.name] = select_candidate(entry, output)
        if state.is_main_process:
            adopt_folds(selections[entry.name]["folder"], output / entry.name)
    state.wait_for_everyone()
    run_jobs([model_job(e, output, selection=selections[e.name], **common) for e in searched], load, jobs, data)
    state.wait_for_everyone()
    results = {}
    for entry in entries:
        result = load_finished_run(output / entry.name, refit=True, load_model=False, test_time=test_time)
        if result is None:
            raise RuntimeError(f"model {entry.name} did not finish: see the log of its job")
        result.oof_probabilities = with_aliases(result.oof_probabilities, entry.aliases)
        if result.test_probabilities is not None:
            result.test_probabilities = with_aliases(result.test_probabilities, entry.aliases)
        results[entry.name] = result
    return results, selections
