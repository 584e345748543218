"""Pruned selection: hopeless candidates stop early, the paper's choice of hyperparameters at a fraction of the cost.

The paper cross-validates every candidate of a base model to the end (Section 5.2: nine learning rates x five folds x
100 epochs per visual model and problem, 30 Optuna trials x five folds per textual one). With a model's
``pruning:`` (:class:`PruningSpec`):

- a **learning-rate grid** runs successive halving (:func:`halving_rungs`, :func:`survivors`): every rate trains the
  first fold for a short budget, its learning-rate schedule compressed to that budget (:func:`rung_training`: the
  step decays at the same fractions of training; ranked on the first epochs of the full schedule, before its
  first decay, the small rates win and the paper's choice is lost); the best ``1/reduction_factor`` continue for
  ``reduction_factor`` times as many epochs; the survivors are cross-validated as before and the best of them wins.
  Written by hand because the grid is not an Optuna study (its candidates are fixed, and its rungs are jobs that
  run side by side under Ray);
- an **Optuna study** uses an Optuna pruner (:func:`make_pruner`: successive halving, Hyperband or the median
  rule), fed after every epoch and at the end of every fold by a :class:`TrialReporter` with the trial's estimate
  of its objective. A trial's steps are its folds' epochs and ends: fold ``k``'s epoch ``e`` is step
  ``k * (epochs + 1) + e``.

:func:`grid_cost` and :func:`study_cost` give the fold-epochs (one epoch of one fold) both ways, for ``--plan``.

Examples:
    >>> halving_rungs(9, first_epochs=10, epochs=100, reduction_factor=3)
    [(10, 9), (30, 3)]
    >>> survivors([0.2, 0.5, 0.4, 0.1, 0.5], reduction_factor=2)
    [1, 4]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

from hf_memotion.training.arguments import ClassifierTrainingArguments
from hf_memotion.training.cross_validation import FoldMonitor

__all__ = [
    "PruningSpec",
    "TrialReporter",
    "grid_cost",
    "halving_rungs",
    "make_pruner",
    "rung_training",
    "study_cost",
    "survivors",
]


@dataclass
class PruningSpec:
    """Early stopping of hopeless candidates in a model's hyperparameter selection (default: none, the paper's).

    A learning-rate grid (``search: {learning_rate: [...]}``) is pruned by successive halving: every rate trains the
    first fold for ``min_epochs`` epochs (its schedule compressed to them), the best ``1/reduction_factor`` continue
    for ``reduction_factor`` times as many epochs, and so on while more than one is left and the budget is below the
    configured epochs; the survivors are cross-validated on every fold as in the exhaustive search, and the best of
    them wins. An Optuna study (``search: {n_trials: N}``) is pruned by an Optuna pruner fed, after every epoch and at
    the end of every fold, with the trial's estimate of its objective (the first fold's best validation macro-F1 so far,
    then the finished folds' held-out macro-F1); its steps are the folds' epochs and ends. A pruned candidate's finished
    folds are kept; the winner is the best candidate that finished every fold.

    Attributes:
        method: ``"none"``, ``"successive_halving"`` (grids and studies), ``"hyperband"`` or ``"median"`` (studies).
        min_epochs: The first rung's budget, in epochs (the text pruners' ``min_resource``, the median pruner's
            warm-up); default: the model's epochs over ``reduction_factor`` (a third), rounded up: the setting the
            benchmark of the pruned selection against the exhaustive one validates (``benchmarks/bench_selection.py``;
            a tenth kept a different textual trial there).
        reduction_factor: One candidate in ``reduction_factor`` continues at each rung.
        startup_trials: The median pruner's trials that are never pruned.

    Examples:
        >>> PruningSpec(method="successive_halving").first_rung(epochs=100)
        34
    """

    method: str = "none"
    min_epochs: int | None = None
    reduction_factor: int = 3
    startup_trials: int = 5

    def __post_init__(self) -> None:
        methods = ["hyperband", "median", "none", "successive_halving"]
        if self.method not in methods:
            raise ValueError(f"pruning.method must be one of {methods}, got {self.method!r}")
        if self.min_epochs is not None and int(self.min_epochs) < 1:
            raise ValueError(f"pruning.min_epochs must be 1 or more, got {self.min_epochs!r}")
        if int(self.reduction_factor) < 2:
            raise ValueError(f"pruning.reduction_factor must be 2 or more, got {self.reduction_factor!r}")
        if int(self.startup_trials) < 0:
            raise ValueError(f"pruning.startup_trials must be 0 or more, got {self.startup_trials!r}")

    @property
    def enabled(self) -> bool:
        """Whether candidates may be pruned (``method`` is not ``"none"``)."""
        return self.method != "none"

    def first_rung(self, epochs: float) -> int:
        """The first rung's budget in epochs: ``min_epochs``, else ``epochs / reduction_factor`` rounded up."""
        if self.min_epochs is not None:
            return int(self.min_epochs)
        return max(1, math.ceil(float(epochs) / int(self.reduction_factor)))

    def check(self, search: Any, model: str | None) -> None:
        """Refuse a method ``search`` (a member's ``search:``) cannot run: one line naming the model and the choices."""
        if self.method not in search.pruning_methods:
            where = f"model {model!r}: " if model else ""
            raise ValueError(
                f"{where}pruning.method {self.method!r} is for an Optuna study; a learning-rate grid prunes by one of "
                f"{list(search.pruning_methods)}"
            )


def halving_rungs(n_candidates: int, *, first_epochs: int, epochs: float, reduction_factor: int) -> list[tuple]:
    """The rungs of successive halving: ``(epochs of the first fold, candidates)`` of each, before the full runs.

    A rung is run while more than one candidate is left and its budget is below ``epochs`` (a budget of all the
    epochs is the full run's first fold: no saving).
    """
    rungs = []
    budget, alive = int(first_epochs), int(n_candidates)
    while alive > 1 and budget < float(epochs):
        rungs.append((budget, alive))
        alive = max(1, alive // int(reduction_factor))
        budget *= int(reduction_factor)
    return rungs


def rung_training(training: ClassifierTrainingArguments, epochs: int) -> ClassifierTrainingArguments:
    """The settings of a rung of ``epochs``: the schedule of ``training`` compressed to them (milestones scaled).

    Examples:
        >>> rung_training(ClassifierTrainingArguments(epochs=100, lr_milestones=(40, 60)), 10).lr_milestones
        (4, 6)
        >>> rung_training(ClassifierTrainingArguments(epochs=10, lr_milestones=(6, 9)), 3).lr_milestones
        (1.8, 2.7)
    """
    scale = float(epochs) / float(training.epochs)
    milestones = tuple(round(m * scale, 6) for m in training.lr_milestones)
    return dataclasses.replace(training, epochs=epochs, lr_milestones=milestones)


def survivors(scores: Sequence[float], reduction_factor: int) -> list[int]:
    """The indices of the candidates that continue: the best ``len(scores) // reduction_factor`` (at least one).

    Equal scores keep the earlier candidate (the grid's order decides, as in the exhaustive choice).
    """
    keep = max(1, len(scores) // int(reduction_factor))
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:keep])


def make_pruner(pruning: PruningSpec, *, n_splits: int, epochs: int) -> Any:
    """The Optuna pruner of a textual study (its steps: the folds' epochs and ends, ``n_splits * (epochs + 1)``)."""
    import optuna

    first = pruning.first_rung(epochs)
    if pruning.method == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=pruning.reduction_factor)
    if pruning.method == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=first, max_resource=n_splits * (epochs + 1), reduction_factor=pruning.reduction_factor
        )
    if pruning.method == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=pruning.startup_trials, n_warmup_steps=first)
    return optuna.pruners.NopPruner()


class _EpochReporter(TrainerCallback):
    """Hands each epoch's validation macro-F1 of one fold to the reporter; stops the training once it is pruned."""

    def __init__(self, reporter: TrialReporter, fold: int):
        self.reporter = reporter
        self.fold = fold

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        """Report the epoch; a pruned trial's training stops here (its fold is then dropped)."""
        if metrics and "eval_macro_f1" in metrics:
            self.reporter.epoch_done(self.fold, float(state.epoch or 0.0), float(metrics["eval_macro_f1"]))
            if self.reporter.stop:
                self.reporter.train_steps += int(state.global_step)
                self.reporter.trainings += 1  # the fold it stopped in
                control.should_training_stop = True
        return control


class TrialReporter(FoldMonitor):
    """Feeds an Optuna trial with its running objective after every epoch of every fold, and prunes it.

    A trial's steps are its folds' epochs and ends: fold ``k``'s epoch ``e`` is step ``k * (epochs + 1) + e``, its
    end step ``(k + 1) * (epochs + 1)``. The value is the trial's estimate so far of its objective: in the first fold,
    its best validation macro-F1 up to that epoch; from then on, the mean held-out macro-F1 of its finished folds
    (the early epochs of a new fold say little). A fold that early stopping ended before its last epoch reports its
    best value for the epochs it skipped, so every trial is judged at the same steps. Folds reused from an earlier,
    killed run are reported from their saved ``epoch_scores``; a step already in the study (reported before the
    kill) is not reported or judged again, so a resumed search makes the same decisions.

    Args:
        trial: The Optuna trial.
        epochs: The folds' configured epochs.
        reported: Steps the trial reported before (a killed run's trial).

    Examples:
        >>> import optuna
        >>> study = optuna.create_study(direction="maximize")
        >>> reporter = TrialReporter(study.ask(), epochs=3)
        >>> reporter.epoch_done(0, 1.0, 0.4); reporter.epoch_done(0, 2.0, 0.3)
        >>> reporter.fold_finished(0, {"f1_humour": 0.5, "train_steps": 12})  # stopped early after epoch 2
        >>> reporter.epoch_done(1, 1.0, 0.7)
        >>> study.trials[0].intermediate_values, reporter.train_steps
        ({1: 0.4, 2: 0.4, 3: 0.4, 4: 0.5, 5: 0.5}, 12)
    """

    def __init__(self, trial: Any, *, epochs: int, reported: Iterable[int] = ()):
        self.trial = trial
        self.epochs = int(epochs)
        self.reported = set(reported)
        self.held_out: dict[int, float] = {}
        self.best: dict[int, float] = {}
        self.last_epoch: dict[int, int] = {}
        self.train_steps = 0
        self.trainings = 0
        self.pruned_at: dict[str, Any] | None = None
        self.stop = False

    @property
    def steps_per_fold(self) -> int:
        """A fold's epochs and its end."""
        return self.epochs + 1

    def callbacks(self, fold: int) -> list[Any]:
        """The fold's trainer callback (every epoch's validation macro-F1)."""
        return [_EpochReporter(self, fold)]

    def _value(self, fold: int) -> float:
        finished = [self.held_out[j] for j in range(fold) if j in self.held_out]
        return sum(finished) / len(finished) if finished else self.best.get(fold, 0.0)

    def _report(self, fold: int, step: int, value: float, epoch: float | None) -> None:
        if self.stop or step in self.reported:
            return
        self.trial.report(value, step)
        self.reported.add(step)
        if self.trial.should_prune():
            self.stop = True
            self.pruned_at = {"fold": fold, "epoch": epoch, "step": step, "value": value}

    def epoch_done(self, fold: int, epoch: float, score: float) -> None:
        """Report fold ``fold``'s epoch ``epoch`` (validation macro-F1 ``score``) and ask the pruner."""
        self.best[fold] = max(self.best.get(fold, -math.inf), score)
        number = min(max(1, round(epoch)), self.epochs)
        self.last_epoch[fold] = max(self.last_epoch.get(fold, 0), number)
        self._report(fold, fold * self.steps_per_fold + number, self._value(fold), float(epoch))

    def fold_finished(self, fold: int, metrics: Mapping[str, Any]) -> None:
        """A fold is done: its skipped epochs, then its end with its held-out macro-F1 in the estimate."""
        for epoch, score in metrics.get("epoch_scores", []):  # a reused fold's epochs (reported ones are skipped)
            self.epoch_done(fold, float(epoch), float(score))
        for number in range(self.last_epoch.get(fold, 0) + 1, self.epochs + 1):  # stopped early: its best holds
            self._report(fold, fold * self.steps_per_fold + number, self._value(fold), float(number))
        scores = [float(v) for k, v in metrics.items() if k.startswith("f1_")]
        if scores:
            self.held_out[fold] = sum(scores) / len(scores)
        self._report(fold, (fold + 1) * self.steps_per_fold, self._value(fold + 1), None)
        self.train_steps += int(metrics.get("train_steps", 0))
        self.trainings += 1


def _exhaustive(candidates: int, n_splits: int, epochs: int) -> dict[str, float]:
    return {"exhaustive_fold_epochs": candidates * n_splits * epochs, "exhaustive_trainings": candidates * n_splits}


def _unpruned(pruning: PruningSpec | None, candidates: int) -> bool:
    return pruning is None or not pruning.enabled or candidates <= 1


def grid_cost(pruning: PruningSpec | None, *, candidates: int, n_splits: int, epochs: int) -> dict[str, float]:
    """Fold-epochs and fold trainings of a learning-rate grid's selection, exhaustive and pruned (for ``--plan``).

    Exact: the rungs of successive halving, then the survivors' folds.

    Returns:
        ``exhaustive_fold_epochs``, ``pruned_fold_epochs``, ``exhaustive_trainings``, ``pruned_trainings`` (fold
        trainings started; the refit excluded).

    Examples:
        >>> cost = grid_cost(PruningSpec("successive_halving", 10), candidates=9, n_splits=5, epochs=100)
        >>> cost["exhaustive_fold_epochs"], cost["pruned_fold_epochs"], cost["pruned_trainings"]
        (4500, 680, 17)
    """
    exhaustive = _exhaustive(candidates, n_splits, epochs)
    if _unpruned(pruning, candidates):
        return {
            **exhaustive,
            "pruned_fold_epochs": candidates * n_splits * epochs,
            "pruned_trainings": candidates * n_splits,
        }
    factor = pruning.reduction_factor
    rungs = halving_rungs(candidates, first_epochs=pruning.first_rung(epochs), epochs=epochs, reduction_factor=factor)
    left = max(1, rungs[-1][1] // factor) if rungs else candidates
    return {
        **exhaustive,
        "pruned_fold_epochs": sum(b * n for b, n in rungs) + left * n_splits * epochs,
        "pruned_trainings": sum(n for _, n in rungs) + left * n_splits,
    }


def study_cost(pruning: PruningSpec | None, *, candidates: int, n_splits: int, epochs: int) -> dict[str, float]:
    """Fold-epochs and fold trainings of an Optuna study's selection, exhaustive and pruned (for ``--plan``).

    The pruned cost is an expectation, as a pruner decides on the scores: under successive halving and Hyperband,
    one trial in ``reduction_factor ** r`` reaches rung ``r`` and the first trial runs to the end; under the median
    rule, the startup trials run to the end and half of the others stop at the warm-up.

    Examples:
        >>> round(study_cost(PruningSpec("median", 3), candidates=30, n_splits=5, epochs=30)["pruned_fold_epochs"])
        2662
    """
    full = n_splits * epochs
    exhaustive = _exhaustive(candidates, n_splits, epochs)
    if _unpruned(pruning, candidates):
        return {**exhaustive, "pruned_fold_epochs": candidates * full, "pruned_trainings": candidates * n_splits}
    first, factor = pruning.first_rung(epochs), pruning.reduction_factor
    if pruning.method == "median":
        startup = min(candidates, pruning.startup_trials)
        others = candidates - startup
        pruned = startup * full + others * (full + min(first, full)) / 2
        trainings = startup * n_splits + others * (n_splits + 1) / 2
    else:  # one trial in factor**r reaches rung r (at first * factor**r steps); the first trial runs to the end
        per_fold = epochs + 1  # a fold's steps: its epochs and its end
        steps, per_trial, trainings_per_trial, reached, rung, previous = n_splits * per_fold, 0.0, 0.0, 1.0, 0, 0
        while previous < steps:
            step = min(steps, first * factor**rung)
            per_trial += reached * (step - previous) * epochs / per_fold
            trainings_per_trial += reached * (math.ceil(step / per_fold) - math.ceil(previous / per_fold))
            previous, reached, rung = step, reached / factor, rung + 1
        pruned = full + (candidates - 1) * per_trial
        trainings = n_splits + (candidates - 1) * trainings_per_trial
    return {**exhaustive, "pruned_fold_epochs": pruned, "pruned_trainings": trainings}
