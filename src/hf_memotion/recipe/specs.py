"""The typed specs of the Memotion training configs: the ensemble recipe's and a run of one member's.

Each is read by :func:`hf_memotion.specs.parse_spec` (an unknown key names file, section and the nearest valid
key); the defaults here are the only ones. A model entry (``models:`` of an ensemble config, the whole of a member
run's) is its family's section (:class:`~hf_memotion.families.MemberSpec`). ``scripts/train.py`` reads an
:class:`EnsembleRunSpec`; ``scripts/train_text.py`` and ``scripts/train_vision.py`` a :class:`MemberRunSpec`.

Examples:
    >>> spec = EnsembleRunSpec.from_dict({"models": [{"name": "bert", "family": "text",
    ...                                               "training": {"epochs": 3, "bf16": True}}]})
    >>> spec.n_splits, spec.models[0].backbone, spec.models[0].training.extra
    (5, 'tiny:bert', {'bf16': True})
    >>> EnsembleRunSpec.from_dict({"models": [{"name": "bert", "family": "text", "trainign": {}}]}, source="x.yaml")
    Traceback (most recent call last):
    ...
    hf_memotion.specs.SpecError: x.yaml, section 'models.0': unknown key 'trainign' (did you mean 'training'?); ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hf_memotion.families import SHARED_PROBLEMS, MemberSpec, inherit_pruning
from hf_memotion.specs import parse_spec
from hf_memotion.training.pruning import PruningSpec

__all__ = [
    "EnsembleRunSpec",
    "EvaluationSpec",
    "JobsSpec",
    "MemberRunSpec",
    "PlanSpec",
    "StackingSpec",
]


@dataclass
class StackingSpec:
    """The meta-estimators: ``methods`` (candidates, or one per problem), ``features`` (``"own"``/``"all"``), ``cv``.

    ``calibration``: the map from each problem's meta-estimator output to calibrated probabilities, fitted on that
    meta-estimator's out-of-fold output (:mod:`hf_memotion.ensemble.calibration`): ``"auto"`` (``temperature``
    or ``none``, by out-of-fold log-loss: the maps that keep every answer), ``"temperature"``, ``"sigmoid"``,
    ``"isotonic"`` (these two change answers) or ``"none"`` (the paper's: the meta-estimators' outputs as they are).
    """

    methods: Any = None
    features: str = "own"
    cv: int = 5
    calibration: Literal["auto", "none", "temperature", "sigmoid", "isotonic"] = "auto"

    def fit(
        self,
        probabilities: Mapping[str, Mapping[str, Any]],
        labels: Mapping[str, Any],
        *,
        seed: int,
        shared: bool = False,
    ) -> dict[str, Any]:
        """The meta-estimators of ``labels``' problems, chosen and fitted on the members' out-of-fold probabilities.

        With ``shared`` (``share_motivational``), subtask C's motivational reads B's probabilities with the same
        labels, so it takes B's meta-estimator: one choice for both subtasks.
        """
        from hf_memotion.ensemble.stacking import META_METHODS, fit_stackers

        return fit_stackers(
            probabilities,
            labels,
            candidates=self.methods or META_METHODS,
            features=self.features,
            cv=int(self.cv),
            seed=seed,
            calibration=self.calibration,
            shared=SHARED_PROBLEMS if shared else None,
        )


@dataclass
class EvaluationSpec:
    """Where Table 7 is scored and with which models' probabilities.

    Attributes:
        split: ``"test"``: the labelled test release (or, without one, ``holdout`` of ``train``); ``"dev"``: a dev
            split of the training release (the paper's Table 7 is on a dev set), ``dev_fraction`` of it
            (stratified by sentiment, seeded) or the memes ``dev_file`` lists; the base models then train on the
            rest.
        dev_fraction: The dev share of ``train`` for ``split: dev``.
        dev_file: A text file of ``image_name`` values, one per line: those training memes are the dev split.
        test_time: The held-out probabilities the stacker combines: ``"refit"`` (the model refit on all training
            rows, the one the ensemble serves) or ``"fold_average"`` (the mean of the fold models: the ones whose
            out-of-fold probabilities the stacker was fitted on). Table 7's single-model rows are the refit models
            either way (each scored as one model).
        fold_mean_rows: With ``test_time: fold_average``, add a ``<model> (fold mean)`` row to Table 7 for each
            base model: the fold models' mean, what the stacker read.
        columns: Column order of Table 7: ``"release"`` (humour, sarcasm, offensive, motivational: the release's
            and the submission's hsom order) or ``"paper"`` (humour, offensive, sarcasm, motivational: the order
            the paper prints).
    """

    split: Literal["test", "dev"] = "test"
    dev_fraction: float = 0.1
    dev_file: str | None = None
    test_time: Literal["refit", "fold_average"] = "refit"
    fold_mean_rows: bool = False
    columns: Literal["release", "paper"] = "release"

    def __post_init__(self) -> None:
        if not 0 < float(self.dev_fraction) < 1:
            raise ValueError(f"evaluation.dev_fraction must be in (0, 1), got {self.dev_fraction!r}")


@dataclass
class JobsSpec:
    """How the recipe's trainings run: each base model, and each search candidate, is one job in its own folder.

    Attributes:
        engine: ``"sequential"`` (one after another in this process) or ``"ray"`` (Ray tasks: side by side on the
            local GPUs or CPUs, or over a cluster). Same folders, same results, same resumability: a job's folder
            is its checkpoint, and a job that finished is read back, not run again.
        address: The Ray cluster to join (``"auto"``: the one this machine belongs to); default: start a local Ray.
        gpus_per_job: GPUs each job reserves (default: 1 where Ray sees GPUs, else 0).
        cpus_per_job: CPU cores each job reserves (and its torch threads).
    """

    engine: Literal["sequential", "ray"] = "sequential"
    address: str | None = None
    gpus_per_job: float | None = None
    cpus_per_job: float = 1


@dataclass
class PlanSpec:
    """What ``scripts/train.py CONFIG --plan`` assumes where it cannot measure.

    Attributes:
        device_tflops: The sustained training rate of one device, in TFLOP/s, for the GPU-hour estimate.
        n_train: Training memes (default: the data's, or the Memotion 7k release's 6,992 when it is not here).
        n_test: Test memes (default: the data's, or the test release's 1,878).
    """

    device_tflops: float = 100.0
    n_train: int | None = None
    n_test: int | None = None


@dataclass
class EnsembleRunSpec:
    """``scripts/train.py``: base models, stacking, evaluation, the ensemble folder and the report.

    Attributes:
        data: The data section (:func:`hf_memotion.data.loading.load_data`).
        output_dir: Run folder.
        seed: Seed of folds, training and stacking.
        n_splits: Folds of every base model.
        holdout: Evaluation share carved from ``train`` when there is no labelled test split.
        processes: Refuse to run unless exactly this many processes were launched.
        models: The base models, each its family's section (:class:`~hf_memotion.families.MemberSpec`).
        stacking: The meta-estimators.
        bf16_check: Measure on the held-out split what predicting in bf16 changes, and record it in the
            ensemble (``dtype="auto"`` then predicts in bf16 only if no subtask's macro-F1 moved by more than
            0.005): ``"auto"`` where the device (a GPU if there is one, else the CPU) has native bf16,
            ``true`` always, ``false`` never.
        share_motivational: Train motivational once and serve subtask B's and C's problem with it (their labels
            are the same; per-problem layout): 8 models per backbone instead of 9.
        evaluation: Where Table 7 is scored, with which probabilities, in which column order.
        jobs: How the trainings run (in this process, or as Ray tasks over GPUs and nodes).
        plan: Assumptions of ``--plan``.
        pruning: The pruning of every searched model that has no ``pruning`` of its own
            (:class:`~hf_memotion.training.pruning.PruningSpec`; default: none, the paper's exhaustive search):
            ``pruning.method=successive_halving`` on the command line prunes the grids and the studies alike.
    """

    data: dict[str, Any] = field(default_factory=lambda: {"demo": {}})
    output_dir: str = "outputs/run"
    seed: int = 0
    n_splits: int = 5
    holdout: float = 0.1
    processes: int | None = None
    models: list[MemberSpec] = field(default_factory=list)
    stacking: StackingSpec = field(default_factory=StackingSpec)
    bf16_check: bool | Literal["auto"] = "auto"
    share_motivational: bool = False
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    jobs: JobsSpec = field(default_factory=JobsSpec)
    plan: PlanSpec = field(default_factory=PlanSpec)
    pruning: PruningSpec = field(default_factory=PruningSpec)

    def __post_init__(self) -> None:
        if self.bf16_check not in (True, False, "auto"):
            raise ValueError(f"bf16_check must be true, false or 'auto', got {self.bf16_check!r}")
        inherit_pruning(self.models, self.pruning)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, source: str | None = None) -> EnsembleRunSpec:
        """Read a config mapping (``source``: its file, named in errors)."""
        return parse_spec(cls, values, source=source)


@dataclass
class MemberRunSpec(MemberSpec):
    """A run of one member (``scripts/train_text.py``, ``scripts/train_vision.py``): its family's keys and these.

    ``family`` picks the section's other keys, as in an ensemble config's ``models:``.

    Attributes:
        data: The data section.
        output_dir: Run folder (one sub-folder per model).
        n_splits: Folds.
        seed: Seed of folds and training.

    Examples:
        >>> spec = MemberRunSpec.from_dict({"family": "vision", "architecture": "resnet18", "n_splits": 3})
        >>> type(spec).__name__, spec.architecture, spec.n_splits, spec.training.optimizer
        ('VisionMemberRunSpec', 'resnet18', 3, 'sgd')
    """

    data: dict[str, Any] = field(default_factory=lambda: {"demo": {}})
    output_dir: str = "outputs/run"
    n_splits: int = 5
    seed: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, source: str | None = None) -> MemberSpec:
        """Read a config mapping (``source``: its file, named in errors)."""
        return parse_spec(cls, values, source=source)
