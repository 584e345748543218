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
out-of-fold macro-F1 over the model's problems. With a model's ``pruning`` (:mod:`hf_memotion.training.pruning`)
hopeless candidates stop early: the grid by successive halving (its rungs in ``lr_<rate>/rung_<epochs>/``: the
first fold for that many epochs, on the schedule compressed to them), the study by an Optuna pruner; the winner is
the best candidate that ran every fold, and each candidate's record says whether it was pruned, where, and how
many optimisation steps it trained.

The winner's fold results are copied into ``models/<name>/folds``, where the model's own job finds them under the
same settings' key and only refits: no fold trains twice. The choice is recorded in ``report.json``
(``selection``), in the base model's card and its ``metrics.json``; a backbone split into per-problem models stays
one row of Table 7.

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
from hf_memotion.training.multimodal import train_multimodal_classifier
from hf_memotion.training.pruning import halving_rungs, rung_training, survivors
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

__all__ = [
    "adopt_folds",
    "candidate_jobs",
    "grid_progress",
    "model_job",
    "run_selection",
    "select_candidate",
    "train_with_selection",
]

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


def _rung_folder(output: Path, entry: ModelEntry, rate: float, epochs: int) -> Path:
    return _rate_folder(output, entry, rate) / f"rung_{epochs}"


def _grid_job(entry: ModelEntry, folder: Path, rate: float, common: Mapping[str, Any], rung: int = 0) -> TrainingJob:
    """A rate's job: every fold (``rung=0``), or a rung of that many epochs on the first fold."""
    training = entry.training_arguments(learning_rate=rate)
    arguments = {
        **common,
        **entry.spec.recipe_kwargs(),
        "training": rung_training(training, rung) if rung else training,
        "refit": False,
        "keep_model": False,
        **({"budget": {"folds": 1}} if rung else {}),
    }
    name = f"{entry.name}/lr_{rate:g}" + (f"/rung_{rung}" if rung else "")
    return TrainingJob(name, "vision", "train", str(folder), arguments, train_vision_classifier)


def grid_progress(
    entry: ModelEntry, output: str | Path, *, n_splits: int, seed: int, test_time: str = "refit"
) -> tuple[list[TrainingJob], list[dict[str, Any]]]:
    """Where a visual grid's selection stands: ``(the jobs of its next round, every rate's record so far)``.

    Exhaustive (no pruning): one round, every rate on every fold. Pruned by successive halving: a round per rung
    (every rate still in, on the first fold for the rung's epochs), then the survivors on every fold. Each round is
    read from the folders of the rounds before, so a killed selection resumes at the round it stopped in and makes
    the same choices. No job left: the records are final (``state``: ``"complete"`` or ``"pruned"``, ``score``:
    the survivors' mean out-of-fold macro-F1, ``rungs``: the first fold's score at each rung reached,
    ``train_steps``: optimisation steps trained, ``trainings``: fold trainings).
    """
    spec = entry.spec
    output = Path(output)
    common = _common(entry, n_splits, seed, test_time)
    rates = spec.learning_rates() or []
    problems = list(entry.problems)
    records = {
        rate: {
            "values": {"learning_rate": rate},
            "score": None,
            "state": "complete",
            "rungs": [],
            "train_steps": 0,
            "trainings": 0,
            "folder": str(_rate_folder(output, entry, rate)),
        }
        for rate in rates
    }
    alive = list(rates)
    pruning = spec.pruning
    if pruning is not None and pruning.enabled:
        epochs = float(entry.training_arguments(learning_rate=1.0).epochs)
        first = pruning.first_rung(epochs)
        for budget, _ in halving_rungs(
            len(rates), first_epochs=first, epochs=epochs, reduction_factor=pruning.reduction_factor
        ):
            folders = {rate: _rung_folder(output, entry, rate, budget) for rate in alive}
            runs = {rate: load_finished_run(folder, refit=False, load_model=False) for rate, folder in folders.items()}
            missing = [rate for rate, run in runs.items() if run is None]
            if missing:
                return [_grid_job(entry, folders[rate], rate, common, budget) for rate in missing], list(
                    records.values()
                )
            for rate, run in runs.items():
                score = run.mean_score(problems)
                records[rate]["rungs"].append({"epochs": budget, "score": score})
                records[rate]["train_steps"] += run.train_steps
                records[rate]["trainings"] += len(run.fold_metrics)
            kept = [
                alive[i] for i in survivors([runs[r].mean_score(problems) for r in alive], pruning.reduction_factor)
            ]
            for rate in alive:
                if rate not in kept:
                    records[rate]["state"] = "pruned"
                    records[rate]["pruned_at"] = records[rate]["rungs"][-1]
            alive = kept
    runs = {rate: load_finished_run(_rate_folder(output, entry, rate), refit=False, load_model=False) for rate in alive}
    missing = [rate for rate, run in runs.items() if run is None]
    if missing:
        return [_grid_job(entry, _rate_folder(output, entry, rate), rate, common) for rate in missing], list(
            records.values()
        )
    for rate, run in runs.items():
        records[rate]["score"] = run.mean_score(problems)
        records[rate]["train_steps"] += run.train_steps
        records[rate]["trainings"] += len(run.fold_metrics)
    return [], list(records.values())


def candidate_jobs(
    entry: ModelEntry, output: str | Path, *, n_splits: int, seed: int, test_time: str = "refit"
) -> list[TrainingJob]:
    """The next search jobs of one model (``[]`` when its config has no search, or its grid has finished).

    A visual grid's jobs are those of its next round (:func:`grid_progress`); a textual model's is its Optuna study.
    """
    spec = entry.spec
    output = Path(output)
    common = _common(entry, n_splits, seed, test_time)
    if spec.modality == "vision" and spec.learning_rates():
        return grid_progress(entry, output, n_splits=n_splits, seed=seed, test_time=test_time)[0]
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
            "pruning": spec.pruning,
        }
        folder = str(_search_folder(output, entry))
        return [TrainingJob(f"{entry.name}/search", "text", "search", folder, arguments, search_text_hyperparameters)]
    return []


def _searched(entry: ModelEntry) -> bool:
    spec = entry.spec
    return bool(spec.modality == "vision" and spec.learning_rates()) or (
        spec.modality == "text" and spec.search is not None
    )


def _pruning_name(entry: ModelEntry) -> str | None:
    pruning = entry.spec.pruning
    if pruning is None or not pruning.enabled:
        return None
    return (
        f"{pruning.method} (first rung {pruning.first_rung(entry.training_arguments(learning_rate=1.0).epochs)} "
        f"epochs, 1 in {pruning.reduction_factor} continues)"
    )


def select_candidate(
    entry: ModelEntry, output: str | Path, *, n_splits: int = 5, seed: int = 0, test_time: str = "refit"
) -> dict[str, Any] | None:
    """The winner of a model's finished search: its values, score, folder and every candidate (``None``: no search).

    Every candidate's record says whether it ran every fold (``state``) or was pruned (``pruned_at``), and how many
    optimisation steps (``train_steps``) and fold trainings (``trainings``) it ran; the choice's are the search's
    totals.
    """
    spec = entry.spec
    output = Path(output)
    if spec.modality == "vision" and spec.learning_rates():
        pending, candidates = grid_progress(entry, output, n_splits=n_splits, seed=seed, test_time=test_time)
        if pending:
            raise RuntimeError(
                f"{entry.name}: the learning-rate candidate(s) {[j.name for j in pending]} did not finish"
            )
        complete = [c for c in candidates if c["score"] is not None]
        best = max(complete, key=lambda c: c["score"])  # the first of equal scores: the grid's order decides
        method = "grid search of the learning rate"
    elif spec.modality == "text" and spec.search is not None:
        folder = _search_folder(output, entry)
        number, values, score, trials = study_results(folder, _space(entry))
        candidates = [{**t, "folder": str(folder / f"trial_{t['trial']}")} for t in trials]
        best = {"values": values, "score": score, "folder": str(folder / f"trial_{number}")}
        method = "Optuna search (TPE sampler)"
    else:
        return None
    pruning = _pruning_name(entry)
    if pruning:
        method += f", pruned by {pruning}"
    pruned = sum(c.get("state") == "pruned" for c in candidates)
    logger.info(
        "%s: %s chose %s (%s %.4f; %d of %d candidates pruned)",
        entry.name,
        method,
        best["values"],
        METRIC,
        best["score"],
        pruned,
        len(candidates),
    )
    return {
        "method": method,
        "metric": METRIC,
        "chosen": best["values"],
        "score": best["score"],
        "folder": best["folder"],
        "pruned": pruned,
        "train_steps": sum(int(c.get("train_steps", 0)) for c in candidates),
        "trainings": sum(int(c.get("trainings", 0)) for c in candidates),
        "candidates": [{k: v for k, v in c.items() if k not in ("folder", "trial")} for c in candidates],
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
    elif spec.modality == "multimodal":
        arguments["training"] = entry.training_arguments()
        train = train_multimodal_classifier
    else:
        arguments["training"], arguments["model_kwargs"] = trial_settings(
            chosen, entry.training_arguments(), spec.model
        )
        train = train_text_classifier
    if selection is not None:
        arguments["card_data"] = {"selection": {k: v for k, v in selection.items() if k != "folder"}}
    return TrainingJob(entry.name, spec.modality, "train", str(Path(output) / entry.name), arguments, train)


def run_selection(
    entries: Sequence[ModelEntry],
    output: str | Path,
    load: Callable[[], datasets.DatasetDict],
    *,
    n_splits: int,
    seed: int,
    test_time: str = "refit",
    jobs: JobsSpec | None = None,
    data: datasets.DatasetDict | None = None,
    alongside: Sequence[TrainingJob] = (),
) -> dict[str, dict[str, Any]]:
    """Run the searches of ``entries`` to their choices (:func:`select_candidate`); nothing is refit.

    Every model's first round runs at once (the textual studies, the grids' first rungs or all their rates, and the
    ``alongside`` jobs); then each pruned grid's next rounds, all grids side by side, until every grid is done.

    Returns:
        Per searched model its choice (models without a search are left out).
    """
    state = process_state()
    output = Path(output)
    jobs = jobs or JobsSpec()
    common = {"n_splits": int(n_splits), "seed": seed, "test_time": test_time}
    searched = [e for e in entries if _searched(e)]
    run_jobs([job for e in searched for job in candidate_jobs(e, output, **common)] + list(alongside), load, jobs, data)
    state.wait_for_everyone()
    while rounds := [job for e in searched if e.modality == "vision" for job in candidate_jobs(e, output, **common)]:
        run_jobs(rounds, load, jobs, data)  # the next rung of every pruned grid, or its survivors' folds
        state.wait_for_everyone()
    return {entry.name: select_candidate(entry, output, **common) for entry in searched}


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
    searched = [e for e in entries if _searched(e)]
    unsearched = [model_job(e, output, **common) for e in entries if not _searched(e)]
    selections = run_selection(searched, output, load, **common, jobs=jobs, data=data, alongside=unsearched)
    for entry in searched:
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
        if result.refit_test_probabilities is not None:
            result.refit_test_probabilities = with_aliases(result.refit_test_probabilities, entry.aliases)
        results[entry.name] = result
    return results, selections
