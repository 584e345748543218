"""What a training config will cost before it runs: ``scripts/train.py CONFIG --plan``.

For every model the recipe trains (one per backbone and problem under ``layout: per_problem``) the plan counts:

- **trainings**: ``n_splits`` folds per candidate of its hyperparameter selection (the visual learning-rate grid,
  or the Optuna trials of its ``search:``; 1 without selection) plus the refit (the winner's folds are reused, see
  :mod:`hf_memotion.recipe.selection`); with ``pruning``, the rungs and folds the pruned selection trains
  (its search's ``cost``: exact for a grid, an expectation for a study), and the exhaustive search beside it;
- **FLOPs per step**: forward and backward of one optimisation step at the global batch, counted by torch's
  ``FlopCounterMode`` on the real architecture (its family's
  :meth:`~hf_memotion.families.ModelFamily.planned_model`: the timm model, the transformers backbone with the
  BiLSTM head...) built under ``FakeTensorMode``: the same modules and shapes as in training, no memory and no
  arithmetic (equal to a count on random weights, which the tests check); a visual model at its crop size, a text model
  at ``max_length`` tokens (texts are padded to the longest of a batch, so this is an upper bound);
- **steps and evaluation**: every training runs all its epochs (early stopping and the refit's median best epoch
  only shorten it: an upper bound), the validation rows each epoch, the held-out fold and the test rows once per
  model, ten crops per meme where ``ten_crop``;
- **GPU-hours** at ``plan.device_tflops`` (the *sustained* rate of one device; a stated assumption, not a peak);
- **disk**: the saved models (fp32 weights; ``ensemble/`` hard-links them, no second copy) and the checkpoint
  space one running training takes (weights only, best and last epoch, none without epoch selection).

Row counts come from ``plan.n_train``/``plan.n_test``, else the data section (demo sizes, or the release's CSV
rows), else the Memotion release's 6,992 training and 1,878 test memes. Text backbones' configs are read from a
local folder or the Hugging Face cache; the paper's four are also known by their published sizes, so the paper
config plans offline.

Examples:
    >>> from hf_memotion.recipe.specs import EnsembleRunSpec
    >>> spec = EnsembleRunSpec.from_dict({"n_splits": 2, "models": [
    ...     {"name": "cnn", "family": "vision", "processor": {"crop_size": 32}, "ten_crop": False,
    ...      "problems": ["humour"], "training": {"epochs": 2, "batch_size": 8},
    ...      "search": {"learning_rate": [0.01, 0.1]}}],
    ...     "plan": {"n_train": 40, "n_test": 10}})
    >>> plan = plan_training(spec)
    >>> plan.trainings, plan.trainings_without_selection, plan.models[0].steps  # 2 rates x 2 folds x 6 + refit 10
    (5, 3, 34)
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hf_memotion.benchmarking import count_flops, fake_model
from hf_memotion.families import ModelEntry, expand_models
from hf_memotion.families.published import PAPER_TEXT_BACKBONES
from hf_memotion.recipe.specs import EnsembleRunSpec
from hf_memotion.tasks import PROBLEM_NAMES

__all__ = [
    "PAPER_TEXT_BACKBONES",
    "PlannedModel",
    "TrainingPlan",
    "count_step_flops",
    "plan_training",
    "print_plan",
]

#: Memotion 7k's training release and the test release, in memes.
MEMOTION_ROWS = (6992, 1878)
BYTES_PER_PARAMETER = 4  # weights are trained and saved in fp32 (bf16 is autocast)


@dataclass
class PlannedModel:
    """One trained model of the plan (a backbone's model of one problem under ``layout: per_problem``).

    Attributes:
        backbone: The config entry's name (its Table 7 row).
        name: The trained model's name (its folder under ``models/``).
        family: Its family (``"text"``, ``"vision"``...).
        problems: What it predicts.
        architecture: The timm architecture or the text backbone.
        parameters: Trainable parameters.
        candidates: Settings cross-validated by its selection (1: none).
        trainings: Fold trainings its selection starts (all folds of every candidate, or a pruned selection's
            rungs and survivors), plus the refit.
        step_flops: Forward and backward FLOPs of one optimisation step at the global batch.
        meme_flops: Forward FLOPs of evaluating one meme (all its crops).
        steps: Optimisation steps over all its trainings (every epoch run).
        evaluated_memes: Memes evaluated over all its trainings (validation, held-out folds, test).
        checkpoint_bytes: Checkpoint space one of its running trainings takes.
        model_bytes: Its saved weights.
        fold_epochs: Epochs of fold trainings its selection runs (one epoch of one fold each).
        exhaustive: ``(trainings, steps, evaluated memes, fold-epochs)`` of the exhaustive search, where its
            selection is pruned (``None``: the same as above).
        pruning: The pruning it plans with (``None``: exhaustive).
    """

    backbone: str
    name: str
    family: str
    problems: list[str]
    architecture: str
    parameters: int
    candidates: int
    trainings: int
    step_flops: int
    meme_flops: int
    steps: int
    evaluated_memes: int
    checkpoint_bytes: int
    model_bytes: int
    fold_epochs: int = 0
    exhaustive: tuple[int, int, int, int] | None = None
    pruning: str | None = None

    @property
    def flops(self) -> float:
        """Training and evaluation FLOPs of all its trainings."""
        return float(self.steps) * self.step_flops + float(self.evaluated_memes) * self.meme_flops

    @property
    def exhaustive_flops(self) -> float:
        """FLOPs of its exhaustive selection (the paper's), folds and refit."""
        if self.exhaustive is None:
            return self.flops
        _, steps, evaluated, _ = self.exhaustive
        return float(steps) * self.step_flops + float(evaluated) * self.meme_flops


@dataclass
class TrainingPlan:
    """The plan of a config: its models, the row counts it assumed and the device rate.

    Attributes:
        models: One :class:`PlannedModel` per trained model.
        n_train: Training memes the base models train on.
        n_test: Held-out memes Table 7 is scored on.
        rows_from: Where the row counts came from.
        device_tflops: The sustained rate of one device the GPU-hours assume.
        n_splits: Folds per training.
        jobs_side_by_side: Trainings that may run at once (1 for the sequential engine).
        models_without_sharing: Base models if motivational were trained for subtask C too (``None``: not shared).
        notes: Assumptions made while planning (configs read from a known table, ...).
    """

    models: list[PlannedModel]
    n_train: int
    n_test: int
    rows_from: str
    device_tflops: float
    n_splits: int
    jobs_side_by_side: int = 1
    models_without_sharing: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def trainings(self) -> int:
        """Trainings of the whole run, selection included."""
        return sum(m.trainings for m in self.models)

    @property
    def trainings_without_selection(self) -> int:
        """Trainings if every model trained once: folds and refit."""
        return len(self.models) * (self.n_splits + 1)

    @property
    def flops(self) -> float:
        """FLOPs of the whole run."""
        return sum(m.flops for m in self.models)

    @property
    def gpu_hours(self) -> float:
        """Device-hours at :attr:`device_tflops` sustained."""
        return self.flops / (self.device_tflops * 1e12) / 3600

    @property
    def exhaustive_gpu_hours(self) -> float:
        """Device-hours of the same run with every model's selection exhaustive (the paper's)."""
        return sum(m.exhaustive_flops for m in self.models) / (self.device_tflops * 1e12) / 3600

    def selection_table(self) -> list[str]:
        """The exhaustive and the pruned selection side by side: trainings, fold-epochs, GPU-hours."""
        if not any(m.exhaustive is not None for m in self.models):
            if any(m.candidates > 1 for m in self.models):
                return [
                    "selection: exhaustive (the paper's); pruning.method=successive_halving plans a pruned one beside"
                ]
            return []
        rate = self.device_tflops * 1e12 * 3600
        exhaustive = [m.exhaustive or (m.trainings, m.steps, m.evaluated_memes, m.fold_epochs) for m in self.models]
        methods = sorted({m.pruning for m in self.models if m.pruning})
        rows = [
            (
                "exhaustive (the paper's)",
                sum(e[0] for e in exhaustive),
                sum(e[3] for e in exhaustive),
                self.exhaustive_gpu_hours,
            ),
            (
                f"pruned ({', '.join(methods)})",
                self.trainings,
                sum(m.fold_epochs for m in self.models),
                self.flops / rate,
            ),
        ]
        lines = ["", "| selection | trainings | fold-epochs | GPU-h | share |", "|---|---:|---:|---:|---:|"]
        for label, trainings, fold_epochs, hours in rows:
            lines.append(
                f"| {label} | {trainings:,} | {fold_epochs:,} | {_number(hours)} | "
                f"{hours / max(self.exhaustive_gpu_hours, 1e-12):.0%} |"
            )
        lines.append(
            "(trainings: the selection's fold trainings and the refits; fold-epochs: the selection's epochs of "
            "one fold each; a pruned study's figures are an expectation, a pruned grid's exact: "
            "hf_memotion.training.pruning.grid_cost and study_cost)"
        )
        return lines

    @property
    def model_bytes(self) -> int:
        """The saved base models (the ensemble folder links them)."""
        return sum(m.model_bytes for m in self.models)

    @property
    def checkpoint_bytes(self) -> int:
        """Checkpoint space of the largest running training."""
        return max((m.checkpoint_bytes for m in self.models), default=0)

    def format(self) -> str:
        """The plan as tables per model and per backbone, and the totals (what ``--plan`` prints)."""
        rate = self.device_tflops * 1e12 * 3600
        lines = [
            "| model | problems | trainings | parameters | GFLOP/step | steps | PFLOP | GPU-h | checkpoint GB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m in self.models:
            problems = "all nine" if sorted(m.problems) == sorted(PROBLEM_NAMES) else ", ".join(m.problems)
            lines.append(
                f"| {m.name} | {problems} | {m.trainings:,} | {_number(m.parameters / 1e6)} M | "
                f"{_number(m.step_flops / 1e9)} | {m.steps:,} | {_number(m.flops / 1e15)} | "
                f"{_number(m.flops / rate)} | {_number(m.checkpoint_bytes / 1e9)} |"
            )
        lines += ["", "| backbone | models | trainings | GPU-h | saved GB |", "|---|---:|---:|---:|---:|"]
        for backbone in dict.fromkeys(m.backbone for m in self.models):
            group = [m for m in self.models if m.backbone == backbone]
            lines.append(
                f"| {backbone} | {len(group)} | {sum(m.trainings for m in group):,} | "
                f"{_number(sum(m.flops for m in group) / rate)} | "
                f"{_number(sum(m.model_bytes for m in group) / 1e9)} |"
            )
        searched = sum(m.candidates > 1 for m in self.models)
        pruned = " or fewer where pruned" if any(m.pruning for m in self.models) else ""
        lines += [
            "",
            f"data: {self.n_train:,} training memes, {self.n_test:,} held out ({self.rows_from})",
            f"trainings: {self.trainings:,} ({len(self.models)} base models, {searched} of them with hyperparameter "
            f"selection: {self.n_splits} folds per candidate{pruned}, then 1 refit); without selection: "
            f"{self.trainings_without_selection:,} ({len(self.models)} x ({self.n_splits} folds + refit))",
        ]
        if self.models_without_sharing is not None:
            unshared = self.models_without_sharing
            lines.append(
                f"  with subtask C's motivational trained apart: {unshared} base models, "
                f"{unshared * (self.n_splits + 1):,} trainings without selection"
            )
        lines += [
            f"compute: {self.flops:.3g} FLOP (forward + backward of every step, evaluation forwards) = "
            f"{_number(self.gpu_hours)} GPU-hours at {self.device_tflops:g} TFLOP/s sustained (plan.device_tflops); "
            "an upper bound: every training runs all its epochs",
            f"  wall-clock with {self.jobs_side_by_side} job(s) side by side: about "
            f"{_number(self.gpu_hours / max(1, self.jobs_side_by_side))} hours",
            f"disk: {_number(self.model_bytes / 1e9)} GB of saved base models (ensemble/ hard-links them); checkpoints "
            f"at most {_number(self.checkpoint_bytes / 1e9)} GB per running training (weights only)",
            *(f"note: {n}" for n in self.notes),
            *self.selection_table(),
        ]
        return "\n".join(lines)


def _number(value: float) -> str:
    """Three significant digits below 100, whole numbers with separators above."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def count_step_flops(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], backward: bool = True) -> int:
    """FLOPs of ``model(**inputs)`` (and the backward pass of its logits' sum) under torch's ``FlopCounterMode``.

    Examples:
        >>> layer = torch.nn.Linear(8, 4)
        >>> class Out(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.layer = layer
        ...     def forward(self, x):
        ...         from types import SimpleNamespace
        ...         return SimpleNamespace(logits=self.layer(x))
        >>> count_step_flops(Out(), {"x": torch.ones(2, 8)})  # 2*2*8*4 forward, twice that backward (no input grad)
        256
    """

    def step() -> None:
        logits = model(**inputs).logits
        if backward:
            logits.float().sum().backward()

    return count_flops(step)


def _count(entry: ModelEntry, notes: list[str]) -> tuple[int, int, int]:
    """(parameters, forward + backward FLOPs of one sample, forward FLOPs of one meme with all its crops).

    Counted on a batch of two (BatchNorm needs more than one value to train) and halved: every layer's FLOPs are
    proportional to the batch.
    """
    (model, inputs, crops), mode = fake_model(lambda: entry.family.planned_model(entry, notes))
    with mode:
        inputs = {
            k: torch.ones(v.shape, dtype=v.dtype) if not v.is_floating_point() else torch.zeros(v.shape, dtype=v.dtype)
            for k, v in inputs.items()
        }
        model.train()
        train = count_step_flops(model, inputs)
        model.eval()
        with torch.no_grad():
            forward = count_step_flops(model, inputs, backward=False)
        parameters = sum(p.numel() for p in model.parameters())
    return parameters, train // 2, forward // 2 * crops


def _rows(spec: EnsembleRunSpec) -> tuple[int, int, str]:
    """Training and held-out memes before the evaluation split: from the plan, the data section, or the release."""
    plan, data = spec.plan, dict(spec.data or {})
    if plan.n_train is not None:
        return int(plan.n_train), int(plan.n_test if plan.n_test is not None else 0), "plan.n_train / plan.n_test"
    if "demo" in data:
        from hf_memotion.data import DemoDataSpec

        settings = {k: v for k, v in dict(data["demo"] or {}).items() if k not in ("output_dir", "overwrite")}
        demo = DemoDataSpec(**settings)
        return demo.n_train, demo.n_test, "the demo data's sizes"
    root = Path(str(data.get("path", "")))
    found = {}
    if root.is_dir():
        for name, kind in (("labels.csv", "train"), ("2000_testdata.csv", "test")):
            files = sorted(root.glob(name)) + sorted(root.glob(f"*/{name}"))
            if files:
                with open(files[0], encoding="utf-8", errors="replace", newline="") as handle:
                    found[kind] = sum(1 for _ in csv.reader(handle)) - 1
    if "train" in found:
        return found["train"], found.get("test", 0), f"the release's CSV rows under {root}"
    return *MEMOTION_ROWS, f"Memotion 7k and its test release: no release found at {root or 'data.path'}"


def _held_out(spec: EnsembleRunSpec, n_train: int, n_test: int) -> tuple[int, int]:
    evaluation = spec.evaluation
    if evaluation.split == "dev":
        if evaluation.dev_file and Path(evaluation.dev_file).is_file():
            dev = sum(1 for line in Path(evaluation.dev_file).read_text().splitlines() if line.strip())
        else:
            dev = math.ceil(n_train * float(evaluation.dev_fraction))
        return n_train - dev, dev
    if n_test == 0:
        held = math.ceil(n_train * float(spec.holdout))
        return n_train - held, held
    return n_train, n_test


def _no_search(n_splits: int, epochs: int) -> dict[str, float]:
    """A member without a search: its folds, once."""
    fold_epochs = n_splits * epochs
    return {
        "exhaustive_fold_epochs": fold_epochs,
        "pruned_fold_epochs": fold_epochs,
        "exhaustive_trainings": n_splits,
        "pruned_trainings": n_splits,
    }


def _selection_budget(
    fold_epochs: float,
    trainings: float,
    epoch_steps: int,
    refit_steps: int,
    validation: int,
    training_evaluated: int,
    n_test: int,
) -> tuple[int, int, int, int]:
    """``(trainings, steps, evaluated memes, fold-epochs)`` of a model's selection and its refit."""
    return (
        round(trainings) + 1,
        round(fold_epochs * epoch_steps) + refit_steps,
        round(fold_epochs * validation + trainings * training_evaluated) + n_test,
        round(fold_epochs),
    )


def plan_training(config: Mapping[str, Any] | EnsembleRunSpec, *, source: str | None = None) -> TrainingPlan:
    """Plan what :func:`~hf_memotion.recipe.ensemble_recipe.run_training` would train for ``config`` (nothing runs).

    Args:
        config: An :class:`~hf_memotion.recipe.specs.EnsembleRunSpec` or its mapping.
        source: The config's file, named in errors.
    """
    spec = config if isinstance(config, EnsembleRunSpec) else EnsembleRunSpec.from_dict(config, source=source)
    if not spec.models:
        raise ValueError("the config lists no base models under 'models'")
    n_train, n_test, rows_from = _rows(spec)
    n_train, n_test = _held_out(spec, n_train, n_test)
    k = int(spec.n_splits)
    notes: list[str] = []
    counted: dict[str, tuple[int, int, int]] = {}
    models = []
    for entry in expand_models(spec.models, spec.share_motivational):
        member = entry.spec
        training = member.training
        search = member.search
        candidates = search.count() if search is not None else 1
        # a backbone's models differ only in their heads' widths (a few outputs of the last layer): counted once
        if entry.group not in counted:
            counted[entry.group] = _count(entry, notes)
        parameters, sample_flops, meme_flops = counted[entry.group]
        fold_rows = n_train - math.ceil(n_train / k)
        validation = math.ceil(fold_rows * float(training.validation_fraction)) if training.validation_fraction else 0
        epochs = math.ceil(float(training.epochs))
        batch = int(training.batch_size)
        epoch_steps = math.ceil((fold_rows - validation) / batch)
        refit_steps = epochs * math.ceil(n_train / batch)
        training_evaluated = math.ceil(n_train / k) + (n_test if spec.evaluation.test_time == "fold_average" else 0)
        pruning = member.pruning if candidates > 1 and member.pruning is not None and member.pruning.enabled else None
        cost = search.cost(pruning, n_splits=k, epochs=epochs) if search is not None else _no_search(k, epochs)

        per_model = (epoch_steps, refit_steps, validation, training_evaluated, n_test)
        planned = _selection_budget(cost["pruned_fold_epochs"], cost["pruned_trainings"], *per_model)
        exhaustive = _selection_budget(cost["exhaustive_fold_epochs"], cost["exhaustive_trainings"], *per_model)
        model_bytes = parameters * BYTES_PER_PARAMETER
        models.append(
            PlannedModel(
                backbone=entry.group,
                name=entry.name,
                family=member.family,
                problems=entry.served_problems,
                architecture=entry.family.network(member),
                parameters=parameters,
                candidates=candidates,
                trainings=planned[0],
                step_flops=sample_flops * batch,
                meme_flops=meme_flops,
                steps=planned[1],
                evaluated_memes=planned[2],
                checkpoint_bytes=2 * model_bytes if validation else 0,  # best and last epoch, weights only
                model_bytes=model_bytes,
                fold_epochs=planned[3],
                exhaustive=exhaustive if pruning is not None else None,
                pruning=pruning.method if pruning is not None else None,
            )
        )
    side_by_side = 1
    if spec.jobs.engine == "ray":
        side_by_side = max(1, torch.cuda.device_count()) if spec.jobs.address is None else 1
        if spec.jobs.address is not None:
            notes.append("jobs on a Ray cluster: divide the GPU-hours by the GPUs it has")
    unshared = None
    if spec.share_motivational:
        unshared = len(expand_models(spec.models, False))
    return TrainingPlan(
        models=models,
        n_train=n_train,
        n_test=n_test,
        rows_from=rows_from,
        device_tflops=float(spec.plan.device_tflops),
        n_splits=k,
        jobs_side_by_side=side_by_side,
        models_without_sharing=unshared,
        notes=notes,
    )


def print_plan(plan: TrainingPlan) -> None:
    """Print :meth:`TrainingPlan.format` (what ``--plan`` shows)."""
    print(plan.format())
