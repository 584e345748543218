"""The Memotion paper's textual models as ``PreTrainedModel``s (Section 4.3 of the Memotion paper).

backbone (any transformers encoder or decoder) -> BiLSTM -> dot-product self-attention -> pooling
(first token / last non-padding token / max) -> FFN -> one linear head per problem, trained with
class-weighted cross-entropy summed over problems.
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel

from hf_memotion.cards import ModelCardMixin
from hf_memotion.models.heads import MemotionClassifierOutput, ProblemHeads, split_logits
from hf_memotion.models.text.configuration_memotion_text import MemotionTextConfig

__all__ = [
    "MemotionTextForSequenceClassification",
    "MemotionTextModel",
    "MemotionTextPreTrainedModel",
    "pool_sequence",
]


def pool_sequence(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool ``(batch, seq, dim)`` to ``(batch, dim)`` over the non-padding positions.

    ``"first"`` takes the first non-padding token, ``"last"`` the last non-padding token (so both
    left- and right-padded batches give the right token), ``"max"`` the element-wise maximum.

    Example:
        >>> h = torch.arange(6.0).view(1, 3, 2)
        >>> pool_sequence(h, torch.tensor([[0, 1, 1]]), "first").tolist()
        [[2.0, 3.0]]
        >>> pool_sequence(h, torch.tensor([[1, 1, 0]]), "last").tolist()
        [[2.0, 3.0]]
    """
    mask = attention_mask.bool()
    positions = torch.arange(hidden.shape[1], device=hidden.device).expand_as(mask)
    if pooling == "max":
        filled = hidden.masked_fill(~mask[..., None], torch.finfo(hidden.dtype).min)
        return filled.max(dim=1).values
    if pooling == "last":
        index = torch.where(mask, positions, -1).max(dim=1).values
    elif pooling == "first":
        index = torch.where(mask, positions, hidden.shape[1]).min(dim=1).values
    else:
        raise ValueError(f"unknown pooling {pooling!r}; expected 'first', 'last' or 'max'")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index.clamp(0, hidden.shape[1] - 1)]


class DotProductSelfAttention(nn.Module):
    """Scaled dot-product self-attention over the BiLSTM states, padding keys masked out."""

    def __init__(self, in_features: int, size: int):
        super().__init__()
        self.query = nn.Linear(in_features, size)
        self.key = nn.Linear(in_features, size)
        self.value = nn.Linear(in_features, size)
        self.scale = 1.0 / math.sqrt(size)

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        scores = torch.bmm(self.query(states), self.key(states).transpose(1, 2)) * self.scale
        scores = scores.masked_fill(~attention_mask.bool()[:, None, :], torch.finfo(scores.dtype).min)
        return torch.bmm(scores.softmax(dim=-1), self.value(states))


class MemotionTextPreTrainedModel(ModelCardMixin, PreTrainedModel):
    """Base class: config class, weight initialisation, loading conventions, the card written on save."""

    config_class = MemotionTextConfig
    base_model_prefix = "memotion_text"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _supports_sdpa = True

    def card_defaults(self) -> dict:
        """What the config tells the card: the modality, the backbone, the problems."""
        text = self.config.text_config
        backbone = getattr(text, "_name_or_path", "") or getattr(text, "model_type", "transformer")
        return {"modality": "text", "backbone": backbone, "problems": list(self.config.problems)}


class MemotionTextModel(MemotionTextPreTrainedModel):
    """Backbone + BiLSTM + dot-product attention + pooling: a ``(batch, attention_size)`` text representation.

    Example:
        >>> from transformers import BertConfig
        >>> backbone = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ...                       intermediate_size=32)
        >>> config = MemotionTextConfig(text_config=backbone, lstm_hidden_size=8, attention_size=12, ffn_size=8)
        >>> model = MemotionTextModel(config).eval()
        >>> model(input_ids=torch.tensor([[2, 5, 7, 3]]), attention_mask=torch.ones(1, 4)).pooler_output.shape
        torch.Size([1, 12])
    """

    def __init__(self, config: MemotionTextConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.text_config)
        hidden = config.text_config.hidden_size
        self.lstm = nn.LSTM(
            hidden,
            config.lstm_hidden_size,
            num_layers=config.lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.lstm_layers > 1 else 0.0,
        )
        self.attention = DotProductSelfAttention(2 * config.lstm_hidden_size, config.attention_size)
        self.dropout = nn.Dropout(config.dropout)
        accepted = inspect.signature(self.backbone.forward).parameters
        self._backbone_takes_token_types = "token_type_ids" in accepted
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The backbone's token embeddings."""
        return self.backbone.get_input_embeddings()

    def _run_lstm(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the BiLSTM over the non-padding tokens only, whatever the padding side.

        Valid tokens are moved to the front of each row (order kept), packed so the LSTM never sees
        padding, then put back in place; padding positions get zeros.
        """
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        front = states.gather(1, order[..., None].expand_as(states))
        packed = nn.utils.rnn.pack_padded_sequence(front, mask.sum(dim=1).cpu(), batch_first=True, enforce_sorted=False)
        output, _ = self.lstm(packed)
        output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=states.shape[1])
        inverse = torch.argsort(order, dim=1)
        return output.gather(1, inverse[..., None].expand(-1, -1, output.shape[-1]))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ):
        """Encode a batch; returns ``last_hidden_state`` (attention output) and ``pooler_output``."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None:
            raise ValueError("pass input_ids (or inputs_embeds): tokenize the text with the model's tokenizer first")
        if reference.shape[1] == 0:
            raise ValueError("got a batch of empty token sequences; give every text at least one token")
        if attention_mask is None:
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        if not bool(attention_mask.bool().any(dim=1).all()):
            raise ValueError("a sequence in the batch has no unmasked token; give every text at least one token")
        backbone_inputs = {"attention_mask": attention_mask}
        if input_ids is not None:
            backbone_inputs["input_ids"] = input_ids
        else:
            backbone_inputs["inputs_embeds"] = inputs_embeds
        if token_type_ids is not None and self._backbone_takes_token_types:
            backbone_inputs["token_type_ids"] = token_type_ids
        states = self.backbone(**backbone_inputs).last_hidden_state
        lstm_states = self._run_lstm(self.dropout(states), attention_mask.bool())
        attended = self.dropout(self.attention(lstm_states, attention_mask))
        pooled = pool_sequence(attended, attention_mask, self.config.pooling)
        return BaseModelOutputWithPooling(last_hidden_state=attended, pooler_output=pooled)


class MemotionTextForSequenceClassification(MemotionTextPreTrainedModel):
    """The paper's textual classifier: :class:`MemotionTextModel` + FFN + one head per problem.

    With ``labels`` (``(batch,)`` for one problem, ``(batch, n_problems)`` for several, ``-100``
    ignored) the output carries the class-weighted cross-entropy summed over problems, so a plain
    ``Trainer`` trains it.

    Example:
        >>> from transformers import BertConfig
        >>> backbone = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ...                       intermediate_size=32)
        >>> config = MemotionTextConfig(text_config=backbone, problems=["sentiment", "humour"],
        ...                             lstm_hidden_size=8, attention_size=8, ffn_size=8)
        >>> model = MemotionTextForSequenceClassification(config).eval()
        >>> out = model(input_ids=torch.tensor([[2, 5, 3]]), labels=torch.tensor([[2, 1]]))
        >>> out.logits.shape, sorted(out.problem_logits), out.loss.ndim
        (torch.Size([1, 5]), ['humour', 'sentiment'], 0)
    """

    def __init__(self, config: MemotionTextConfig):
        super().__init__(config)
        self.memotion_text = MemotionTextModel(config)
        self.ffn = nn.Sequential(
            nn.Linear(config.attention_size, config.ffn_size), nn.GELU(), nn.Dropout(config.dropout)
        )
        self.heads = ProblemHeads(config.ffn_size, config.problem_labels, config.class_weights)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The backbone's token embeddings."""
        return self.memotion_text.get_input_embeddings()

    @classmethod
    def from_backbone(
        cls, backbone: str | os.PathLike, *, revision: str | None = None, **config_kwargs: Any
    ) -> MemotionTextForSequenceClassification:
        """Build a classifier around a pre-trained backbone (a Hub id such as ``"bert-large-uncased"`` or a folder).

        The backbone's weights are loaded with ``AutoModel.from_pretrained``; the BiLSTM, attention,
        FFN and heads start fresh, as in the paper's fine-tuning.

        Args:
            backbone: Hub id or local folder of any transformers encoder or decoder.
            revision: Hub revision of the backbone.
            **config_kwargs: :class:`MemotionTextConfig` fields (``problems``, ``lstm_layers``, ...).
        """
        pretrained = AutoModel.from_pretrained(backbone, revision=revision)
        model = cls(MemotionTextConfig(text_config=pretrained.config, **config_kwargs))
        missing, unexpected = model.memotion_text.backbone.load_state_dict(pretrained.state_dict(), strict=False)
        if unexpected or [k for k in missing if not k.endswith("position_ids")]:
            raise ValueError(f"backbone weights of {backbone} do not fit: missing {missing}, unexpected {unexpected}")
        return model

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> MemotionClassifierOutput:
        """Classify a batch; see the class docstring for ``labels``."""
        encoded = self.memotion_text(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
        )
        hidden = self.ffn(encoded.pooler_output)
        logits = self.heads(hidden)
        loss = self.heads.loss(logits, labels) if labels is not None else None
        return MemotionClassifierOutput(
            loss=loss,
            logits=logits,
            problem_logits=split_logits(logits, self.config.problem_labels),
            hidden_states=hidden,
        )
