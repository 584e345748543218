"""Hyperparameter selection inside the ensemble recipe: the candidates of a base model, the winner, its folds kept.

Section 5.2 of the Memotion paper: each visual model's learning rate is the best of a 9-value grid (Table 4), each
textual model is tuned by 30 Optuna trials (Table 5b), all scored by 5-fold cross-validation, per problem. In a
config (:class:`~hf_memotion.training.run_specs.BaseModelSpec`):

- vision: ``training: {learning_rate: [1e-4, 2e-4, ...]}``: one candidate job per rate
  (``models/<name>/search/lr_<rate>/``, folds only);
- text: ``search: {trials: 30, space: ..., seed: ...}``: one Optuna study per model
  (``models/<name>/search/``, trial ``N`` in ``trial_N/``; trials run in order inside the study, as the TPE
  sampler learns from the finished ones: the seeded sequence is the same wherever the study runs).

Every candidate of a model is cross-validated on the same folds (same seed, same rows) and scored by the mean
out-of-fold macro-F1 over the model's problems. The winner's fold results are copied into ``models/<name>/folds``,
where the model's own job finds them under the same settings' key and only refits: no fold trains twice. The
choice is recorded in ``report.json`` (``selection``), in the base model's card and its ``metrics.json``; a
backbone split into per-problem models stays one row of Table 7.

Example:
    >>> from hf_memotion.training.run_specs import BaseModelSpec
    >>> spec = BaseModelSpec(name="cnn", modality="vision", training={"learning_rate": [0.01, 0.1]})
    >>> entry = {"name": "cnn", "modality": "vision", "problems": ["humour"], "spec": spec, "aliases": {}}
    >>> [job.name for job in candidate_jobs(entry, "/tmp/runs", n_splits=2, seed=0)]
    ['cnn/lr_0.01', 'cnn/lr_0.1']
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hf_memotion.training.jobs import TrainingJob
from hf_memotion.training.runs import load_finished_run

__all__ = ["adopt_folds", "candidate_jobs", "model_job", "select_candidate"]

logger = logging.getLogger(__name__)

METRIC = "mean out-of-fold macro-F1 over the model's problems"


def _common(entry: Mapping[str, Any], n_splits: int, seed: int, test_time: str) -> dict[str, Any]:
    return {"problems": list(entry["problems"]), "n_splits": int(n_splits), "seed": int(seed), "test_time": test_time}


def _search_folder(output: Path, entry: Mapping[str, Any]) -> Path:
    return output / entry["name"] / "search"


def _rate_folder(output: Path, entry: Mapping[str, Any], rate: float) -> Path:
    return _search_folder(output, entry) / f"lr_{rate:g}"


def candidate_jobs(
    entry: Mapping[str, Any], output: str | Path, *, n_splits: int, seed: int, test_time: str = "refit"
) -> list[TrainingJob]:
    """The search jobs of one model (``[]`` when its config has no search); ``output`` is the ``models/`` folder."""
    spec = entry["spec"]
    output = Path(output)
    common = _common(entry, n_splits, seed, test_time)
    if spec.modality == "vision" and spec.learning_rates():
        jobs = []
        for rate in spec.learning_rates():
            arguments = {
                **common,
                **spec.recipe_kwargs(),
                "training": spec.training_config(learning_rate=rate),
                "refit": False,
            }
            folder = str(_rate_folder(output, entry, rate))
            jobs.append(TrainingJob(f"{entry['name']}/lr_{rate:g}", "vision", "train", folder, arguments))
        return jobs
    if spec.modality == "text" and spec.search is not None:
        from hf_memotion.training.search import search_space_from_config

        search = spec.search
        arguments = {
            **common,
            "backbone": spec.backbone,
            "n_trials": int(search.trials),
            "training": spec.training_config(),
            "search_space": search_space_from_config(search.space) if search.space else None,
            "model_kwargs": spec.model,
            "tiny_kwargs": spec.tiny,
            "weighted_loss": spec.weighted_loss,
            "sampler_seed": search.seed,
        }
        return [TrainingJob(f"{entry['name']}/search", "text", "search", str(_search_folder(output, entry)), arguments)]
    return []


def select_candidate(entry: Mapping[str, Any], output: str | Path) -> dict[str, Any] | None:
    """The winner of a model's finished search: its values, score, folder and every candidate (``None``: no search)."""
    spec = entry["spec"]
    output = Path(output)
    problems = list(entry["problems"])
    if spec.modality == "vision" and spec.learning_rates():
        candidates = []
        for rate in spec.learning_rates():
            run = load_finished_run(_rate_folder(output, entry, rate), refit=False, load_model=False)
            if run is None:
                raise RuntimeError(f"{entry['name']}: the learning-rate candidate {rate:g} did not finish")
            score = sum(run.oof_scores[p] for p in problems) / len(problems)
            candidates.append({"values": {"learning_rate": rate}, "score": score, "folder": str(run.output_dir)})
        best = max(candidates, key=lambda c: c["score"])  # the first of equal scores: the grid's order decides
        method = "grid search of the learning rate"
    elif spec.modality == "text" and spec.search is not None:
        from hf_memotion.training.search import search_space_from_config, study_results

        folder = _search_folder(output, entry)
        space = search_space_from_config(spec.search.space) if spec.search.space else None
        number, values, score, trials = study_results(folder, space)
        candidates = [
            {"values": t["values"], "score": t["score"], "folder": str(folder / f"trial_{t['trial']}")} for t in trials
        ]
        best = {"values": values, "score": score, "folder": str(folder / f"trial_{number}")}
        method = "Optuna search (TPE sampler)"
    else:
        return None
    logger.info("%s: %s chose %s (%s %.4f)", entry["name"], method, best["values"], METRIC, best["score"])
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
    entry: Mapping[str, Any],
    output: str | Path,
    *,
    n_splits: int,
    seed: int,
    test_time: str = "refit",
    selection: Mapping[str, Any] | None = None,
) -> TrainingJob:
    """The job of a model itself (folds and refit) in ``models/<name>/``, with its search's choice if it had one."""
    spec = entry["spec"]
    arguments = {**_common(entry, n_splits, seed, test_time), **spec.recipe_kwargs()}
    chosen = dict((selection or {}).get("chosen") or {})
    if spec.modality == "vision":
        arguments["training"] = spec.training_config(**chosen)
    else:
        from hf_memotion.training.search import trial_settings

        arguments["training"], arguments["model_kwargs"] = trial_settings(chosen, spec.training_config(), spec.model)
    if selection is not None:
        arguments["card_data"] = {"selection": {k: v for k, v in selection.items() if k != "folder"}}
    return TrainingJob(entry["name"], spec.modality, "train", str(Path(output) / entry["name"]), arguments)
