"""Train the paper's textual model on Memotion data: tokenizer, k-fold out-of-fold probabilities, refit, save.

Examples:
    >>> from hf_memotion.data import load_memotion, make_demo_data
    >>> data = load_memotion(make_demo_data("/tmp/memotion_text_doc", n_train=40, n_test=10))
    >>> result = train_text_classifier(
    ...     data, "/tmp/memotion_text_doc_run", backbone="tiny:bert", problems=["motivational"],
    ...     training=ClassifierTrainingArguments(epochs=1, learning_rate=1e-3), n_splits=2,
    ...     model_kwargs={"lstm_hidden_size": 8, "attention_size": 8, "ffn_size": 8})
    >>> result.oof_probabilities["motivational"].shape
    (40, 2)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
from transformers import AutoTokenizer, DataCollatorWithPadding, PreTrainedTokenizerBase

from hf_memotion.models.heads import resolve_problem_labels
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
from hf_memotion.models.text.preprocessing import prepare_text_dataset
from hf_memotion.models.text.tiny import TINY_FAMILIES, build_tiny_text_backbone
from hf_memotion.models.towers import tower_config
from hf_memotion.tasks import PROBLEM_NAMES
from hf_memotion.training.cross_validation import CrossValidator, FoldMonitor
from hf_memotion.training.folds import class_weights
from hf_memotion.training.runs import (
    ClassifierRunResult,
    as_splits,
    data_provenance,
    run_classifier,
)
from hf_memotion.training.trainer import ClassifierTrainingArguments

__all__ = [
    "TextClassifierResult",
    "load_text_backbone",
    "text_model_factory",
    "train_text_classifier",
]

logger = logging.getLogger(__name__)
TINY_PREFIX = "tiny:"


#: The result of :func:`train_text_classifier` (``preprocessor`` is the tokenizer).
TextClassifierResult = ClassifierRunResult


def load_text_backbone(
    backbone: str, corpus: Sequence[str], tiny_kwargs: dict[str, Any] | None = None
) -> tuple[Any, PreTrainedTokenizerBase, str | None]:
    """Resolve a backbone spec to ``(backbone_config, tokenizer, weights_source)``.

    ``"tiny:bert"`` (also ``roberta``, ``gpt2``, ``xlnet``) builds a toy backbone and a tokenizer trained
    on ``corpus`` (no weights: ``weights_source`` is ``None``); anything else is a Hub id or a local
    folder whose config, tokenizer and weights are loaded. A tokenizer without a padding token (GPT-2)
    pads with its end-of-text token.
    """
    if backbone.startswith(TINY_PREFIX):
        family = backbone[len(TINY_PREFIX) :]
        if family not in TINY_FAMILIES:
            raise ValueError(
                f"unknown tiny backbone {backbone!r}; choose one of {[TINY_PREFIX + f for f in TINY_FAMILIES]}"
            )
        config, tokenizer = build_tiny_text_backbone(family, corpus, **(tiny_kwargs or {}))
        return config, tokenizer, None
    from transformers import AutoConfig

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"the tokenizer of {backbone} has neither a padding nor an end-of-text token")
        tokenizer.pad_token = tokenizer.eos_token
    return tower_config(AutoConfig.from_pretrained(backbone), "text"), tokenizer, backbone  # CLIP: its text tower


def text_model_factory(
    backbone_config: Any, weights_source: str | None, problems: Sequence[str], **model_kwargs: Any
) -> Any:
    """A ``model_init`` for :func:`cross_validate`: a fresh classifier (pre-trained backbone weights if any)."""

    def model_init() -> MemotionTextForSequenceClassification:
        if weights_source is not None:
            return MemotionTextForSequenceClassification.from_backbone(
                weights_source, problems=list(problems), **model_kwargs
            )
        config = MemotionTextConfig(text_config=backbone_config, problems=list(problems), **model_kwargs)
        return MemotionTextForSequenceClassification(config)

    return model_init


def train_text_classifier(
    data: datasets.DatasetDict | datasets.Dataset,
    output_dir: str | os.PathLike,
    *,
    backbone: str = "tiny:bert",
    problems: Sequence[str] = PROBLEM_NAMES,
    training: ClassifierTrainingArguments | None = None,
    n_splits: int = 5,
    seed: int = 0,
    weighted_loss: bool = True,
    model_kwargs: dict[str, Any] | None = None,
    tiny_kwargs: dict[str, Any] | None = None,
    refit: bool = True,
    keep_model: bool = True,
    test_time: str = "refit",
    card_data: Mapping[str, Any] | None = None,
    budget: Mapping[str, Any] | None = None,
    monitor: FoldMonitor | None = None,
) -> TextClassifierResult:
    """Train one textual model (one problem, or several from one backbone pass) the paper's way.

    k-fold cross-validation gives out-of-fold probabilities for every training row; the model is
    then refit on all training rows, evaluated on the ``test`` split when there is one, and saved
    with its tokenizer to ``output_dir/model`` (``from_pretrained``-ready, safetensors). Also written:
    ``oof_probabilities.safetensors``, ``test_probabilities.safetensors`` and ``metrics.json``.

    Args:
        data: A ``DatasetDict`` from :func:`hf_memotion.data.load_memotion` (``train``, optional
            ``test``) or a single training split.
        output_dir: Run folder; finished folds inside it are reused when the call is repeated.
        backbone: ``"tiny:<family>"`` or a Hub id / folder of a pre-trained model.
        problems: Problems to predict.
        training: Trainer settings (default: the paper's fixed text settings).
        n_splits: Folds.
        seed: Seed of folds, early-stopping split and training.
        weighted_loss: Use inverse-frequency class weights (the paper's loss).
        model_kwargs: :class:`MemotionTextConfig` fields (``lstm_layers``, ``dropout``, ...).
        tiny_kwargs: Sizes for a tiny backbone (``hidden_size``, ``num_layers``, ...).
        refit: Refit on all rows, save the model and score the test split; ``False`` stops after the
            folds (what a hyperparameter search needs).
        keep_model: Return the refit model in the result (``False``: freed once saved; see
            :func:`~hf_memotion.training.runs.run_classifier`).
        test_time: ``"refit"`` or ``"fold_average"``: which models' probabilities the test split gets (see
            :func:`~hf_memotion.training.runs.run_classifier`).
        card_data: More fields for the saved model's card and ``metrics.json`` (not part of the settings' key).
        budget: A pruned selection's short budget, ``{"folds": n}`` (with ``refit=False``; see
            :func:`~hf_memotion.training.runs.run_classifier`).
        monitor: Watches the folds and may prune the run (a pruned Optuna study's reporter).
    """
    splits = as_splits(data)
    training = dataclasses.replace(training or ClassifierTrainingArguments(), seed=seed)
    problems = list(problems)
    problem_labels = resolve_problem_labels(problems)
    train = splits["train"]
    model_kwargs = dict(model_kwargs or {})
    backbone_config, tokenizer, weights = load_text_backbone(backbone, train["text"], tiny_kwargs)
    if weighted_loss:
        model_kwargs["class_weights"] = {p: class_weights(train[p], len(problem_labels[p])).tolist() for p in problems}
    max_length = int(model_kwargs.get("max_length", MemotionTextConfig.max_length))
    test = splits.get("test")
    scored = test is not None and all(p in test.column_names for p in problems)
    settings = {
        "modality": "text",
        "backbone": backbone,
        "problems": problems,
        "training": training.to_dict(),
        "model": model_kwargs,
        "tiny": tiny_kwargs,
        "n_splits": n_splits,
        "n_rows": len(train),
        "weighted_loss": weighted_loss,
        "data": data_provenance(train),
        **({"budget": dict(budget)} if budget else {}),
    }
    validator = CrossValidator(
        text_model_factory(backbone_config, weights, problems, **model_kwargs),
        problem_labels,
        training,
        n_splits=n_splits,
        seed=seed,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    result = run_classifier(
        validator,
        train_dataset=prepare_text_dataset(train, tokenizer, problems, max_length),
        output_dir=output_dir,
        settings=settings,
        preprocessor=tokenizer,
        test_dataset=prepare_text_dataset(test, tokenizer, problems, max_length) if scored else None,
        test_labels={p: test[p] for p in problems} if scored else None,
        refit=refit,
        keep_model=keep_model,
        test_time=test_time,
        card_data=card_data,
        budget=budget,
        monitor=monitor,
    )
    return result
