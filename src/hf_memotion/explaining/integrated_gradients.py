"""Which words a textual model read as evidence: integrated gradients over the token embeddings.

Integrated gradients (Sundararajan et al., 2017) walk from a baseline input to the real one and add up the
gradients along the way: each token's attribution is its embedding's difference from the baseline times the mean
gradient of the score, summed over the embedding dimensions. The attributions add up to the score's change from the
baseline to the text (*completeness*); the part they miss, the ``delta``, shrinks with ``steps`` (the midpoint rule).
The baseline keeps the special tokens (``[CLS]``, ``[SEP]``) and puts the padding token's embedding in every other
position (zeros where the tokenizer has none), so "no words" is a sequence the model can read. Tokens are then
summed into the text's words (a fast tokenizer's offsets). Written here because captum pins ``numpy<2``.

The whole path runs as one batch of ``steps`` interpolated inputs; on a GPU the recurrent layers run without cuDNN,
whose RNN kernels refuse to go backward in evaluation mode.

Examples:
    >>> import torch
    >>> from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
    >>> from hf_memotion.models.text.tiny import build_tiny_text_backbone
    >>> backbone, tokenizer = build_tiny_text_backbone("bert", ["lol what a day"], hidden_size=16, num_layers=1)
    >>> model = MemotionTextForSequenceClassification(MemotionTextConfig(
    ...     text_config=backbone, problems=["humour"], lstm_hidden_size=8, attention_size=8, ffn_size=8)).eval()
    >>> words = word_attributions(model, tokenizer, "LOL what a day", {"funny": ("humour", 1)}, max_length=16)
    >>> [word for word, _ in words["funny"].words]
    ['lol', 'what', 'a', 'day']
    >>> abs(words["funny"].delta) < 0.01  # the attributions add up to the score's change
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from hf_memotion.models.text.preprocessing import normalize_text

__all__ = ["WordAttributions", "integrated_gradients", "word_attributions"]


@dataclass
class WordAttributions:
    """One text's attributions for one score.

    Attributions are in the score's unit (a class probability here): positive for a word that raised it.

    Attributes:
        words: ``(word, attribution)`` in the order of the text (lower-cased, as the model reads it).
        tokens: ``(token, attribution)`` for every token, special tokens included.
        score: The score of the text.
        baseline_score: The score of the baseline (no words).
        delta: ``score - baseline_score - sum(attributions)``: what the ``steps`` missed.

    Examples:
        >>> WordAttributions([("lol", 0.4)], [("lol", 0.4)], 0.9, 0.5, 0.0).top(1)
        ['lol']
    """

    words: list[tuple[str, float]]
    tokens: list[tuple[str, float]]
    score: float
    baseline_score: float
    delta: float

    def top(self, k: int = 3) -> list[str]:
        """The ``k`` words with the largest attributions (ties in text order)."""
        order = sorted(range(len(self.words)), key=lambda i: -self.words[i][1])
        return [self.words[i][0] for i in order[:k]]


def _no_cudnn(device: torch.device):
    return torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else contextlib.nullcontext()


def integrated_gradients(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    targets: Mapping[str, tuple[str, int]],
    *,
    baseline_ids: torch.Tensor | None = None,
    steps: int = 32,
) -> dict[str, tuple[np.ndarray, float, float]]:
    """Integrated-gradients attributions of one text's tokens to class probabilities.

    Args:
        model: A textual model called as ``model(inputs_embeds=..., attention_mask=...)`` whose output has
            ``problem_logits`` (the library's textual models).
        input_ids: ``(1, L)`` token ids.
        attention_mask: ``(1, L)``.
        targets: Name -> ``(problem, class id)``: the probabilities to explain.
        baseline_ids: ``(1, L)`` ids whose embeddings are the baseline (default: the input's own).
        steps: Points on the path (midpoint rule).

    Returns:
        Name -> ``(attributions (L,), score, baseline score)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    embeddings = model.get_input_embeddings()
    device = next(model.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    with torch.no_grad():
        real = embeddings(input_ids).float()
        start = embeddings(baseline_ids.to(device)).float() if baseline_ids is not None else torch.zeros_like(real)
    alphas = (torch.arange(steps, device=device, dtype=torch.float32) + 0.5) / steps
    dtype = next(model.parameters()).dtype
    with torch.enable_grad(), _no_cudnn(device):
        path = (start + alphas[:, None, None] * (real - start)).to(dtype).requires_grad_(True)  # (steps, L, D)
        ends = torch.cat([start, real]).to(dtype)
        mask = attention_mask.expand(steps, -1)
        logits = model(inputs_embeds=path, attention_mask=mask).problem_logits
        with torch.no_grad():
            end_logits = model(inputs_embeds=ends, attention_mask=attention_mask.expand(2, -1)).problem_logits
        out = {}
        names = list(targets)
        for i, name in enumerate(names):
            problem, label = targets[name]
            probability = logits[problem].float().softmax(-1)[:, label]
            (gradient,) = torch.autograd.grad(probability.sum(), path, retain_graph=i < len(names) - 1)
            attributions = ((real - start)[0] * gradient.float().mean(dim=0)).sum(-1)
            ends_p = end_logits[problem].float().softmax(-1)[:, label]
            out[name] = (attributions.detach().cpu().numpy(), float(ends_p[1]), float(ends_p[0]))
    return out


def word_attributions(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    targets: Mapping[str, tuple[str, int]],
    *,
    max_length: int = 128,
    pad_to: int | None = None,
    steps: int = 32,
) -> dict[str, WordAttributions]:
    """Integrated gradients of a text's words for each target probability (see the module docstring).

    The text is lower-cased and tokenized as the model's training did (truncated at ``max_length``); a word the
    truncation cut off gets no entry.

    Args:
        model: The textual model.
        tokenizer: Its tokenizer (a fast one gives words; a slow one gives tokens as words).
        text: The meme's text.
        targets: Name -> ``(problem, class id)``.
        max_length: The model's ``max_length``.
        pad_to: The fixed length of a text tower trained on padded texts (SigLIP's; see
            :class:`~hf_memotion.models.text.preprocessing.TextFeeding`): the text is padded to it as served.
        steps: Points on the integration path.
    """
    normalized = normalize_text(text)
    fast = getattr(tokenizer, "is_fast", False)
    encoded = tokenizer(
        [normalized],
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=fast,
        return_special_tokens_mask=True,  # the tokens the template added ([CLS], [SEP]), not [UNK]
        return_tensors="pt",
    )
    input_ids = encoded["input_ids"]
    special = encoded["special_tokens_mask"][0]
    if input_ids.shape[1] == 0:  # as encode_texts: a text of no tokens is read as the unknown token
        filler = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.eos_token_id
        input_ids = torch.tensor([[filler]])
        encoded["attention_mask"] = torch.ones_like(input_ids)
        special, fast = torch.zeros(1, dtype=torch.long), False
    baseline = None
    if tokenizer.pad_token_id is not None:
        baseline = torch.where(special.bool(), input_ids[0], tokenizer.pad_token_id)[None]
    length, attention_mask = input_ids.shape[1], encoded["attention_mask"]
    if pad_to is not None and length < pad_to:  # fed as the tower was trained; the padding is no word
        extra = pad_to - length
        input_ids = nn.functional.pad(input_ids, (0, extra), value=tokenizer.pad_token_id)
        attention_mask = nn.functional.pad(attention_mask, (0, extra), value=0)
        baseline = (
            input_ids if baseline is None else nn.functional.pad(baseline, (0, extra), value=tokenizer.pad_token_id)
        )
    raw = integrated_gradients(model, input_ids, attention_mask, targets, baseline_ids=baseline, steps=steps)
    raw = {name: (attributions[:length], *scores) for name, (attributions, *scores) in raw.items()}
    tokens = tokenizer.convert_ids_to_tokens(input_ids[0, :length].tolist())
    spans = _word_spans(normalized)
    offsets = encoded["offset_mapping"][0].tolist() if fast and "offset_mapping" in encoded else None
    out = {}
    for name, (attributions, score, baseline_score) in raw.items():
        per_token = [(token, float(a)) for token, a in zip(tokens, attributions, strict=True)]
        if offsets is None:
            words = [(t, a) for (t, a), s in zip(per_token, special.tolist(), strict=True) if not s]
        else:
            sums = [0.0] * len(spans)
            seen = [False] * len(spans)
            for (start, end), value, is_special in zip(offsets, attributions, special.tolist(), strict=True):
                if is_special or end <= start:
                    continue
                word = next((i for i, (a, b) in enumerate(spans) if a <= start < b), None)
                if word is not None:
                    sums[word] += float(value)
                    seen[word] = True
            words = [(normalized[a:b], sums[i]) for i, (a, b) in enumerate(spans) if seen[i]]
        delta = score - baseline_score - float(np.sum(attributions))
        out[name] = WordAttributions(words, per_token, score, baseline_score, delta)
    return out


def _word_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every whitespace-separated word."""
    spans, start = [], None
    for i, char in enumerate(text):
        if char.isspace():
            if start is not None:
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(text)))
    return spans
