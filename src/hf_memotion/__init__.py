"""hf-memotion: meme emotion analysis by modality ensemble, and VisE, for the Hugging Face ecosystem.

The top level holds what most users need: the models and their configs, the processors, the pipeline, the
trainer and its arguments, the Memotion loader and the metric. Everything else lives in its subpackage
(``hf_memotion.data``, ``hf_memotion.training``, ``hf_memotion.vise``, ...). Names load on first use
(``import hf_memotion`` imports neither torch nor transformers), and the classes are registered with
transformers' Auto classes and ``pipeline`` as soon as those are used (:mod:`hf_memotion.registration`).

Examples:
    >>> import hf_memotion
    >>> hf_memotion.MemotionTextConfig(problems=["humour"]).problems
    ['humour']
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from hf_memotion.lazy import lazy_exports
from hf_memotion.registration import register_auto_classes, register_when_transformers_is_used
from hf_memotion.threads import apply_thread_policy

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "MemotionTextConfig": "hf_memotion.models.text",
    "MemotionTextModel": "hf_memotion.models.text",
    "MemotionTextForSequenceClassification": "hf_memotion.models.text",
    "MemotionVisionConfig": "hf_memotion.models.vision",
    "MemotionVisionModel": "hf_memotion.models.vision",
    "MemotionVisionForImageClassification": "hf_memotion.models.vision",
    "MemotionImageProcessor": "hf_memotion.models.vision",
    "MemotionMultimodalConfig": "hf_memotion.models.multimodal",
    "MemotionMultimodalModel": "hf_memotion.models.multimodal",
    "MemotionMultimodalForClassification": "hf_memotion.models.multimodal",
    "MemotionMultimodalProcessor": "hf_memotion.models.multimodal",
    "MemotionEnsembleConfig": "hf_memotion.models.ensemble",
    "MemotionEnsembleModel": "hf_memotion.models.ensemble",
    "MemeProcessor": "hf_memotion.models.ensemble",
    "ViseConfig": "hf_memotion.models.vise",
    "ViseModel": "hf_memotion.models.vise",
    "ViseForPretraining": "hf_memotion.models.vise",
    "ViseForImageClassification": "hf_memotion.models.vise",
    "MemeEmotionPipeline": "hf_memotion.pipelines",
    "MemotionTrainer": "hf_memotion.training.trainer",
    "MemotionTrainingArguments": "hf_memotion.training.arguments",
    "ClassifierTrainingArguments": "hf_memotion.training.trainer",
    "load_memotion": "hf_memotion.data.memotion",
    "load_memotion_metric": "hf_memotion.metrics",
}

#: Names the top level exported before it was made small: still served, with a ``FutureWarning`` naming their
#: home (new name where one was renamed).
_MOVED = {
    "PROBLEMS": ("hf_memotion.tasks", "PROBLEMS"),
    "PROBLEM_NAMES": ("hf_memotion.tasks", "PROBLEM_NAMES"),
    "Problem": ("hf_memotion.tasks", "Problem"),
    "decode_submission": ("hf_memotion.tasks", "decode_submission"),
    "encode_submission": ("hf_memotion.tasks", "encode_submission"),
    "get_problem": ("hf_memotion.tasks", "get_problem"),
    "ClassifierTrainingConfig": ("hf_memotion.training.trainer", "ClassifierTrainingArguments"),
    "CrossValidator": ("hf_memotion.training", "CrossValidator"),
    "class_weights": ("hf_memotion.training", "class_weights"),
    "cross_validate": ("hf_memotion.training", "cross_validate"),
    "stratified_folds": ("hf_memotion.training", "stratified_folds"),
    "train_text_classifier": ("hf_memotion.training", "train_text_classifier"),
    "train_vision_classifier": ("hf_memotion.training", "train_vision_classifier"),
    "DemoDataConfig": ("hf_memotion.data", "DemoDataSpec"),
    "ImageDecodeError": ("hf_memotion.data", "ImageDecodeError"),
    "MemotionFormatError": ("hf_memotion.data", "MemotionFormatError"),
    "format_statistics": ("hf_memotion.data", "format_statistics"),
    "load_rgb_image": ("hf_memotion.data", "load_rgb_image"),
    "make_demo_data": ("hf_memotion.data", "make_demo_data"),
    "read_answer_file": ("hf_memotion.data", "read_answer_file"),
    "write_answer_file": ("hf_memotion.data", "write_answer_file"),
    "read_meme_text": ("hf_memotion.data.ocr", "read_meme_text"),
    "native_bf16": ("hf_memotion.hardware", "native_bf16"),
    "theoretical_peak": ("hf_memotion.hardware", "theoretical_peak"),
    "memotion_scores": ("hf_memotion.metrics", "memotion_scores"),
    "MemotionCardData": ("hf_memotion.cards", "MemotionCardData"),
    "MemeInputError": ("hf_memotion.pipelines", "MemeInputError"),
    "fit_stackers": ("hf_memotion.models.ensemble", "fit_stackers"),
    "convert_polynet_state_dict": ("hf_memotion.models.vision", "convert_polynet_state_dict"),
}

__all__ = [
    "ClassifierTrainingArguments",
    "MemeEmotionPipeline",
    "MemeProcessor",
    "MemotionEnsembleConfig",
    "MemotionEnsembleModel",
    "MemotionImageProcessor",
    "MemotionTextConfig",
    "MemotionTextForSequenceClassification",
    "MemotionTextModel",
    "MemotionTrainer",
    "MemotionTrainingArguments",
    "MemotionVisionConfig",
    "MemotionVisionForImageClassification",
    "MemotionVisionModel",
    "ViseConfig",
    "ViseForImageClassification",
    "ViseForPretraining",
    "ViseModel",
    "__version__",
    "load_memotion",
    "load_memotion_metric",
    "register_auto_classes",
]


_exported, __dir__ = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        return _exported(name)  # resolved once; an unknown name is the usual AttributeError
    module, new = _MOVED[name]
    warnings.warn(f"hf_memotion.{name} moved: use `from {module} import {new}`", FutureWarning, stacklevel=2)
    return getattr(importlib.import_module(module), new)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from hf_memotion.data.memotion import load_memotion
    from hf_memotion.metrics import load_memotion_metric
    from hf_memotion.models.ensemble import MemeProcessor, MemotionEnsembleConfig, MemotionEnsembleModel
    from hf_memotion.models.text import (
        MemotionTextConfig,
        MemotionTextForSequenceClassification,
        MemotionTextModel,
    )
    from hf_memotion.models.vise import ViseConfig, ViseForImageClassification, ViseForPretraining, ViseModel
    from hf_memotion.models.vision import (
        MemotionImageProcessor,
        MemotionVisionConfig,
        MemotionVisionForImageClassification,
        MemotionVisionModel,
    )
    from hf_memotion.pipelines import MemeEmotionPipeline
    from hf_memotion.training.arguments import MemotionTrainingArguments
    from hf_memotion.training.trainer import ClassifierTrainingArguments, MemotionTrainer

apply_thread_policy()  # before torch loads: idle OpenMP threads spin briefly (a busy machine costs its share)
register_when_transformers_is_used()
