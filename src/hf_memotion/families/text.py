"""The textual family: any transformers backbone with the paper's BiLSTM + attention head, tuned by an Optuna study.

A ``family: text`` entry of a config (:class:`TextMemberSpec`) trains one
:class:`~hf_memotion.models.text.MemotionTextForSequenceClassification` per group of problems: its tokenizer,
k-fold out-of-fold probabilities, the refit, test scores and the run folder
(:func:`~hf_memotion.training.runs.run_classifier`). Its ``search:`` is an Optuna study over Table 5b of the paper
(:data:`TEXT_SEARCH_SPACE`). As an ensemble member it reads the meme's text (a
:class:`~hf_memotion.families.inputs.TextInput`), may be quantized to int8 for serving, exports to ONNX and gets
word attributions in explanations.

Examples:
    >>> from hf_memotion.data import load_memotion, make_demo_data
    >>> from hf_memotion.families import MemberRun, parse_member, train_member
    >>> data = load_memotion(make_demo_data("/tmp/memotion_text_doc", n_train=40, n_test=10))
    >>> spec = parse_member({"family": "text", "problems": ["motivational"],
    ...                      "training": {"epochs": 1, "learning_rate": 1e-3},
    ...                      "model": {"lstm_hidden_size": 8, "attention_size": 8, "ffn_size": 8}})
    >>> result = train_member(data, "/tmp/memotion_text_doc_run", spec, MemberRun(n_splits=2))
    >>> result.oof_probabilities["motivational"].shape
    (40, 2)
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hf_memotion.families.base import MemberRun, MemberSpec, ModelEntry, ModelFamily, register_family
from hf_memotion.families.inputs import MemberInput, TextInput
from hf_memotion.families.published import text_backbone_config
from hf_memotion.families.search import StudySpec
from hf_memotion.families.training import prepare_run
from hf_memotion.models.text.preprocessing import TextFeeding
from hf_memotion.training.runs import ClassifierRunResult, run_classifier

__all__ = ["TEXT_SEARCH_SPACE", "TINY_PREFIX", "TextFamily", "TextMemberSpec", "load_text_backbone"]

logger = logging.getLogger(__name__)
TINY_PREFIX = "tiny:"

#: Table 5b of the Memotion paper: tuples are (low, high) float ranges (learning rate on a log scale), lists are
#: choices; ``learning_rate`` and ``optimizer`` are training settings, the rest fields of the model's config.
TEXT_SEARCH_SPACE: dict[str, Any] = {
    "learning_rate": (1e-6, 3e-4),
    "optimizer": ["adam", "adam_warmup"],
    "dropout": (0.0, 0.3),
    "lstm_layers": [1, 2],
    "lstm_hidden_size": [256, 512, 1024],
    "attention_size": [256, 512, 1024],
    "ffn_size": [256, 512, 1024],
}


@dataclass
class TextMemberSpec(MemberSpec):
    """A textual member (``family: text``): :class:`~hf_memotion.families.base.MemberSpec`'s keys and these.

    Attributes:
        backbone: ``"tiny:<family>"`` (a toy backbone built from a config: ``bert``, ``roberta``, ``gpt2``, ``xlnet``,
            ``clip``, ``siglip``) or a Hub id / folder (a CLIP/SigLIP dual encoder gives its text tower).
        tiny: Sizes of a tiny backbone (``hidden_size``, ``num_layers``...).
        search: An Optuna study (:class:`~hf_memotion.families.search.StudySpec`) run per problem before the model
            trains.
        model: Fields of :class:`~hf_memotion.models.text.MemotionTextConfig` (``lstm_layers``, ``pooling``,
            ``max_length``...).

    Examples:
        >>> from hf_memotion.families import parse_member
        >>> parse_member({"backbone": "tiny:gpt2", "search": {"n_trials": 3}}).search.n_trials
        3
    """

    family: str = "text"
    backbone: str = "tiny:bert"
    tiny: dict[str, Any] | None = None
    search: StudySpec | None = None


def load_text_backbone(
    backbone: str, corpus: Sequence[str], tiny_kwargs: dict[str, Any] | None = None
) -> tuple[Any, Any, str | None]:
    """Resolve a backbone spec to ``(backbone_config, tokenizer, weights_source)``.

    ``"tiny:bert"`` (also ``roberta``, ``gpt2``, ``xlnet``, ``clip``, ``siglip``) builds a toy backbone and a
    tokenizer trained on ``corpus`` (no weights: ``weights_source`` is ``None``); anything else is a Hub id or a local
    folder whose config, tokenizer and weights are loaded. A tokenizer without a padding token (GPT-2) pads with its
    end-of-text token.
    """
    from hf_memotion.models.text.tiny import TINY_FAMILIES, build_tiny_text_backbone

    if backbone.startswith(TINY_PREFIX):
        family = backbone[len(TINY_PREFIX) :]
        if family not in TINY_FAMILIES:
            raise ValueError(
                f"unknown tiny backbone {backbone!r}; choose one of {[TINY_PREFIX + f for f in TINY_FAMILIES]}"
            )
        config, tokenizer = build_tiny_text_backbone(family, corpus, **(tiny_kwargs or {}))
        return config, tokenizer, None
    from transformers import AutoConfig, AutoTokenizer

    from hf_memotion.models.towers import tower_config

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"the tokenizer of {backbone} has neither a padding nor an end-of-text token")
        tokenizer.pad_token = tokenizer.eos_token
    return tower_config(AutoConfig.from_pretrained(backbone), "text"), tokenizer, backbone  # CLIP: its text tower


def _model_init(backbone_config: Any, weights_source: str | None, problems: Sequence[str], **model_kwargs: Any):
    """A ``model_init`` for the cross-validator: a fresh classifier (pre-trained backbone weights if any)."""
    from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification

    def model_init() -> MemotionTextForSequenceClassification:
        if weights_source is not None:
            return MemotionTextForSequenceClassification.from_backbone(
                weights_source, problems=list(problems), **model_kwargs
            )
        config = MemotionTextConfig(text_config=backbone_config, problems=list(problems), **model_kwargs)
        return MemotionTextForSequenceClassification(config)

    return model_init


@register_family
class TextFamily(ModelFamily):
    """The paper's textual models (Tables 5a and 5b): a transformers backbone, BiLSTM, attention, FFN heads."""

    name = "text"
    label = "text"
    model_types = ("memotion_text",)
    spec_class = TextMemberSpec
    reads = ("text",)
    pipeline_tag = "text-classification"
    explains = True
    onnx_refusal = None
    int8_dynamic = True

    def study_space(self) -> dict[str, Any]:
        """Table 5b of the paper (:data:`TEXT_SEARCH_SPACE`)."""
        return dict(TEXT_SEARCH_SPACE)

    def train(self, data: Any, output_dir: str | os.PathLike, entry: ModelEntry, run: MemberRun) -> ClassifierRunResult:
        """k-fold out-of-fold probabilities, the refit, test scores and ``output_dir/model`` with its tokenizer."""
        from hf_memotion.models.text import MemotionTextConfig
        from hf_memotion.models.text.preprocessing import prepare_text_dataset
        from hf_memotion.training.cross_validation import CrossValidator

        spec: TextMemberSpec = entry.spec
        prepared = prepare_run(data, entry, run)
        backbone_config, tokenizer, weights = load_text_backbone(spec.backbone, prepared.train["text"], spec.tiny)
        feeding = TextFeeding.for_tower(
            backbone_config, int(prepared.model_kwargs.get("max_length", MemotionTextConfig.max_length))
        )
        max_length = feeding.max_length
        validator = CrossValidator(
            _model_init(backbone_config, weights, prepared.problems, **prepared.model_kwargs),
            prepared.problem_labels,
            prepared.training,
            n_splits=run.n_splits,
            seed=run.seed,
            data_collator=feeding.collator(tokenizer),
        )
        problems = prepared.problems
        return run_classifier(
            validator,
            train_dataset=prepare_text_dataset(prepared.train, tokenizer, problems, max_length),
            output_dir=output_dir,
            settings=prepared.settings,
            preprocessor=tokenizer,
            test_dataset=prepare_text_dataset(prepared.test, tokenizer, problems, max_length)
            if prepared.scored
            else None,
            test_labels=prepared.test_labels,
            run=prepared.options(self.card_facts(spec)),
            load_model=lambda folder: self.load(str(folder))[0],
        )

    def load(self, folder: str, **options: Any) -> tuple[torch.nn.Module, Any]:
        """The saved model (its Auto class) and its tokenizer."""
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(folder, **options), self.load_preprocessor(folder)

    def load_preprocessor(self, folder: str) -> Any:
        """The saved tokenizer."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder)

    def inputs(self, preprocessor: Any, text: TextFeeding | None) -> list[MemberInput]:
        """What it reads from a meme."""
        if text is None:
            raise ValueError("a textual member reads text: give its TextFeeding (TextFeeding.of_member(config))")
        return [TextInput(preprocessor, text)]

    def optimize_for_inference(
        self, model: torch.nn.Module, *, channels_last: bool, images_per_forward: Any, quantize_text: bool
    ) -> None:
        """``quantize_text``: dynamic int8 backbone linear layers (CPU only; changes probabilities slightly)."""
        if not quantize_text or getattr(model, "quantized", False):
            return
        import warnings

        from torch.ao.quantization import quantize_dynamic

        from hf_memotion.models.onednn_linear import use_onednn_linear

        backbone = model.memotion_text.backbone
        use_onednn_linear(backbone, enabled=False)  # quantize_dynamic maps plain nn.Linear only
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore", DeprecationWarning)
            quantize_dynamic(backbone, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        model.quantized = True

    @contextlib.contextmanager
    def exportable(self, model: torch.nn.Module) -> Iterator[None]:
        """The masked BiLSTM (the packed one does not trace), restored after."""
        saved = model.config.lstm_implementation
        model.config.lstm_implementation = "masked"
        try:
            yield
        finally:
            model.config.lstm_implementation = saved

    def planned_model(self, entry: ModelEntry, notes: list[str]) -> tuple[torch.nn.Module, dict, int]:
        """The network at its configured size, for ``--plan`` (fake tensors)."""
        from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification

        spec: TextMemberSpec = entry.spec
        backbone = text_backbone_config(spec.backbone, spec.tiny, notes)
        fields = {k: v for k, v in spec.model.items() if k != "class_weights"}
        model = MemotionTextForSequenceClassification(
            MemotionTextConfig(text_config=backbone, problems=list(entry.problems), **fields)
        )
        feeding = TextFeeding.of_member(model.config)  # a SigLIP tower reads its full length
        tokens = torch.ones(2, feeding.pad_to or feeding.max_length, dtype=torch.long)
        return model, {"input_ids": tokens, "attention_mask": tokens}, 1

    def network(self, spec: TextMemberSpec) -> str:
        """What plans and cards name as its network."""
        return spec.backbone

    def card_facts(self, spec: TextMemberSpec) -> dict[str, Any]:
        """Where its weights came from, for its card."""
        tiny = spec.backbone.startswith(TINY_PREFIX)
        local = tiny or os.path.exists(spec.backbone)
        return {
            "pipeline_tag": self.pipeline_tag,
            "network": spec.backbone,
            "base_model": None if local else spec.backbone,
            "pretrained": "none: random initialisation" if tiny else "local files" if local else spec.backbone,
        }
