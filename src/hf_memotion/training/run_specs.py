"""The typed specs of the Memotion training configs: a base model, stacking, and the three runs built of them.

Each is read by :func:`hf_memotion.specs.parse_spec` (an unknown key names file, section and the nearest
valid key); the defaults here are the only ones. ``scripts/train.py`` reads an :class:`EnsembleRunSpec`,
``scripts/train_text.py`` a :class:`TextRunSpec`, ``scripts/train_vision.py`` a :class:`VisionRunSpec`.

Examples:
    >>> spec = EnsembleRunSpec.from_dict({"models": [{"name": "bert", "modality": "text",
    ...                                               "training": {"epochs": 3, "bf16": True}}]})
    >>> spec.n_splits, spec.models[0].backbone, spec.models[0].training_arguments().extra
    (5, 'tiny:bert', {'bf16': True})
    >>> EnsembleRunSpec.from_dict({"models": [{"name": "bert", "modality": "text", "trainign": {}}]}, source="x.yaml")
    Traceback (most recent call last):
    ...
    hf_memotion.specs.SpecError: x.yaml, section 'models.0': unknown key 'trainign' (did you mean 'training'?); ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from hf_memotion.specs import deprecated_names, parse_spec
from hf_memotion.tasks import PROBLEM_NAMES

if TYPE_CHECKING:  # imported where used: reading a spec (and --help) needs no torch
    from hf_memotion.training.trainer import ClassifierTrainingArguments

__all__ = [
    "BaseModelRunSpec",
    "BaseModelSpec",
    "EnsembleRunSpec",
    "EvaluationSpec",
    "JobsSpec",
    "ModelEntry",
    "PlanSpec",
    "PruningSpec",
    "SearchSpec",
    "StackingSpec",
    "TextRunSpec",
    "VisionRunSpec",
    "expand_models",
]

MODALITIES = ("text", "vision", "multimodal")
LAYOUTS = ("multitask", "per_problem")
#: Problems whose labels are the same: motivational is binary in subtask B and C (``share_motivational``).
SHARED_PROBLEMS = {"motivational_intensity": "motivational"}


@dataclass
class SearchSpec:
    """The Optuna search of a textual model (Table 5b), run per problem under the model's own folds.

    One spec and one key for every config: ``search: {n_trials: 30}`` (``trials``, the ensemble configs' old key,
    is still read, with a deprecation warning).

    Attributes:
        n_trials: Trials per study (the paper: 30); finished trials count (a stopped search continues); 0: no
            search.
        space: Replaces :data:`~hf_memotion.training.search.TEXT_SEARCH_SPACE` (same keys or a subset; ranges
            as ``[low, high]``).
        seed: The sampler's seed (default: the run's).
    """

    spec_renamed: ClassVar[dict[str, str]] = {"trials": "n_trials"}

    n_trials: int = 30
    space: dict[str, Any] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if int(self.n_trials) < 0:
            raise ValueError(f"search.n_trials must be 0 (no search) or more, got {self.n_trials!r}")


#: Pruning methods: ``none`` (the paper's exhaustive search) for both modalities, successive halving for both
#: (the visual grid's rungs on the first fold; Optuna's ``SuccessiveHalvingPruner`` for the textual study), and
#: Optuna's Hyperband and median pruners for the textual study.
PRUNING_METHODS = {
    "vision": ("none", "successive_halving"),
    "text": ("none", "successive_halving", "hyperband", "median"),
    "multimodal": ("none",),  # a joint member trains with its settings as given: nothing to select
}


@dataclass
class PruningSpec:
    """Early stopping of hopeless candidates in a model's hyperparameter selection (default: none, the paper's).

    The visual learning-rate grid is pruned by successive halving: every rate trains the first fold for
    ``min_epochs`` epochs (its schedule compressed to them), the best ``1/reduction_factor`` continue for
    ``reduction_factor`` times as many epochs, and so on while more than one is left and the budget is below the
    configured epochs; the survivors are cross-validated on every fold as in the exhaustive search, and the best of
    them wins. The textual Optuna study is pruned by an Optuna pruner fed, after every epoch and at the end of every
    fold, with the trial's estimate of its objective (the first fold's best validation macro-F1 so far, then the
    finished folds' held-out macro-F1); its steps are the folds' epochs and ends. A pruned candidate's finished
    folds are kept; the winner is the best candidate that finished every fold.

    Attributes:
        method: ``"none"``, ``"successive_halving"`` (both modalities), ``"hyperband"`` or ``"median"`` (text).
        min_epochs: The first rung's budget, in epochs (the text pruners' ``min_resource``, the median pruner's
            warm-up); default: a tenth of the model's epochs, at least 1.
        reduction_factor: One candidate in ``reduction_factor`` continues at each rung.
        startup_trials: The median pruner's trials that are never pruned.

    Examples:
        >>> PruningSpec(method="successive_halving").first_rung(epochs=100)
        10
    """

    method: str = "none"
    min_epochs: int | None = None
    reduction_factor: int = 3
    startup_trials: int = 5

    def __post_init__(self) -> None:
        methods = sorted(set(PRUNING_METHODS["vision"] + PRUNING_METHODS["text"]))
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
        """The first rung's budget in epochs: ``min_epochs``, else a tenth of ``epochs`` (at least 1)."""
        if self.min_epochs is not None:
            return int(self.min_epochs)
        return max(1, math.ceil(float(epochs) / 10))

    def check(self, modality: str, model: str | None) -> None:
        """Refuse a method the modality's selection cannot run (one line naming the model and the choices)."""
        if self.method not in PRUNING_METHODS[modality]:
            where = f"model {model!r}: " if model else ""
            raise ValueError(
                f"{where}pruning.method {self.method!r} is for the textual search; a visual learning-rate grid prunes "
                f"by one of {list(PRUNING_METHODS[modality])}"
            )


@dataclass
class BaseModelSpec:
    """One base model of a config.

    Attributes:
        name: The model's name (its folder under ``models/``; required in an ensemble config).
        modality: ``"text"``, ``"vision"`` or ``"multimodal"`` (a joint image-text model).
        backbone: Text and multimodal: the text encoder, ``"tiny:<family>"`` or a Hub id / folder (a CLIP/SigLIP dual
            encoder gives its text tower).
        architecture: Vision and multimodal: the image network, any timm name (``"polynet"``, CLIP and SigLIP towers
            such as ``"vit_large_patch14_clip_224.openai"`` included).
        image_encoder: Multimodal: a transformers image tower by Hub id or folder instead of ``architecture`` (a
            dual encoder's included), or ``"dual"``: the image tower of the dual encoder in ``backbone``.
        problems: Problems to predict (default: all nine).
        layout: ``"multitask"`` (one model, one forward pass for all problems) or ``"per_problem"`` (the paper's).
        training: :class:`ClassifierTrainingArguments` fields and any stock ``TrainingArguments`` field (``bf16``,
            ``dataloader_num_workers``...), over the modality's defaults (text: the class's; vision:
            :data:`~hf_memotion.training.trainer.PAPER_VISION_TRAINING`); for vision a list as ``learning_rate``
            is the paper's grid (each value cross-validated, the best mean out-of-fold macro-F1 kept).
        search: Text: an Optuna search (:class:`SearchSpec`) run per problem before the model trains.
        model: Fields of the model's config (``MemotionTextConfig``, ``MemotionVisionConfig`` or
            ``MemotionMultimodalConfig``).
        tiny: Sizes of a tiny text backbone.
        processor: Overrides of the visual processor (``crop_size``...).
        ten_crop: Ten-crop for the visual model's evaluation and predictions.
        pretrained: Start from timm's pretrained weights.
        pretrained_file: A local weight file for timm (``pretrained_cfg_overlay={"file": ...}``).
        vise_backbone: Start a visual model from a VisE backbone (folder or Hub id).
        weighted_loss: Inverse-frequency class weights (the paper's loss).
        pruning: How its selection (the visual grid, the textual search) prunes hopeless candidates
            (:class:`PruningSpec`; default: the run's ``pruning``, else none).
    """

    name: str | None = None
    modality: str = "text"
    backbone: str = "tiny:bert"
    architecture: str = "test_resnet"
    image_encoder: str | None = None
    problems: list[str] | None = None
    layout: str = "multitask"
    training: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, Any] | None = None
    processor: dict[str, Any] | None = None
    ten_crop: bool = True
    pretrained: bool = False
    pretrained_file: str | None = None
    vise_backbone: str | None = None
    weighted_loss: bool = True
    search: SearchSpec | None = None
    pruning: PruningSpec | None = None

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(
                f"model {self.name!r}: modality must be 'text', 'vision' or 'multimodal', got {self.modality!r}"
            )
        if self.layout not in LAYOUTS:
            raise ValueError(f"model {self.name!r}: layout must be 'multitask' or 'per_problem', got {self.layout!r}")
        self.training = dict(self.training or {})
        grid = isinstance(self.training.get("learning_rate"), list)  # the visual recipe's learning-rate grid
        if grid and self.modality != "vision":
            raise ValueError(
                f"model {self.name!r}: a list of learning rates is the visual grid; a text model "
                "searches with 'search: {n_trials: N}' (the learning rate is in its space), a joint model takes one"
            )
        if grid and (not self.training["learning_rate"] or any(float(v) <= 0 for v in self.training["learning_rate"])):
            raise ValueError(
                f"model {self.name!r}: the learning-rate grid needs positive values, "
                f"got {self.training['learning_rate']!r}"
            )
        if self.search is not None and self.modality != "text":
            raise ValueError(
                f"model {self.name!r}: 'search' is the textual models' Optuna search; a visual model "
                "searches its learning rate from a list: training: {learning_rate: [...]}; a joint model trains with "
                "its training section as given"
            )
        if self.image_encoder is not None and self.modality != "multimodal":
            raise ValueError(
                f"model {self.name!r}: image_encoder is a joint model's transformers image tower; a visual model "
                "names its timm network in 'architecture' (CLIP and SigLIP towers included)"
            )
        if self.pruning is not None:
            self.pruning.check(self.modality, self.name)
        if self.search is not None and int(self.search.n_trials) == 0:
            self.search = None  # n_trials: 0 is no search
        self.training_arguments(**({"learning_rate": 1.0} if grid else {}))  # checked now, over the modality's defaults
        self.model = dict(self.model or {})
        self.problems = list(self.problems or PROBLEM_NAMES)

    def groups(self, share_motivational: bool = False) -> dict[str, list[str]]:
        """Models to train: ``{name: problems}``; one per problem under ``layout: per_problem``.

        With ``share_motivational`` (per-problem layout), ``motivational_intensity`` gets no model of its own: its
        labels are ``motivational``'s, whose model serves both (see :meth:`aliases`).
        """
        if self.layout == "multitask":
            return {self.name or "multitask": list(self.problems)}
        prefix = f"{self.name}-" if self.name else ""
        return {f"{prefix}{p}": [p] for p in self.problems if not (share_motivational and self.shares(p))}

    def shares(self, problem: str) -> bool:
        """Whether ``problem`` is served by another problem's per-problem model under ``share_motivational``."""
        return self.layout == "per_problem" and problem in SHARED_PROBLEMS and SHARED_PROBLEMS[problem] in self.problems

    def aliases(self, problems: list[str], share_motivational: bool = False) -> dict[str, str]:
        """``{problem: problem it reads}`` for a model trained on ``problems`` (one of :meth:`groups`)."""
        if not share_motivational:
            return {}
        return {a: p for a, p in SHARED_PROBLEMS.items() if p in problems and self.shares(a)}

    def learning_rates(self) -> list[float] | None:
        """The visual learning-rate grid (``training.learning_rate`` as a list), or ``None``."""
        rates = self.training.get("learning_rate")
        return [float(v) for v in rates] if isinstance(rates, list) else None

    def training_arguments(self, **overrides: Any) -> ClassifierTrainingArguments:
        """The training section as :class:`ClassifierTrainingArguments`, over the modality's defaults."""
        from hf_memotion.training.trainer import PAPER_VISION_TRAINING, ClassifierTrainingArguments

        base = PAPER_VISION_TRAINING.to_dict() if self.modality == "vision" else {}
        return ClassifierTrainingArguments.from_dict({**base, **self.training, **overrides})

    def recipe_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``train_text_classifier`` or ``train_vision_classifier`` (training excluded)."""
        common = {"model_kwargs": self.model, "weighted_loss": self.weighted_loss}
        if self.modality == "text":
            return {"backbone": self.backbone, "tiny_kwargs": self.tiny, **common}
        if self.modality == "multimodal":
            return {
                "architecture": self.architecture,
                "image_encoder": self.image_encoder,
                "backbone": self.backbone,
                "tiny_kwargs": self.tiny,
                "processor_kwargs": self.processor,
                "ten_crop": self.ten_crop,
                "pretrained": self.pretrained,
                **common,
            }
        return {
            "architecture": self.architecture,
            "processor_kwargs": self.processor,
            "ten_crop": self.ten_crop,
            "pretrained": self.pretrained,
            "vise_backbone": self.vise_backbone,
            "pretrained_cfg_overlay": {"file": str(self.pretrained_file)} if self.pretrained_file else None,
            **common,
        }


@dataclass
class ModelEntry:
    """One model to train, as a config entry expands (``layout: per_problem`` makes one per problem).

    Attributes:
        name: Its folder under ``models/`` (``"bert-humour"``).
        problems: The problems it is trained on.
        group: The config entry it comes from (its Table 7 row).
        spec: That entry's :class:`BaseModelSpec`.
        aliases: Problems it serves through another's labels (``share_motivational``): ``{alias: problem}``.

    Examples:
        >>> entry = ModelEntry("cnn", ["humour"], "cnn", BaseModelSpec(name="cnn", modality="vision"))
        >>> entry.modality, entry.training_arguments(learning_rate=0.1).learning_rate
        ('vision', 0.1)
    """

    name: str
    problems: list[str]
    group: str | None
    spec: BaseModelSpec
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def modality(self) -> str:
        """``"text"`` or ``"vision"`` (the spec's)."""
        return self.spec.modality

    @property
    def served_problems(self) -> list[str]:
        """Every problem it predicts: its own and its aliases."""
        return [*self.problems, *self.aliases]

    def training_arguments(self, **overrides: Any) -> ClassifierTrainingArguments:
        """Its trainer settings (the spec's ``training`` over the modality's defaults, then ``overrides``)."""
        return self.spec.training_arguments(**overrides)


def inherit_pruning(models: list[BaseModelSpec], pruning: PruningSpec) -> None:
    """Give every model without a ``pruning`` of its own the run's (checked against the model's modality)."""
    for model in models:
        if model.pruning is None:
            model.pruning = pruning
            pruning.check(model.modality, model.name)


def expand_models(models: list[BaseModelSpec], share_motivational: bool = False) -> list[ModelEntry]:
    """One :class:`ModelEntry` per trained model: ``layout: per_problem`` (the paper's) makes one per problem.

    Examples:
        >>> spec = BaseModelSpec(name="bert", layout="per_problem", problems=["humour", "sarcasm"])
        >>> [(e.name, e.problems) for e in expand_models([spec])]
        [('bert-humour', ['humour']), ('bert-sarcasm', ['sarcasm'])]
    """
    return [
        ModelEntry(name, problems, spec.name, spec, spec.aliases(problems, share_motivational))
        for spec in models
        for name, problems in spec.groups(share_motivational).items()
    ]


@dataclass
class StackingSpec:
    """The meta-estimators: ``methods`` (candidates, or one per problem), ``features`` (``"own"``/``"all"``), ``cv``.

    ``calibration``: the map from each problem's meta-estimator output to calibrated probabilities, fitted on that
    meta-estimator's out-of-fold output (:mod:`hf_memotion.models.ensemble.calibration`): ``"auto"`` (``temperature``
    or ``none``, by out-of-fold log-loss: the maps that keep every answer), ``"temperature"``, ``"sigmoid"``,
    ``"isotonic"`` (these two change answers) or ``"none"`` (the paper's: the meta-estimators' outputs as they are).
    """

    methods: Any = None
    features: str = "own"
    cv: int = 5
    calibration: Literal["auto", "none", "temperature", "sigmoid", "isotonic"] = "auto"


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
        data: The data section (:func:`hf_memotion.config.load_data`).
        output_dir: Run folder.
        seed: Seed of folds, training and stacking.
        n_splits: Folds of every base model.
        holdout: Evaluation share carved from ``train`` when there is no labelled test split.
        processes: Refuse to run unless exactly this many processes were launched.
        models: The base models.
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
        pruning: The pruning of every searched model that has no ``pruning`` of its own (:class:`PruningSpec`;
            default: none, the paper's exhaustive search): ``pruning.method=successive_halving`` on the command
            line prunes the visual grids and the textual studies alike.
    """

    data: dict[str, Any] = field(default_factory=lambda: {"demo": {}})
    output_dir: str = "outputs/run"
    seed: int = 0
    n_splits: int = 5
    holdout: float = 0.1
    processes: int | None = None
    models: list[BaseModelSpec] = field(default_factory=list)
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
class BaseModelRunSpec(BaseModelSpec):
    """A run of one kind of base model (``scripts/train_text.py``, ``scripts/train_vision.py``).

    Attributes:
        data: The data section.
        output_dir: Run folder (one sub-folder per model).
        n_splits: Folds.
        seed: Seed of folds and training.
    """

    data: dict[str, Any] = field(default_factory=lambda: {"demo": {}})
    output_dir: str = "outputs/run"
    n_splits: int = 5
    seed: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, source: str | None = None) -> BaseModelRunSpec:
        """Read a config mapping (``source``: its file, named in errors)."""
        return parse_spec(cls, values, source=source)


@dataclass
class TextRunSpec(BaseModelRunSpec):
    """``scripts/train_text.py``: one textual model per group of problems (after its Optuna search, if any)."""

    output_dir: str = "outputs/text"


@dataclass
class VisionRunSpec(BaseModelRunSpec):
    """``scripts/train_vision.py``: one visual model per group of problems; a learning-rate list is a grid."""

    modality: str = "vision"
    output_dir: str = "outputs/vision"


#: Old names, still served with a ``FutureWarning``.
__getattr__ = deprecated_names(__name__, {"ModelSearchSpec": "SearchSpec"})
