"""Configuration of the Memotion visual classifier: any timm architecture + one head per problem."""

from __future__ import annotations

from typing import Any

from hf_memotion.models.heads import ProblemLabelsMixin
from hf_memotion.models.timm_backbone import TimmBackboneConfig

__all__ = ["MemotionVisionConfig"]


class MemotionVisionConfig(ProblemLabelsMixin, TimmBackboneConfig):
    r"""Configuration of :class:`MemotionVisionModel` and :class:`MemotionVisionForImageClassification`.

    Like transformers' ``TimmWrapperConfig``, the network is named by its timm ``architecture`` plus
    ``model_args`` for ``timm.create_model``; the ImageNet classifier is replaced by one linear head
    per problem (the paper's fine-tuning).

    Attributes:
        architecture: A timm model name (``"inception_resnet_v2"``, ``"polynet"``, ``"legacy_senet154"``,
            ``"pnasnet5large"``, ``"resnet50"``, ``"test_resnet"``, ...).
        model_args: Extra ``timm.create_model`` keyword arguments (e.g. ``{"drop_path_rate": 0.1}``).
        problems: Problem names this model predicts (one, or several from one forward pass).
        problem_labels: Label names per problem, for problems outside Memotion.
        class_weights: Loss weight per class, per problem (inverse class frequency in the paper).
        drop_rate: Dropout on the pooled features before the heads.
        num_labels, id2label: Relabel a one-problem model (see :class:`~hf_memotion.models.heads.ProblemLabelsMixin`).

    Examples:
        >>> config = MemotionVisionConfig(architecture="test_resnet", problems=["humour", "sentiment"])
        >>> config.num_labels, config.id2label[2]
        (5, 'sentiment:negative')
    """

    model_type = "memotion_vision"

    problems: list[str] | None = None
    problem_labels: dict[str, list[str]] | None = None
    class_weights: dict[str, list[float]] | None = None
    drop_rate: float = 0.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any):
        requested_labels = self._take_label_fields(kwargs)
        super().__post_init__(**kwargs)
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate}")
        self._finish_problems(*requested_labels)
