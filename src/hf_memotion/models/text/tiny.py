"""Tiny text backbones built from configs, with a word-level tokenizer trained on the spot.

The demo and the tests cannot download BERT, GPT-2 or XLNet, so they build the same architectures
at toy size (a few thousand parameters per layer) and a tokenizer trained with the ``tokenizers``
library on the training texts. Each family keeps its real conventions: ``[CLS] ... [SEP]`` for
BERT, ``<s> ... </s>`` for RoBERTa, a trailing end-of-text token for GPT-2, ``... <sep> <cls>`` with
left padding for XLNet; ``clip`` and ``siglip`` build CLIP's and SigLIP's text towers the same way.

Examples:
    >>> config, tokenizer = build_tiny_text_backbone("gpt2", ["when the exam is monday", "lol"])
    >>> config.model_type, tokenizer.padding_side, tokenizer("lol")["input_ids"][-1] == tokenizer.eos_token_id
    ('gpt2', 'right', True)
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoConfig, PretrainedConfig, PreTrainedTokenizerFast

__all__ = ["TINY_FAMILIES", "build_tiny_text_backbone"]

# family -> (special tokens, template, padding side, config field names)
_FAMILIES = {
    "bert": {
        "special": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
        "template": ("[CLS] $A [SEP]", ["[CLS]", "[SEP]"]),
        "padding_side": "right",
    },
    "roberta": {
        "special": {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>", "mask": "<mask>"},
        "template": ("<s> $A </s>", ["<s>", "</s>"]),
        "padding_side": "right",
    },
    "gpt2": {
        "special": {"pad": "<|pad|>", "unk": "<|unk|>", "eos": "<|endoftext|>"},
        "template": ("$A <|endoftext|>", ["<|endoftext|>"]),
        "padding_side": "right",
    },
    "xlnet": {
        "special": {"pad": "<pad>", "unk": "<unk>", "sep": "<sep>", "cls": "<cls>", "mask": "<mask>"},
        "template": ("$A <sep> <cls>", ["<sep>", "<cls>"]),
        "padding_side": "left",
    },
    # CLIP's text tower: <|startoftext|> ... <|endoftext|>, the end-of-text token's state is the text's embedding
    "clip": {
        "special": {"pad": "<|pad|>", "unk": "<|unk|>", "bos": "<|startoftext|>", "eos": "<|endoftext|>"},
        "template": ("<|startoftext|> $A <|endoftext|>", ["<|startoftext|>", "<|endoftext|>"]),
        "padding_side": "right",
        "model_type": "clip_text_model",
    },
    # SigLIP's text tower: ... </s>, its pooler head reads the last position
    "siglip": {
        "special": {"pad": "<pad>", "unk": "<unk>", "eos": "</s>"},
        "template": ("$A </s>", ["</s>"]),
        "padding_side": "right",
        "model_type": "siglip_text_model",
    },
}
#: Backbone families :func:`build_tiny_text_backbone` can build.
TINY_FAMILIES = tuple(_FAMILIES)


def _config_sizes(model_type: str, hidden: int, layers: int, heads: int, vocab: int, positions: int) -> dict:
    if model_type == "gpt2":
        return {"n_embd": hidden, "n_layer": layers, "n_head": heads, "vocab_size": vocab, "n_positions": positions}
    if model_type == "xlnet":
        return {"d_model": hidden, "n_layer": layers, "n_head": heads, "d_inner": 2 * hidden, "vocab_size": vocab}
    extra = {"type_vocab_size": 1} if model_type == "roberta" else {}
    if model_type in ("clip_text_model", "siglip_text_model"):
        positions -= 2  # no offset: exactly the tokens the tokenizer keeps
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 2 * hidden,
        "vocab_size": vocab,
        "max_position_embeddings": positions + 2,
        **extra,
    }


def build_tiny_text_backbone(
    model_type: str,
    corpus: Iterable[str],
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_length: int = 64,
    lowercase: bool = True,
) -> tuple[PretrainedConfig, PreTrainedTokenizerFast]:
    """Build a toy-size backbone config of a real family and a word-level tokenizer trained on ``corpus``.

    Args:
        model_type: ``"bert"``, ``"roberta"``, ``"gpt2"``, ``"xlnet"``, ``"clip"`` or ``"siglip"`` (text towers).
        corpus: Training texts for the tokenizer's vocabulary.
        hidden_size: Backbone width.
        num_layers: Backbone depth.
        num_heads: Attention heads (must divide ``hidden_size``).
        max_length: Longest tokenized text the backbone must accept.
        lowercase: Lower-case in the tokenizer (the paper's normalisation).

    Returns:
        ``(backbone_config, tokenizer)``; the config's vocabulary and special-token ids match the
        tokenizer.
    """
    if model_type not in _FAMILIES:
        raise ValueError(f"no tiny recipe for {model_type!r}; choose one of {', '.join(TINY_FAMILIES)}")
    family = _FAMILIES[model_type]
    special = family["special"]
    tokenizer = Tokenizer(models.WordLevel(unk_token=special["unk"]))
    steps = [normalizers.NFKC(), normalizers.Lowercase()] if lowercase else [normalizers.NFKC()]
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    trainer = trainers.WordLevelTrainer(special_tokens=list(special.values()), min_frequency=1)
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    template, template_tokens = family["template"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, tokenizer.token_to_id(t)) for t in template_tokens]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        padding_side=family["padding_side"],
        model_max_length=max_length,
        **{f"{role}_token": token for role, token in special.items()},
    )
    config_type = family.get("model_type", model_type)
    sizes = _config_sizes(config_type, hidden_size, num_layers, num_heads, tokenizer.get_vocab_size(), max_length)
    ids = {
        f"{role}_token_id": tokenizer.token_to_id(token) for role, token in special.items() if role in ("pad", "eos")
    }
    if "bos" in special:
        ids["bos_token_id"] = tokenizer.token_to_id(special["bos"])
    if model_type in ("gpt2", "siglip"):
        ids.setdefault("bos_token_id", ids["eos_token_id"])
    config = AutoConfig.for_model(config_type, **sizes, **ids)
    return config, wrapped
