"""Configuration of the joint image-text base model: an image encoder, a text encoder, a fusion, the problem heads."""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

from hf_memotion.models.heads import ProblemLabelsMixin
from hf_memotion.models.text.configuration_memotion_text import default_pooling
from hf_memotion.models.towers import TOWER_POOLING, is_dual_encoder

__all__ = ["FUSIONS", "TEXT_POOLINGS", "MemotionMultimodalConfig"]

#: How the two projected embeddings meet: ``concat`` (side by side), ``interaction`` (their outer product, flattened:
#: Hate-CLIPper's cross-fusion, every image feature times every text feature) or ``align`` (their elementwise product).
FUSIONS = ("concat", "interaction", "align")
#: How the text encoder's sequence becomes one vector: the model's own ``pooler`` output (CLIP: the end-of-text
#: token; SigLIP: its pooler head), or the first / last non-padding token, or the mean over the tokens.
TEXT_POOLINGS = ("pooler", "first", "last", "mean")


class MemotionMultimodalConfig(ProblemLabelsMixin, PretrainedConfig):
    r"""Configuration of :class:`MemotionMultimodalModel` and :class:`MemotionMultimodalForClassification`.

    Both encoders' configs are stored inside, so a saved model loads with no download: ``vision_config`` is a timm
    network (``{"model_type": "memotion_vision", "architecture": ...}``, any timm name, CLIP and SigLIP image towers
    included) or a transformers image tower (``CLIPVisionConfig``, ``SiglipVisionConfig``); ``text_config`` any
    transformers text encoder (``CLIPTextConfig``, ``SiglipTextConfig``, BERT...). A CLIP or SigLIP dual encoder's
    config (``CLIPConfig``) given as ``dual_encoder_config`` fills both.

    Attributes:
        vision_config: The image encoder's config (default: timm's ``resnet50``).
        text_config: The text encoder's config (default: BERT).
        problems: Problem names this model predicts (one, or several from one forward pass).
        problem_labels: Label names per problem, for problems outside Memotion.
        class_weights: Loss weight per class, per problem (inverse class frequency in the paper).
        fusion: One of :data:`FUSIONS`.
        projection_dim: Width each embedding is projected to before the fusion (``interaction`` makes
            ``projection_dim ** 2`` features).
        text_pooling: One of :data:`TEXT_POOLINGS`; ``None``: the tower's own (:data:`~hf_memotion.models.towers.
            TOWER_POOLING`), else the paper's pooling for the backbone type.
        freeze_image_encoder: Keep the image encoder's weights (and its normalisation statistics) as loaded.
        freeze_text_encoder: Keep the text encoder's weights as loaded.
        ffn_size: Hidden size of the feed-forward layer between the fusion and the heads.
        dropout: Dropout on the fused features and after the feed-forward layer.
        max_length: Tokens kept per text when preprocessing.
        num_labels, id2label: Relabel a one-problem model (see :class:`~hf_memotion.models.heads.ProblemLabelsMixin`).

    Examples:
        >>> from transformers import BertConfig
        >>> text = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        >>> config = MemotionMultimodalConfig(
        ...     vision_config={"model_type": "memotion_vision", "architecture": "test_resnet"}, text_config=text,
        ...     problems=["humour_intensity"], fusion="interaction", projection_dim=8)
        >>> config.vision_config.architecture, config.text_pooling, config.num_labels
        ('test_resnet', 'first', 4)
    """

    model_type = "memotion_multimodal"
    sub_configs_defaults: ClassVar[dict] = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="memotion_vision"),
    }
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["problem_logits", "hidden_states"]

    vision_config: dict | PretrainedConfig | None = None
    text_config: dict | PretrainedConfig | None = None
    problems: list[str] | None = None
    problem_labels: dict[str, list[str]] | None = None
    class_weights: dict[str, list[float]] | None = None
    fusion: str = "interaction"
    projection_dim: int = 64
    text_pooling: str | None = None
    freeze_image_encoder: bool = False
    freeze_text_encoder: bool = False
    ffn_size: int = 256
    dropout: float = 0.1
    max_length: int = 64
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any):
        requested_labels = self._take_label_fields(kwargs)
        dual = kwargs.pop("dual_encoder_config", None)
        if dual is not None:  # one CLIP/SigLIP config gives both towers
            if isinstance(dual, dict):
                dual = AutoConfig.for_model(**dual)
            if not is_dual_encoder(dual):
                raise ValueError(
                    f"dual_encoder_config must be a CLIP or SigLIP dual encoder's config, got a {type(dual).__name__}; "
                    "give vision_config and text_config instead"
                )
            self.vision_config = self.vision_config if self.vision_config is not None else dual.vision_config
            self.text_config = self.text_config if self.text_config is not None else dual.text_config
        super().__post_init__(**kwargs)
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        for name in ("projection_dim", "ffn_size", "max_length"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("vision_config", "text_config"):
            if is_dual_encoder(getattr(self, name)):
                raise ValueError(f"{name} is a whole dual encoder's config: pass it as dual_encoder_config")
        if self.text_pooling is None:
            model_type = self.text_config.model_type
            self.text_pooling = TOWER_POOLING.get(model_type) or default_pooling(model_type)
        if self.text_pooling not in TEXT_POOLINGS:
            raise ValueError(
                f"text_pooling must be one of {TEXT_POOLINGS} or None (automatic), got {self.text_pooling!r}"
            )
        self._finish_problems(*requested_labels)
