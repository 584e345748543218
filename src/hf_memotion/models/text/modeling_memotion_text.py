"""The Memotion paper's textual models as ``PreTrainedModel``s (Section 4.3 of the Memotion paper).

backbone (any transformers encoder or decoder) -> BiLSTM -> dot-product self-attention -> pooling
(first token / last non-padding token / max) -> FFN -> one linear head per problem, trained with
class-weighted cross-entropy summed over problems.

The BiLSTM reads only each text's tokens, whatever the padding side, in one of two ways with the same outputs
(``config.lstm_implementation``): ``"packed"`` (``pack_padded_sequence``, the eager default) or ``"masked"``
(each direction run over aligned tokens, no packing: what ``torch.export`` and ``torch.compile`` can trace;
``"auto"`` picks it while compiling).
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import can_return_tuple, is_tracing, logging

from hf_memotion.cards import ModelCardMixin
from hf_memotion.models.heads import MemotionClassifierOutput, ProblemHeads, split_logits
from hf_memotion.models.text.configuration_memotion_text import MemotionTextConfig
from hf_memotion.models.text.preprocessing import TextFeeding
from hf_memotion.models.towers import build_tower, load_tower

logger = logging.get_logger(__name__)

__all__ = [
    "MemotionTextForSequenceClassification",
    "MemotionTextModel",
    "MemotionTextPreTrainedModel",
    "front_alignment",
    "pool_sequence",
]


def front_alignment(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The permutation that moves each row's valid tokens to its front (order kept), and its inverse.

    ``order[b, j]`` is the position whose token goes to place ``j``; ``inverse[b, i]`` is where position ``i``
    goes. The same permutation as a stable argsort of the padding flags, from cumulative sums and one scatter:
    ops every exporter translates (ONNX has no stable sort).

    Examples:
        >>> order, inverse = front_alignment(torch.tensor([[False, True, True, False, True]]))
        >>> order.tolist(), inverse.tolist()
        ([[1, 2, 4, 0, 3]], [[3, 0, 1, 4, 2]])
    """
    mask = mask.bool()
    valid = mask.to(torch.long)
    lengths = valid.sum(dim=1, keepdim=True)
    inverse = torch.where(mask, valid.cumsum(dim=1) - 1, lengths + (1 - valid).cumsum(dim=1) - 1)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(inverse)
    order = torch.zeros_like(inverse).scatter(1, inverse, positions)
    return order, inverse


def pool_sequence(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool ``(batch, seq, dim)`` to ``(batch, dim)`` over the non-padding positions.

    ``"first"`` takes the first non-padding token, ``"last"`` the last non-padding token (so both
    left- and right-padded batches give the right token), ``"max"`` the element-wise maximum.

    Examples:
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
    input_modalities = ("text",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    # checkpoints saved before the backbone was built without its (unused) pooler
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = [r"backbone\.pooler\."]

    def card_defaults(self) -> dict:
        """What the config tells the card: how the model is made and loaded, the backbone, the problems."""
        text = self.config.text_config
        backbone = getattr(text, "_name_or_path", "") or getattr(text, "model_type", "transformer")
        card = {
            "label": "text",
            "pipeline_tag": "text-classification",
            "summary": f"the `{backbone}` backbone with a BiLSTM, dot-product attention, pooling and a feed-forward "
            "head per problem",
            "auto_model": "AutoModelForSequenceClassification",
            "auto_preprocessor": "AutoTokenizer",
            "network": backbone,
        }
        return {"card": card, "problems": list(self.config.problems)}

    def _init_weights(self, module: nn.Module) -> None:
        """Transformers' initialisation (linear, LSTM, ...; the backbone keeps its own), and the class weights."""
        super()._init_weights(module)
        if isinstance(module, ProblemHeads):
            module.reset_class_weights()

    def get_backbone(self) -> PreTrainedModel:
        """The transformers backbone (encoder or decoder) under the BiLSTM."""
        text = self if isinstance(self, MemotionTextModel) else self.memotion_text
        return text.backbone


def _drop_unused_pooler(backbone: PreTrainedModel) -> None:
    """Remove a BERT-like encoder's pooler, which the BiLSTM head never reads.

    An unused pooler gets no gradient (DDP without ``find_unused_parameters`` fails on it). It is removed after
    construction rather than never built, so the random initialisation draws (and seeded results) stay as they
    were; encoders built with ``add_pooling_layer`` accept ``pooler = None``.
    """
    backbone_class = type(backbone)
    if "add_pooling_layer" in inspect.signature(backbone_class.__init__).parameters and hasattr(backbone, "pooler"):
        backbone.pooler = None


def _select_hidden_states(states: tuple, wanted: bool | list[int]) -> tuple:
    """All states, or (``output_hidden_states=[i, ...]``) the selected ones with ``None`` elsewhere."""
    if not isinstance(wanted, (list, tuple)):
        return states
    kept = {i % len(states) for i in wanted}
    return tuple(state if i in kept else None for i, state in enumerate(states))


def _check_text_inputs(reference: torch.Tensor | None, attention_mask: torch.Tensor) -> None:
    if is_tracing(attention_mask):  # data-dependent checks need values: eager runs keep them
        return
    if reference.shape[1] == 0:
        raise ValueError("got a batch of empty token sequences; give every text at least one token")
    if not bool(attention_mask.bool().any(dim=1).all()):
        raise ValueError("a sequence in the batch has no unmasked token; give every text at least one token")


class MemotionTextModel(MemotionTextPreTrainedModel):
    """Backbone + BiLSTM + dot-product attention + pooling: a ``(batch, attention_size)`` text representation.

    Examples:
        >>> from transformers import BertConfig
        >>> backbone = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ...                       intermediate_size=32)
        >>> config = MemotionTextConfig(text_config=backbone, lstm_hidden_size=8, attention_size=12, ffn_size=8)
        >>> model = MemotionTextModel(config).eval()
        >>> out = model(input_ids=torch.tensor([[2, 5, 7, 3]]), output_hidden_states=True)
        >>> out.pooler_output.shape, len(out.hidden_states)  # embeddings + 1 layer, then the BiLSTM and attention
        (torch.Size([1, 12]), 4)
    """

    def __init__(self, config: MemotionTextConfig):
        super().__init__(config)
        self.backbone = build_tower(config.text_config)  # AutoModel maps no SigLIP tower
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
        self._backbone_takes_embeddings = "inputs_embeds" in accepted
        self._backbone_masks_padding = TextFeeding.of_member(config).masks_padding  # SigLIP's attends to it
        self.post_init()
        _drop_unused_pooler(self.backbone)

    def get_input_embeddings(self) -> nn.Module:
        """The backbone's token embeddings."""
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the backbone's token embeddings (``resize_token_embeddings`` uses it)."""
        self.backbone.set_input_embeddings(value)

    def _run_lstm(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the BiLSTM over the non-padding tokens only, whatever the padding side.

        Valid tokens are moved to the front of each row (order kept), run through the BiLSTM (packed, or
        masked: see the module docstring), then put back in place; padding positions get zeros.
        """
        order, inverse = front_alignment(mask)
        front = states.gather(1, order[..., None].expand_as(states))
        lengths = mask.sum(dim=1)
        implementation = self.config.lstm_implementation
        if implementation == "auto":
            implementation = "masked" if is_tracing(states) else "packed"
        if implementation == "packed":
            packed = nn.utils.rnn.pack_padded_sequence(front, lengths.cpu(), batch_first=True, enforce_sorted=False)
            output, _ = self.lstm(packed)
            output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=states.shape[1])
        else:
            output = self._masked_lstm(front, lengths)
        return output.gather(1, inverse[..., None].expand(-1, -1, output.shape[-1]))

    def _masked_lstm(self, front: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The BiLSTM over front-aligned rows without packing; each direction reads only a row's tokens.

        The forward direction reads the rows as they are (padding comes after the tokens); the backward one
        reads each row's tokens reversed in place, so it too starts at the last token. ``torch.lstm`` is the op
        ``nn.LSTM`` itself calls, here one layer and direction at a time with the module's own weights.
        """
        batch, length = front.shape[:2]
        positions = torch.arange(length, device=front.device).expand(batch, length)
        valid = positions < lengths[:, None]
        reverse = torch.where(valid, lengths[:, None] - 1 - positions, positions)
        out = front
        for layer in range(self.lstm.num_layers):
            if layer > 0:
                out = nn.functional.dropout(out, self.lstm.dropout, self.training)
            directions = []
            for suffix, index in (("", None), ("_reverse", reverse)):
                weights = [
                    getattr(self.lstm, f"{name}_l{layer}{suffix}")
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                ]
                inputs = out if index is None else out.gather(1, index[..., None].expand_as(out))
                state = inputs.new_zeros(1, batch, self.lstm.hidden_size)
                result, _, _ = torch.lstm(inputs, (state, state), weights, True, 1, 0.0, self.training, False, True)
                if index is not None:
                    result = result.gather(1, index[..., None].expand_as(result))
                directions.append(result)
            out = torch.cat(directions, dim=-1) * valid[..., None].to(front.dtype)
        return out

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """Encode a batch: ``last_hidden_state`` (attention output), ``pooler_output``, optional states/attentions.

        ``hidden_states`` (``output_hidden_states=True``) are the backbone's per-layer states followed by the
        BiLSTM's and the self-attention's (a list of indices keeps those, ``None`` in the other places);
        ``attentions`` are the backbone's.
        """
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None:
            raise ValueError("pass input_ids (or inputs_embeds): tokenize the text with the model's tokenizer first")
        if input_ids is None and not self._backbone_takes_embeddings:
            raise ValueError(
                f"the {type(self.backbone).__name__} backbone reads token ids only, not inputs_embeds: pass input_ids"
            )
        if attention_mask is None:
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        _check_text_inputs(reference, attention_mask)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        backbone_inputs = {
            "attention_mask": attention_mask if self._backbone_masks_padding else None,
            "return_dict": True,
        }
        if input_ids is not None:
            backbone_inputs["input_ids"] = input_ids
        else:
            backbone_inputs["inputs_embeds"] = inputs_embeds
        if token_type_ids is not None and self._backbone_takes_token_types:
            backbone_inputs["token_type_ids"] = token_type_ids
        if output_hidden_states:
            backbone_inputs["output_hidden_states"] = True
        if output_attentions:
            backbone_inputs["output_attentions"] = True
        encoded = self.backbone(**backbone_inputs)
        if output_attentions and not encoded.attentions:  # as transformers' own models: a warning, no weights
            logger.warning_once(
                f"output_attentions: the backbone's {self.config.text_config._attn_implementation!r} attention "
                "returns no weights; load the model with attn_implementation='eager' (or call "
                "model.set_attn_implementation('eager'))"
            )
        lstm_states = self._run_lstm(self.dropout(encoded.last_hidden_state), attention_mask.bool())
        attended = self.dropout(self.attention(lstm_states, attention_mask))
        pooled = pool_sequence(attended, attention_mask, self.config.pooling)
        hidden_states = None
        if output_hidden_states:
            hidden_states = _select_hidden_states(
                (*(encoded.hidden_states or ()), lstm_states, attended), output_hidden_states
            )
        return BaseModelOutputWithPooling(
            last_hidden_state=attended,
            pooler_output=pooled,
            hidden_states=hidden_states,
            attentions=encoded.attentions if output_attentions else None,
        )


class MemotionTextForSequenceClassification(MemotionTextPreTrainedModel):
    """The paper's textual classifier: :class:`MemotionTextModel` + FFN + one head per problem.

    With ``labels`` (``(batch,)`` for one problem, ``(batch, n_problems)`` for several, ``-100``
    ignored) the output carries the class-weighted cross-entropy summed over problems, so a plain
    ``Trainer`` trains it (``config.problem_type`` selects another loss: see :meth:`ProblemHeads.loss`).

    Examples:
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

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the backbone's token embeddings (``resize_token_embeddings`` uses it)."""
        self.memotion_text.set_input_embeddings(value)

    @classmethod
    def from_backbone(
        cls, backbone: str | os.PathLike, *, revision: str | None = None, **config_kwargs: Any
    ) -> MemotionTextForSequenceClassification:
        """Build a classifier around a pre-trained backbone (a Hub id such as ``"bert-large-uncased"`` or a folder).

        A CLIP or SigLIP dual encoder (``"openai/clip-vit-large-patch14"``) gives its text tower.

        The backbone's weights are loaded by its class's ``from_pretrained``
        (:func:`~hf_memotion.models.towers.load_tower`); the BiLSTM, attention, FFN and heads start fresh, as in the
        paper's fine-tuning.

        Args:
            backbone: Hub id or local folder of any transformers encoder or decoder.
            revision: Hub revision of the backbone.
            **config_kwargs: :class:`MemotionTextConfig` fields (``problems``, ``lstm_layers``, ...).
        """
        pretrained = load_tower(backbone, "text", revision=revision)  # a dual encoder (CLIP, SigLIP): its text tower
        model = cls(MemotionTextConfig(text_config=pretrained.config, **config_kwargs))
        weights = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("pooler.")}
        missing, unexpected = model.memotion_text.backbone.load_state_dict(weights, strict=False)
        if unexpected or [k for k in missing if not k.endswith("position_ids")]:
            raise ValueError(f"backbone weights of {backbone} do not fit: missing {missing}, unexpected {unexpected}")
        return model

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> MemotionClassifierOutput:
        """Classify a batch; see the class docstring for ``labels``."""
        encoded = self.memotion_text(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        hidden = self.ffn(encoded.pooler_output)
        logits = self.heads(hidden)
        loss = self.heads.loss(logits, labels, self.config.problem_type) if labels is not None else None
        return MemotionClassifierOutput(
            loss=loss,
            logits=logits,
            problem_logits=split_logits(logits, self.config.problem_labels),
            pooler_output=hidden,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )
