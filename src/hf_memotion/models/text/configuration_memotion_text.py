"""Configuration of the Memotion text classifier: any transformers backbone + BiLSTM + attention + FFN."""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

from hf_memotion.models.heads import ProblemLabelsMixin

__all__ = ["POOLING_BY_MODEL_TYPE", "MemotionTextConfig", "default_pooling"]

#: Pooling the paper uses per backbone family (Section 4.3): the first ([CLS]) token for BERT-like
#: encoders, the last non-padding token for GPT-2 and XLNet, max-pooling for Transformer-XL.
#: CLIP's and SigLIP's text towers summarise a text in its last token (CLIP's end-of-text token; SigLIP's pooler reads
#: the last position), so the head pools there too.
POOLING_BY_MODEL_TYPE = {
    "xlnet": "last",
    "transfo-xl": "max",
    "transfo_xl": "max",
    "clip_text_model": "last",
    "siglip_text_model": "last",
    "siglip2_text_model": "last",
}
POOLINGS = ("first", "last", "max")
LSTM_IMPLEMENTATIONS = ("auto", "packed", "masked")


def default_pooling(model_type: str) -> str:
    """The paper's pooling for a backbone type; decoder-only families (causal LM only) get ``"last"``.

    Examples:
        >>> default_pooling("bert"), default_pooling("gpt2"), default_pooling("xlnet"), default_pooling("transfo-xl")
        ('first', 'last', 'last', 'max')
    """
    if model_type in POOLING_BY_MODEL_TYPE:
        return POOLING_BY_MODEL_TYPE[model_type]
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    causal_only = (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )
    return "last" if causal_only else "first"


class MemotionTextConfig(ProblemLabelsMixin, PretrainedConfig):
    r"""Configuration of :class:`MemotionTextModel` and :class:`MemotionTextForSequenceClassification`.

    The backbone's own config is stored inside (``text_config``), so a saved model loads with no
    download. Defaults follow the paper's search space (Table 5b of the Memotion paper).

    Attributes:
        text_config: The backbone's config (a ``PretrainedConfig`` or its dict); default: BERT.
        problems: Problem names this model predicts: one (the paper's setting) or several (one
            backbone pass for all); Memotion names take their labels from :mod:`hf_memotion.tasks`.
        problem_labels: Label names per problem, for problems outside Memotion (or to override).
        class_weights: Loss weight per class, per problem (inverse class frequency in the paper).
        lstm_layers: BiLSTM layers (1 or 2).
        lstm_hidden_size: BiLSTM size per direction.
        attention_size: Size of the dot-product self-attention's queries, keys and values.
        ffn_size: Hidden size of the feed-forward layer before the heads.
        dropout: Dropout after the backbone, the attention and the FFN (0.0-0.3 in the paper).
        pooling: ``"first"``, ``"last"`` (last non-padding token, left or right padding) or
            ``"max"``; ``None`` chooses the paper's pooling for the backbone type.
        max_length: Tokens kept per text when preprocessing (longer texts are truncated).
        lstm_implementation: ``"packed"``, ``"masked"`` (no packing: ``torch.export``/``torch.compile``; same
            outputs) or ``"auto"`` (masked while compiling, packed otherwise).
        num_labels, id2label: Relabel a one-problem model (see :class:`~hf_memotion.models.heads.ProblemLabelsMixin`).

    Examples:
        >>> from transformers import BertConfig
        >>> backbone = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        >>> config = MemotionTextConfig(text_config=backbone, problems=["humour", "sarcasm"], lstm_hidden_size=16)
        >>> config.pooling, config.num_labels, config.id2label[0]
        ('first', 4, 'humour:not_funny')
    """

    model_type = "memotion_text"
    sub_configs_defaults: ClassVar[dict] = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["problem_logits", "hidden_states"]

    text_config: dict | PretrainedConfig | None = None
    problems: list[str] | None = None
    problem_labels: dict[str, list[str]] | None = None
    class_weights: dict[str, list[float]] | None = None
    lstm_layers: int = 1
    lstm_hidden_size: int = 256
    attention_size: int = 256
    ffn_size: int = 256
    dropout: float = 0.1
    pooling: str | None = None
    max_length: int = 128
    lstm_implementation: str = "auto"
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any):
        requested_labels = self._take_label_fields(kwargs)
        super().__post_init__(**kwargs)
        if self.lstm_implementation not in LSTM_IMPLEMENTATIONS:
            raise ValueError(
                f"lstm_implementation must be one of {LSTM_IMPLEMENTATIONS}, got {self.lstm_implementation!r}"
            )
        if self.lstm_layers not in (1, 2):
            raise ValueError(f"lstm_layers must be 1 or 2 (the paper's range), got {self.lstm_layers}")
        for name in ("lstm_hidden_size", "attention_size", "ffn_size", "max_length"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.pooling is None:
            self.pooling = default_pooling(self.text_config.model_type)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS} or None (automatic), got {self.pooling!r}")
        self._finish_problems(*requested_labels)
