"""hf-memotion: meme emotion analysis by modality ensemble, and VisE, for the Hugging Face ecosystem.

Example:
    >>> import hf_memotion
    >>> hf_memotion.PROBLEM_NAMES[0]
    'sentiment'
"""

from hf_memotion.cards import MemotionCardData
from hf_memotion.data import (
    DemoDataConfig,
    ImageDecodeError,
    MemotionFormatError,
    format_statistics,
    load_memotion,
    load_rgb_image,
    make_demo_data,
    read_answer_file,
    write_answer_file,
)
from hf_memotion.data.ocr import read_meme_text
from hf_memotion.hardware import native_bf16, theoretical_peak
from hf_memotion.metrics import load_memotion_metric, memotion_scores
from hf_memotion.models.ensemble import MemeProcessor, MemotionEnsembleConfig, MemotionEnsembleModel, fit_stackers
from hf_memotion.models.text import (
    MemotionTextConfig,
    MemotionTextForSequenceClassification,
    MemotionTextModel,
)
from hf_memotion.models.vision import (
    MemotionImageProcessor,
    MemotionVisionConfig,
    MemotionVisionForImageClassification,
    MemotionVisionModel,
    convert_polynet_state_dict,
)
from hf_memotion.pipelines import MemeEmotionPipeline, MemeInputError
from hf_memotion.registration import register_auto_classes
from hf_memotion.tasks import PROBLEM_NAMES, PROBLEMS, Problem, decode_submission, encode_submission, get_problem
from hf_memotion.training import (
    ClassifierTrainingConfig,
    CrossValidator,
    MemotionTrainer,
    MemotionTrainingArguments,
    class_weights,
    cross_validate,
    stratified_folds,
    train_text_classifier,
    train_vision_classifier,
)
from hf_memotion.vise import ViseConfig, ViseForImageClassification, ViseForPretraining, ViseModel

register_auto_classes()

__version__ = "0.1.0"

__all__ = [
    "PROBLEMS",
    "PROBLEM_NAMES",
    "ClassifierTrainingConfig",
    "CrossValidator",
    "DemoDataConfig",
    "ImageDecodeError",
    "MemeEmotionPipeline",
    "MemeInputError",
    "MemeProcessor",
    "MemotionCardData",
    "MemotionEnsembleConfig",
    "MemotionEnsembleModel",
    "MemotionFormatError",
    "MemotionImageProcessor",
    "MemotionTextConfig",
    "MemotionTextForSequenceClassification",
    "MemotionTextModel",
    "MemotionTrainer",
    "MemotionTrainingArguments",
    "MemotionVisionConfig",
    "MemotionVisionForImageClassification",
    "MemotionVisionModel",
    "Problem",
    "ViseConfig",
    "ViseForImageClassification",
    "ViseForPretraining",
    "ViseModel",
    "class_weights",
    "convert_polynet_state_dict",
    "cross_validate",
    "decode_submission",
    "encode_submission",
    "fit_stackers",
    "format_statistics",
    "get_problem",
    "load_memotion",
    "load_memotion_metric",
    "load_rgb_image",
    "make_demo_data",
    "memotion_scores",
    "native_bf16",
    "read_answer_file",
    "read_meme_text",
    "register_auto_classes",
    "stratified_folds",
    "theoretical_peak",
    "train_text_classifier",
    "train_vision_classifier",
    "write_answer_file",
]
