"""A frozen transformers text encoder and its sentence embedding: VisE's one text encoder.

Mining encodes comments with it (``mining.comment_encoder``: phi_C from a transformers encoder instead of TF-IDF)
and the Hateful Memes protocols encode meme text with it (Table 14's settings): the same loading (no remote code),
the same tokenization and the same pooling, the attention-masked mean of the last hidden states.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["TextEncoder", "sentence_embedding"]


class TextEncoder:
    """A frozen transformers text encoder: sentence embedding = attention-masked mean of the last hidden states.

    Args:
        source: A local folder or Hub id (loaded without remote code), or ``"tiny:bert"``: a randomly initialised
            toy BERT with a tokenizer trained on ``corpus`` (offline demos and tests only: it encodes words, not
            meaning).
        corpus: Texts for the tiny tokenizer.
        max_length: Tokens per text.
        device: Where the encoder runs (``"auto"``: a GPU when there is one; mining keeps the CPU default, its
            worker processes fork).

    Examples:
        >>> encoder = TextEncoder("tiny:bert", corpus=["a hateful meme", "a kind meme"])
        >>> encoder.encode(["a kind meme"]).shape
        (1, 32)
    """

    def __init__(
        self, source: str, corpus: Sequence[str] = (), max_length: int = 64, device: str | torch.device = "cpu"
    ):
        from transformers import AutoModel, AutoTokenizer

        from hf_memotion.hardware import resolve_device

        self.source = source
        self.max_length = max_length
        if source.startswith("tiny:"):
            from hf_memotion.models.text.tiny import build_tiny_text_backbone

            torch.manual_seed(0)
            config, self.tokenizer = build_tiny_text_backbone(source.split(":", 1)[1], corpus, max_length=max_length)
            self.model = AutoModel.from_config(config)
        else:
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
                self.model = AutoModel.from_pretrained(source, trust_remote_code=False)
            except OSError as err:
                raise FileNotFoundError(f"text encoder {source}: {err}") from None
        self.model.eval().to(resolve_device(device))

    @property
    def device(self) -> torch.device:
        """Where the encoder runs."""
        return self.model.device

    def tokenize(self, texts: Sequence[str], **kwargs: Any) -> dict[str, Any]:
        """Token ids and attention masks of ``texts`` (truncated to ``max_length``)."""
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length, **kwargs)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``(len(texts), hidden)`` float32 sentence embeddings."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenize(texts[start : start + batch_size], padding=True, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            hidden = self.model(**batch).last_hidden_state
            out.append(sentence_embedding(hidden, batch["attention_mask"]).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.config.hidden_size), dtype=np.float32)


def sentence_embedding(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The attention-masked mean of a text encoder's last hidden states: ``(batch, hidden)``.

    Examples:
        >>> sentence_embedding(torch.tensor([[[1.0], [3.0], [9.0]]]), torch.tensor([[1, 1, 0]]))
        tensor([[2.]])
    """
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
