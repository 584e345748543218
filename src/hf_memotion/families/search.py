"""A member's candidates, written ``search:`` in its YAML section: a learning-rate grid or an Optuna study.

Section 5.2 of the Memotion paper: each visual model's learning rate is the best of a 9-value grid (Table 4), each
textual model is tuned by 30 Optuna trials (Table 5b), all scored by k-fold cross-validation, per problem. A family
says which search its members take (its spec's ``search`` field); both work for any family, since a candidate is
the member's spec with the candidate's values (:meth:`~hf_memotion.families.base.MemberSpec.with_values`) trained by
its family:

- :class:`GridSpec`, ``search: {learning_rate: [1e-4, 2e-4, ...]}``: one candidate job per rate
  (``models/<name>/search/lr_<rate>/``, folds only); pruned by successive halving (rungs in
  ``rung_<epochs>/lr_<rate>/``: the first fold for that many epochs, on the schedule compressed to them; a run's
  folder never holds another run's). Written
  by hand because the grid is not an Optuna study (its candidates are fixed, and its rungs are jobs that run side by
  side under Ray);
- :class:`StudySpec`, ``search: {n_trials: 30, space: ..., seed: ...}``: one Optuna study per model
  (``models/<name>/search/``, trial ``N`` in ``trial_N/``; trials run in order inside the study, as the TPE
  sampler learns from the finished ones: the seeded sequence is the same wherever the study runs), pruned by an
  Optuna pruner.

Every candidate of a model is cross-validated on the same folds (same seed, same rows) and scored by the mean
out-of-fold macro-F1 over the model's problems; the winner is the best candidate that ran every fold, and each
candidate's record says whether it was pruned, where, and how many optimisation steps it trained.

Examples:
    >>> from hf_memotion.families import ModelEntry, MemberRun, parse_member
    >>> spec = parse_member({"name": "cnn", "family": "vision", "search": {"learning_rate": [0.01, 0.1]}})
    >>> entry = ModelEntry("cnn", ["humour"], "cnn", spec)
    >>> [job.name for job in spec.search.next_jobs(entry, "/tmp/hf_memotion_doc_grid", MemberRun(refit=False))]
    ['cnn/lr_0.01', 'cnn/lr_0.1']
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hf_memotion.folder_safety import check_regular_file
from hf_memotion.training.cross_validation import CandidatePruned
from hf_memotion.training.jobs import TrainingJob
from hf_memotion.training.pruning import (
    PruningSpec,
    TrialReporter,
    grid_cost,
    halving_rungs,
    make_pruner,
    rung_training,
    study_cost,
    survivors,
)
from hf_memotion.training.runs import load_finished_run

if TYPE_CHECKING:
    import datasets
    import optuna

    from hf_memotion.families.base import MemberRun, ModelEntry

__all__ = ["METRIC", "GridSpec", "StudySpec", "run_study", "study_results"]

logger = logging.getLogger(__name__)

METRIC = "mean out-of-fold macro-F1 over the model's problems"


def _search_folder(output: str | os.PathLike, entry: ModelEntry) -> Path:
    return Path(output) / entry.name / "search"


def _train(data: datasets.DatasetDict, folder: str, entry: ModelEntry, run: MemberRun) -> None:
    """A candidate job's action: its family trains it (a module-level function, so a Ray worker gets it by name)."""
    entry.family.train(data, folder, entry, run)


def _pruning_name(pruning: PruningSpec | None, epochs: float) -> str | None:
    if pruning is None or not pruning.enabled:
        return None
    return (
        f"{pruning.method} (first rung {pruning.first_rung(epochs)} epochs, 1 in {pruning.reduction_factor} continues)"
    )


def _choice(method: str, best: Mapping[str, Any], candidates: list[dict[str, Any]], entry: ModelEntry) -> dict:
    """What a finished search records: its method, the winner and every candidate (without their folders)."""
    pruning = _pruning_name(entry.spec.pruning, entry.spec.training.epochs)
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


# ------------------------------------------------------------------------------------------------ the grid


@dataclass
class GridSpec:
    """``search: {learning_rate: [...]}``: each rate cross-validated, the best mean out-of-fold macro-F1 kept.

    Attributes:
        learning_rate: The rates (the paper's visual grid: 1e-4 ... 5e-2, nine values).

    Examples:
        >>> GridSpec(learning_rate=[0.01, 0.1]).count()
        2
    """

    pruning_methods: ClassVar[tuple[str, ...]] = ("none", "successive_halving")
    method: ClassVar[str] = "grid search of the learning rate"

    learning_rate: list[float] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.learning_rate or any(float(v) <= 0 for v in self.learning_rate):
            raise ValueError(f"search.learning_rate needs positive values, got {self.learning_rate!r}")
        self.learning_rate = [float(v) for v in self.learning_rate]

    @property
    def enabled(self) -> bool:
        """A grid always has candidates."""
        return True

    def count(self) -> int:
        """Its candidates."""
        return len(self.learning_rate)

    def _job(self, entry: ModelEntry, folder: Path, rate: float, run: MemberRun, rung: int = 0) -> TrainingJob:
        """A rate's job: every fold (``rung=0``), or a rung of that many epochs on the first fold."""
        candidate = entry.with_values({"learning_rate": rate})
        if rung:
            training = rung_training(candidate.spec.training, rung)
            candidate = dataclasses.replace(candidate, spec=dataclasses.replace(candidate.spec, training=training))
            run = dataclasses.replace(run, budget_folds=1)
        name = f"{entry.name}/" + (f"rung_{rung}/" if rung else "") + f"lr_{rate:g}"
        return TrainingJob(name, str(folder), candidate, run, _train, kind="search")

    def progress(self, entry: ModelEntry, output: str | Path, run: MemberRun) -> tuple[list[TrainingJob], list[dict]]:
        """Where the grid stands: ``(the jobs of its next round, every rate's record so far)``.

        Exhaustive (no pruning): one round, every rate on every fold. Pruned by successive halving: a round per
        rung (every rate still in, on the first fold for the rung's epochs), then the survivors on every fold. Each
        round is read from the folders of the rounds before, so a killed selection resumes at the round it stopped
        in and makes the same choices. No job left: the records are final (``state``: ``"complete"`` or
        ``"pruned"``, ``score``: the survivors' mean out-of-fold macro-F1, ``rungs``: the first fold's score at each
        rung reached, ``train_steps``: optimisation steps trained, ``trainings``: fold trainings).
        """
        search = _search_folder(output, entry)
        problems = list(entry.problems)
        records = {
            rate: {
                "values": {"learning_rate": rate},
                "score": None,
                "state": "complete",
                "rungs": [],
                "train_steps": 0,
                "trainings": 0,
                "folder": str(search / f"lr_{rate:g}"),
            }
            for rate in self.learning_rate
        }
        alive = list(self.learning_rate)
        pruning = entry.spec.pruning
        if pruning is not None and pruning.enabled:
            epochs = float(entry.spec.training.epochs)
            for budget, _ in halving_rungs(
                self.count(),
                first_epochs=pruning.first_rung(epochs),
                epochs=epochs,
                reduction_factor=pruning.reduction_factor,
            ):
                folders = {rate: search / f"rung_{budget}" / f"lr_{rate:g}" for rate in alive}
                runs = {r: load_finished_run(f, refit=False, load_model=False) for r, f in folders.items()}
                missing = [rate for rate, found in runs.items() if found is None]
                if missing:
                    return [self._job(entry, folders[r], r, run, budget) for r in missing], list(records.values())
                for rate, found in runs.items():
                    records[rate]["rungs"].append({"epochs": budget, "score": found.mean_score(problems)})
                    records[rate]["train_steps"] += found.train_steps
                    records[rate]["trainings"] += len(found.fold_metrics)
                scores = [runs[r].mean_score(problems) for r in alive]
                kept = [alive[i] for i in survivors(scores, pruning.reduction_factor)]
                for rate in alive:
                    if rate not in kept:
                        records[rate]["state"] = "pruned"
                        records[rate]["pruned_at"] = records[rate]["rungs"][-1]
                alive = kept
        folders = {rate: search / f"lr_{rate:g}" for rate in alive}
        runs = {rate: load_finished_run(folder, refit=False, load_model=False) for rate, folder in folders.items()}
        missing = [rate for rate, found in runs.items() if found is None]
        if missing:
            return [self._job(entry, folders[r], r, run) for r in missing], list(records.values())
        for rate, found in runs.items():
            records[rate]["score"] = found.mean_score(problems)
            records[rate]["train_steps"] += found.train_steps
            records[rate]["trainings"] += len(found.fold_metrics)
        return [], list(records.values())

    def next_jobs(self, entry: ModelEntry, output: str | Path, run: MemberRun) -> list[TrainingJob]:
        """The jobs of the grid's next round (``[]``: it has finished)."""
        return self.progress(entry, output, run)[0]

    def select(self, entry: ModelEntry, output: str | Path, run: MemberRun) -> dict[str, Any]:
        """The winner of the finished grid, its folder and every candidate's record."""
        pending, candidates = self.progress(entry, output, run)
        if pending:
            raise RuntimeError(
                f"{entry.name}: the learning-rate candidate(s) {[j.name for j in pending]} did not finish"
            )
        complete = [c for c in candidates if c["score"] is not None]
        best = max(complete, key=lambda c: c["score"])  # the first of equal scores: the grid's order decides
        return _choice(self.method, best, candidates, entry)

    def cost(self, pruning: PruningSpec | None, *, n_splits: int, epochs: int) -> dict[str, float]:
        """Fold-epochs and fold trainings of the selection, both ways (``--plan``): exact for a grid."""
        return grid_cost(pruning, candidates=self.count(), n_splits=n_splits, epochs=epochs)


# ------------------------------------------------------------------------------------------------ the study


@dataclass
class StudySpec:
    """``search: {n_trials: 30}``: an Optuna study over the family's space, run per model under its own folds.

    Attributes:
        n_trials: Trials per study (the paper: 30); finished trials count (a stopped search continues); 0: no
            search.
        space: Replaces the family's space (:meth:`~hf_memotion.families.base.ModelFamily.study_space`: Table 5b for
            the textual family), with the same keys or a subset; a range is ``[low, high]``.
        seed: The sampler's seed (default: the run's).

    Examples:
        >>> StudySpec(n_trials=0).enabled
        False
    """

    pruning_methods: ClassVar[tuple[str, ...]] = ("none", "successive_halving", "hyperband", "median")
    method: ClassVar[str] = "Optuna search (TPE sampler)"

    n_trials: int = 30
    space: dict[str, Any] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if int(self.n_trials) < 0:
            raise ValueError(f"search.n_trials must be 0 (no search) or more, got {self.n_trials!r}")

    @property
    def enabled(self) -> bool:
        """Whether any trial is asked for."""
        return int(self.n_trials) > 0

    def count(self) -> int:
        """Its candidates (trials)."""
        return int(self.n_trials)

    def resolved_space(self, entry: ModelEntry) -> dict[str, Any]:
        """The space searched: ``space`` over the family's (YAML lists of its ranges become ranges).

        Examples:
            >>> from hf_memotion.families import ModelEntry, parse_member
            >>> spec = parse_member({"search": {"space": {"learning_rate": [1e-5, 1e-3], "lstm_layers": [1, 2]}}})
            >>> spec.search.resolved_space(ModelEntry.of(spec))
            {'learning_rate': (1e-05, 0.001), 'lstm_layers': [1, 2]}
        """
        default = entry.family.study_space()
        if default is None:
            raise ValueError(f"model {entry.name!r}: the {entry.spec.family} family has no Optuna search space")
        if self.space is None:
            return dict(default)
        unknown = sorted(set(self.space) - set(default))
        if unknown:
            raise ValueError(f"unknown search space key(s) {unknown}; valid: {sorted(default)}")
        return {k: tuple(v) if isinstance(default[k], tuple) else list(v) for k, v in self.space.items()}

    def next_jobs(self, entry: ModelEntry, output: str | Path, run: MemberRun) -> list[TrainingJob]:
        """The study's job, while it has fewer finished trials than ``n_trials`` (``[]``: it has finished)."""
        folder = _search_folder(output, entry)
        if (folder / "study.db").is_file():
            finished = _open_study(folder).get_trials(deepcopy=False, states=_finished_states())
            if len(finished) >= self.count():
                return []
        return [TrainingJob(f"{entry.name}/search", str(folder), entry, run, run_study, kind="search")]

    def select(self, entry: ModelEntry, output: str | Path, run: MemberRun) -> dict[str, Any]:
        """The best trial of the finished study, its folder and every trial's record."""
        folder = _search_folder(output, entry)
        number, values, score, trials = study_results(folder, self.resolved_space(entry))
        candidates = [{**t, "folder": str(folder / f"trial_{t['trial']}")} for t in trials]
        best = {"values": values, "score": score, "folder": str(folder / f"trial_{number}")}
        return _choice(self.method, best, candidates, entry)

    def cost(self, pruning: PruningSpec | None, *, n_splits: int, epochs: int) -> dict[str, float]:
        """Fold-epochs and fold trainings of the selection, both ways (``--plan``): an expectation for a study."""
        return study_cost(pruning, candidates=self.count(), n_splits=n_splits, epochs=epochs)


#: The trials that count toward ``n_trials``: those that ran every fold and those a pruner stopped.
def _finished_states() -> tuple:
    import optuna

    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _open_study(output_dir: str | os.PathLike, **create_options: Any) -> optuna.Study:
    """The study of ``output_dir/study.db``; a file that is no Optuna study is one clear error.

    With ``create_options`` (``direction``, ``sampler``) the study is created when missing, else it must exist.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

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
    import optuna

    pruned = trial.state == optuna.trial.TrialState.PRUNED
    record = {
        "trial": trial.number,
        "values": dict(trial.params),
        "score": float(trial.value) if trial.state == optuna.trial.TrialState.COMPLETE else None,
        "state": "pruned" if pruned else "complete",
        "train_steps": int(trial.user_attrs.get("train_steps", 0)),
        "trainings": int(trial.user_attrs.get("trainings", 0)),
    }
    if pruned:
        record["pruned_at"] = trial.user_attrs.get("pruned_at")
    return record


def study_results(
    output_dir: str | os.PathLike, space: Mapping[str, Any]
) -> tuple[int, dict[str, Any], float, list[dict[str, Any]]]:
    """The finished study in ``output_dir``: ``(best trial number, its values, its score, every finished trial)``.

    Every finished trial's values are checked against ``space`` and its score must be a macro-F1 in [0, 1]: a study
    that could not have come from this search is refused. The trials are the complete and the pruned ones
    (``state``; a pruned trial has no ``score`` and says where it stopped in ``pruned_at``), each with the
    optimisation steps (``train_steps``) and fold trainings (``trainings``) it ran; the best is a complete one.

    Raises:
        ValueError: ``study.db`` is no Optuna study, has no complete trial, or holds values outside the space.
    """
    study = _open_study(output_dir)
    trials = [_trial_record(t) for t in study.trials if t.state in _finished_states()]
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


def run_study(data: datasets.DatasetDict, output_dir: str | os.PathLike, entry: ModelEntry, run: MemberRun) -> Any:
    """Run (or continue) the Optuna study of ``entry``'s ``search:`` (a :class:`StudySpec`).

    Each trial trains ``run.n_splits`` fold models (no refit) with the sampled values over the entry's spec and is
    scored by their mean out-of-fold macro-F1 over the entry's problems. The study lives in ``output_dir/study.db``,
    so a stopped search continues where it stopped (finished trials are kept; ``n_trials`` is the total). Trial
    ``N`` is sampled by a TPE sampler seeded with ``seed + N`` (``search.seed``, default the run's), so its values
    depend on the seed and the trials before it only: a killed search resumes to the same trials (a trial cut off by
    the kill is run again under its number, with its values, from its finished folds). With the entry's ``pruning``
    an Optuna pruner stops hopeless trials; a pruned trial counts as finished, its finished folds stay in its folder.
    Trial ``N`` trains in ``output_dir/trial_N`` with exactly the spec :meth:`ModelEntry.with_values` gives, so a
    run of the best trial's values reuses its folds. With ``run.test_time == "fold_average"`` each trial's fold
    models also predict the ``test`` split, so the winner's folds serve such a run as they are.

    Returns:
        The study; ``study.best_params`` holds the best values.
    """
    import datasets
    import optuna

    search: StudySpec = entry.spec.search
    splits = data if isinstance(data, datasets.DatasetDict) else datasets.DatasetDict({"train": data})
    with_test = run.test_time == "fold_average" and "test" in splits
    trial_data = datasets.DatasetDict({"train": splits["train"], **({"test": splits["test"]} if with_test else {})})
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    space = search.resolved_space(entry)
    epochs = math.ceil(float(entry.spec.training.epochs))
    pruning = entry.spec.pruning
    pruned = pruning is not None and pruning.enabled
    first_seed = run.seed if search.seed is None else search.seed
    study = _open_study(
        output,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=first_seed),
        pruner=make_pruner(pruning, n_splits=run.n_splits, epochs=epochs) if pruned else optuna.pruners.NopPruner(),
    )
    problems = list(entry.problems)

    def run_trial(trial: optuna.Trial, reported: Sequence[int] = ()) -> None:
        values = _sample(trial, space)
        reporter = TrialReporter(trial, epochs=epochs, reported=reported) if pruned else None
        options = dataclasses.replace(run, refit=False, keep_model=False, monitor=reporter)
        try:
            result = entry.family.train(
                trial_data, output / f"trial_{trial.number}", entry.with_values(values), options
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
    while len(study.get_trials(deepcopy=False, states=_finished_states())) < search.n_trials:
        study.sampler = optuna.samplers.TPESampler(seed=first_seed + len(study.trials))  # trial N: seed + N
        run_trial(study.ask())
    return study
