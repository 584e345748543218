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

import datasets
from transformers import PreTrainedTokenizerBase

__all__ = ["encode_texts", "normalize_text", "prepare_text_dataset"]


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
    No padding here: a ``DataCollatorWithPadding`` pads each batch on the tokenizer's side.
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
