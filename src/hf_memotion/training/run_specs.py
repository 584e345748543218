"""The typed specs of the Memotion training configs: a base model, stacking, and the three runs built of them.

Each is read by :func:`hf_memotion.specs.parse_spec` (an unknown key names file, section and the nearest
valid key); the defaults here are the only ones. ``scripts/train.py`` reads an :class:`EnsembleRunSpec`,
``scripts/train_text.py`` a :class:`TextRunSpec`, ``scripts/train_vision.py`` a :class:`VisionRunSpec`.

Example:
    >>> spec = EnsembleRunSpec.from_dict({"models": [{"name": "bert", "modality": "text",
    ...                                               "training": {"epochs": 3, "bf16": True}}]})
    >>> spec.n_splits, spec.models[0].backbone, spec.models[0].training_config().extra
    (5, 'tiny:bert', {'bf16': True})
    >>> EnsembleRunSpec.from_dict({"models": [{"name": "bert", "modality": "text", "trainign": {}}]}, source="x.yaml")
    Traceback (most recent call last):
    ...
    hf_memotion.specs.SpecError: x.yaml, section 'models.0': unknown key 'trainign' (did you mean 'training'?); ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hf_memotion.specs import parse_spec
from hf_memotion.tasks import PROBLEM_NAMES
from hf_memotion.training.trainer import ClassifierTrainingConfig

__all__ = [
    "BaseModelRunSpec",
    "BaseModelSpec",
    "EnsembleRunSpec",
    "SearchSpec",
    "StackingSpec",
    "TextRunSpec",
    "VisionRunSpec",
]

MODALITIES = ("text", "vision")
LAYOUTS = ("multitask", "per_problem")


@dataclass
class BaseModelSpec:
    """One base model of a config.

    Attributes:
        name: The model's name (its folder under ``models/``; required in an ensemble config).
        modality: ``"text"`` or ``"vision"``.
        backbone: Text: ``"tiny:<family>"`` or a Hub id / folder.
        architecture: Vision: any timm name (``"polynet"`` included).
        problems: Problems to predict (default: all nine).
        layout: ``"multitask"`` (one model, one forward pass for all problems) or ``"per_problem"`` (the paper's).
        training: :class:`ClassifierTrainingConfig` fields and any stock ``TrainingArguments`` field (``bf16``,
            ``dataloader_num_workers``...); for vision a list as ``learning_rate`` is the paper's grid.
        model: Fields of the model's config (``MemotionTextConfig`` or ``MemotionVisionConfig``).
        tiny: Sizes of a tiny text backbone.
        processor: Overrides of the visual processor (``crop_size``...).
        ten_crop: Ten-crop for the visual model's evaluation and predictions.
        pretrained: Start from timm's pretrained weights.
        pretrained_file: A local weight file for timm (``pretrained_cfg_overlay={"file": ...}``).
        vise_backbone: Start a visual model from a VisE backbone (folder or Hub id).
        weighted_loss: Inverse-frequency class weights (the paper's loss).
    """

    name: str | None = None
    modality: str = "text"
    backbone: str = "tiny:bert"
    architecture: str = "test_resnet"
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

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"model {self.name!r}: modality must be 'text' or 'vision', got {self.modality!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"model {self.name!r}: layout must be 'multitask' or 'per_problem', got {self.layout!r}")
        self.training = dict(self.training or {})
        grid = isinstance(self.training.get("learning_rate"), list)  # the visual recipe's learning-rate grid
        ClassifierTrainingConfig.from_dict(
            {k: v for k, v in self.training.items() if not (grid and k == "learning_rate")}
        )
        self.model = dict(self.model or {})
        self.problems = list(self.problems or PROBLEM_NAMES)

    def groups(self) -> dict[str, list[str]]:
        """Models to train: ``{name: problems}``; one per problem under ``layout: per_problem``."""
        if self.layout == "multitask":
            return {self.name or "multitask": list(self.problems)}
        prefix = f"{self.name}-" if self.name else ""
        return {f"{prefix}{p}": [p] for p in self.problems}

    def training_config(self, **overrides: Any) -> ClassifierTrainingConfig:
        """The training section as :class:`ClassifierTrainingConfig` (the recipe's defaults under it)."""
        return ClassifierTrainingConfig.from_dict({**self.training, **overrides})

    def recipe_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``train_text_classifier`` or ``train_vision_classifier`` (training excluded)."""
        common = {"model_kwargs": self.model, "weighted_loss": self.weighted_loss}
        if self.modality == "text":
            return {"backbone": self.backbone, "tiny_kwargs": self.tiny, **common}
        return {"architecture": self.architecture, "processor_kwargs": self.processor, "ten_crop": self.ten_crop,
                "pretrained": self.pretrained, "vise_backbone": self.vise_backbone,
                "pretrained_cfg_overlay": {"file": str(self.pretrained_file)} if self.pretrained_file else None,
                **common}  # fmt: skip


@dataclass
class StackingSpec:
    """The meta-estimators: ``methods`` (candidates, or one per problem), ``features`` (``"own"``/``"all"``), ``cv``."""

    methods: Any = None
    features: str = "own"
    cv: int = 5


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

    def __post_init__(self) -> None:
        if self.bf16_check not in (True, False, "auto"):
            raise ValueError(f"bf16_check must be true, false or 'auto', got {self.bf16_check!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, source: str | None = None) -> EnsembleRunSpec:
        """Read a config mapping (``source``: its file, named in errors)."""
        return parse_spec(cls, values, source=source)


@dataclass
class SearchSpec:
    """The Optuna search of a text run: ``n_trials`` (> 0 runs it first), ``space`` (default: Table 5b's)."""

    n_trials: int = 0
    space: dict[str, Any] | None = None


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
    """``scripts/train_text.py``: one textual model per group of problems (optionally after a search).

    Attributes:
        search: The hyperparameter search.
    """

    output_dir: str = "outputs/text"
    search: SearchSpec = field(default_factory=SearchSpec)


@dataclass
class VisionRunSpec(BaseModelRunSpec):
    """``scripts/train_vision.py``: one visual model per group of problems; a learning-rate list is a grid."""

    modality: str = "vision"
    output_dir: str = "outputs/vision"
