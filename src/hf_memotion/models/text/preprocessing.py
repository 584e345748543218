"""Text preprocessing for the textual models: the paper's lower-casing, safe tokenization, labels.

Examples:
    >>> from hf_memotion.models.text.tiny import build_tiny_text_backbone
    >>> _, tokenizer = build_tiny_text_backbone("bert", ["look at me"])
    >>> ids = encode_texts(tokenizer, ["LOOK at me", ""], max_length=8)["input_ids"]
    >>> tokenizer.convert_ids_to_tokens(ids[0]), len(ids[1])
    (['[CLS]', 'look', 'at', 'me', '[SEP]'], 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import PretrainedConfig, PreTrainedTokenizerBase

if TYPE_CHECKING:
    import datasets

__all__ = ["TextFeeding", "encode_texts", "normalize_text", "prepare_text_dataset"]


@dataclass(frozen=True)
class TextFeeding:
    """How a member's texts reach its text tower: as the tower was pre-trained, in training, serving and ONNX alike.

    Attributes:
        max_length: Tokens kept per text (longer texts are truncated).
        pad_to: ``None``: each batch is padded to its longest text and the tower masks the padding out (BERT-like
            encoders, CLIP's). A length: every text is padded to it and the tower attends to every position, padding
            included (SigLIP's, :data:`~hf_memotion.models.towers.FIXED_LENGTH_TEXT_TOWERS`). Either way a text's
            features do not depend on the texts batched with it.

    Examples:
        >>> from hf_memotion.models.text.tiny import build_tiny_text_backbone
        >>> config, tokenizer = build_tiny_text_backbone("siglip", ["lol nice"], max_length=16)
        >>> feeding = TextFeeding.for_tower(config, max_length=128)
        >>> feeding, feeding.pad(tokenizer, encode_texts(tokenizer, ["lol"], feeding.max_length))["input_ids"].shape
        (TextFeeding(max_length=16, pad_to=16), torch.Size([1, 16]))
    """

    max_length: int
    pad_to: int | None = None

    @classmethod
    def for_tower(cls, text_config: PretrainedConfig, max_length: int) -> TextFeeding:
        """The feeding of a text tower (``text_config``, one tower's config) for a member keeping ``max_length``."""
        from hf_memotion.models.towers import FIXED_LENGTH_TEXT_TOWERS

        if getattr(text_config, "model_type", None) not in FIXED_LENGTH_TEXT_TOWERS:
            return cls(int(max_length))
        length = int(text_config.max_position_embeddings)
        return cls(min(int(max_length), length), length)

    @classmethod
    def of_member(cls, config: PretrainedConfig) -> TextFeeding | None:
        """A member's feeding from its config (``text_config`` and ``max_length``); ``None`` if it reads no text."""
        text_config = getattr(config, "text_config", None)
        if text_config is None or getattr(config, "max_length", None) is None:
            return None
        return cls.for_tower(text_config, config.max_length)

    @property
    def masks_padding(self) -> bool:
        """Whether the tower is given the attention mask (else it attends to the padding, as it was trained)."""
        return self.pad_to is None

    def pad(
        self, tokenizer: PreTrainedTokenizerBase, encoded: dict[str, list], padding_side: str | None = "right"
    ) -> dict[str, torch.Tensor]:
        """Pad :func:`encode_texts`' output into tensors (``padding_side=None``: the tokenizer's own side)."""
        options: dict[str, Any] = (
            {"padding": "longest"} if self.pad_to is None else {"padding": "max_length", "max_length": self.pad_to}
        )
        if padding_side is not None:
            options["padding_side"] = padding_side
        return dict(tokenizer.pad(encoded, return_tensors="pt", **options))

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Any:
        """A ``DataCollatorWithPadding`` that pads training batches as :meth:`pad` does (on the tokenizer's side)."""
        from transformers import DataCollatorWithPadding

        if self.pad_to is None:
            return DataCollatorWithPadding(tokenizer)
        return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=self.pad_to)


def normalize_text(text: object, index: int | None = None) -> str:
    """Lower-case a meme's text (the paper's only normalisation); ``None`` becomes ``""``.

    Raises:
        TypeError: For anything that is not a string, naming its position.
        ValueError: For a string that is not valid Unicode text (a lone surrogate), naming its position.
    """
    if text is None:
        return ""
    where = f" at index {index}" if index is not None else ""
    if not isinstance(text, str):
        raise TypeError(f"meme text{where} must be a string, got {type(text).__name__} ({text!r:.50})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"meme text{where} holds {text[err.start : err.end]!r} at character {err.start}, not valid Unicode "
            "(a lone surrogate, e.g. from bytes decoded with errors='surrogateescape'); decode the text properly"
        ) from None
    return text.lower()


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[object], max_length: int) -> dict[str, list]:
    """Tokenize texts for a textual model.

    Texts are lower-cased; texts longer than ``max_length`` tokens are truncated (documented
    behaviour, not an error); a text that tokenizes to nothing (empty, or only characters the
    tokenizer drops) gets the tokenizer's unknown token, so every sequence has at least one token.
    No padding here: :class:`TextFeeding` pads each batch as the member's tower was trained.
    """
    if isinstance(texts, str):
        raise TypeError("encode_texts takes a list of texts, not a single string")
    normalized = [normalize_text(t, i) for i, t in enumerate(texts)]
    encoded = dict(tokenizer(normalized, truncation=True, max_length=max_length))
    filler = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.eos_token_id
    for i, ids in enumerate(encoded["input_ids"]):
        if not ids:
            if filler is None:
                raise ValueError(f"text {i} tokenizes to nothing and the tokenizer has no unk or eos token")
            for key, value in (("input_ids", filler), ("attention_mask", 1), ("token_type_ids", 0)):
                if key in encoded:
                    encoded[key][i] = [value]
    return encoded


def prepare_text_dataset(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[str],
    max_length: int,
    text_column: str = "text",
) -> datasets.Dataset:
    """Tokenize a Memotion split and gather its labels for a textual model.

    Returns a dataset with the tokenizer's columns and ``labels``: one class id per row for one
    problem, a list of class ids (config order) for several; splits without the problem columns
    (e.g. an unlabelled test release) get no ``labels``.
    """
    missing = [p for p in problems if p not in dataset.column_names]
    if text_column not in dataset.column_names:
        raise ValueError(f"the dataset has no {text_column!r} column; columns: {dataset.column_names}")
    with_labels = not missing
    if missing and len(missing) != len(problems):
        raise ValueError(f"the dataset lacks label column(s) {missing} for problems {list(problems)}")

    def encode(batch: dict[str, list]) -> dict[str, list]:
        out = encode_texts(tokenizer, batch[text_column], max_length)
        if with_labels:
            columns = [batch[p] for p in problems]
            out["labels"] = columns[0] if len(problems) == 1 else [list(row) for row in zip(*columns, strict=True)]
        return out

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenizing")
