"""Hyperparameter selection of the base models: each member's search, the winner, its folds kept, the refit.

This is the one selection path: the ensemble recipe (``scripts/train.py``) and the member runs
(``scripts/train_text.py``, ``scripts/train_vision.py``, :mod:`hf_memotion.recipe.member_runs`) all call
:func:`train_with_selection`. A member searches when its family's section has a ``search:``
(:mod:`hf_memotion.families.search`: a learning-rate grid or an Optuna study); the search gives its next jobs and,
once they have run, its choice. Every job is resumable: its folder is its checkpoint.

The winner's fold results are copied into ``models/<name>/folds``, where the model's own job finds them under the
same run key and only refits: no fold trains twice. The choice is recorded in ``report.json`` (``selection``), in
the base model's card and its ``metrics.json``; a backbone split into per-problem models stays one row of Table 7.

Examples:
    >>> from hf_memotion.families import ModelEntry, MemberRun, parse_member
    >>> spec = parse_member({"name": "cnn", "family": "vision", "search": {"learning_rate": [0.01, 0.1]}})
    >>> job = model_job(ModelEntry.of(spec), "/tmp/runs", MemberRun(n_splits=2),
    ...                 selection={"chosen": {"learning_rate": 0.1}})
    >>> job.name, job.entry.spec.training.learning_rate, job.options.keep_model
    ('cnn', 0.1, False)
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from hf_memotion.distributed import process_state
from hf_memotion.ensemble.stacking import with_aliases
from hf_memotion.families import MemberRun, ModelEntry
from hf_memotion.recipe.specs import JobsSpec
from hf_memotion.training.jobs import TrainingJob, run_jobs
from hf_memotion.training.runs import ClassifierRunResult, load_finished_run

__all__ = ["adopt_folds", "model_job", "run_selection", "train_with_selection"]

logger = logging.getLogger(__name__)


def _candidates(run: MemberRun) -> MemberRun:
    """A search candidate's options: the run's folds, seed and test time; no refit, nothing kept in memory."""
    return dataclasses.replace(run, refit=False, keep_model=False, card_data=None, monitor=None)


def _train(data: datasets.DatasetDict, folder: str, entry: ModelEntry, run: MemberRun) -> None:
    """A model job's action: its family trains it (a module-level function, so a Ray worker gets it by name)."""
    entry.family.train(data, folder, entry, run)


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
    entry: ModelEntry, output: str | Path, run: MemberRun, selection: Mapping[str, Any] | None = None
) -> TrainingJob:
    """The job of a model itself (folds and refit) in ``<output>/<name>/``, with its search's choice if it had one."""
    chosen = dict((selection or {}).get("chosen") or {})
    card = {"selection": {k: v for k, v in selection.items() if k != "folder"}} if selection is not None else None
    options = dataclasses.replace(run, refit=True, keep_model=False, card_data=card, monitor=None)
    member = entry.with_values(chosen) if chosen else entry
    return TrainingJob(entry.name, str(Path(output) / entry.name), member, options, _train)


def run_selection(
    entries: Sequence[ModelEntry],
    output: str | Path,
    load: Callable[[], datasets.DatasetDict],
    run: MemberRun,
    *,
    jobs: JobsSpec | None = None,
    data: datasets.DatasetDict | None = None,
    alongside: Sequence[TrainingJob] = (),
) -> dict[str, dict[str, Any]]:
    """Run the searches of ``entries`` to their choices; nothing is refit.

    Every model's first round runs at once (the studies, the grids' first rungs or all their rates, and the
    ``alongside`` jobs); then each pruned grid's next rounds, all side by side, until every search is done.

    Returns:
        Per searched model its choice (models without a search are left out).
    """
    state = process_state()
    jobs = jobs or JobsSpec()
    options = _candidates(run)
    searched = [e for e in entries if e.spec.search is not None]
    first = [job for e in searched for job in e.spec.search.next_jobs(e, output, options)]
    run_jobs(first + list(alongside), load, jobs, data)
    state.wait_for_everyone()
    while rounds := [job for e in searched for job in e.spec.search.next_jobs(e, output, options)]:
        run_jobs(rounds, load, jobs, data)  # the next rung of every pruned grid, or its survivors' folds
        state.wait_for_everyone()
    return {e.name: e.spec.search.select(e, output, options) for e in searched}


def train_with_selection(
    entries: Sequence[ModelEntry],
    output: str | Path,
    load: Callable[[], datasets.DatasetDict],
    run: MemberRun,
    *,
    jobs: JobsSpec | None = None,
    data: datasets.DatasetDict | None = None,
) -> tuple[dict[str, ClassifierRunResult], dict[str, dict[str, Any]]]:
    """Train every model, its search first where it has one; results read back from the folders.

    The search candidates run first (with the models that have no search, side by side); each searched model's
    winner is chosen, its folds copied into the model's folder (:func:`adopt_folds`), and the model refit with the
    winner's values.

    Args:
        entries: The models (:func:`~hf_memotion.families.expand_models`).
        output: Holds one folder per model (``<output>/<name>/``, its search in ``<output>/<name>/search/``).
        load: Loads the data (what a Ray worker calls; picklable for ``jobs.engine: ray``).
        run: Folds, seed and test time of every model and candidate.
        jobs: The engine (default: one job after another in this process).
        data: The data already loaded here.

    Returns:
        ``(results, selections)``: per model name its :class:`~hf_memotion.training.runs.ClassifierRunResult`
        (probabilities with its aliases added; the model itself is not loaded), and per searched model the choice.
    """
    state = process_state()
    output = Path(output)
    jobs = jobs or JobsSpec()
    searched = [e for e in entries if e.spec.search is not None]
    unsearched = [model_job(e, output, run) for e in entries if e.spec.search is None]
    selections = run_selection(searched, output, load, run, jobs=jobs, data=data, alongside=unsearched)
    for entry in searched:
        if state.is_main_process:
            adopt_folds(selections[entry.name]["folder"], output / entry.name)
    state.wait_for_everyone()
    run_jobs([model_job(e, output, run, selections[e.name]) for e in searched], load, jobs, data)
    state.wait_for_everyone()
    results = {}
    for entry in entries:
        result = load_finished_run(output / entry.name, refit=True, test_time=run.test_time)
        if result is None:
            raise RuntimeError(f"model {entry.name} did not finish: see the log of its job")
        result.oof_probabilities = with_aliases(result.oof_probabilities, entry.aliases)
        if result.test_probabilities is not None:
            result.test_probabilities = with_aliases(result.test_probabilities, entry.aliases)
        if result.refit_test_probabilities is not None:
            result.refit_test_probabilities = with_aliases(result.refit_test_probabilities, entry.aliases)
        results[entry.name] = result
    return results, selections
