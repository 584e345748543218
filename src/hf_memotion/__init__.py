"""hf-memotion: meme emotion analysis by modality ensemble, and VisE, for the Hugging Face ecosystem.

The top level holds what most users need: the models and their configs, the processors, the pipeline, the
trainer and its arguments, the family registry, the Memotion loader and the metric. Everything else lives in its
subpackage (``hf_memotion.data``, ``hf_memotion.families``, ``hf_memotion.recipe``, ``hf_memotion.vise``, ...).

``import hf_memotion`` registers the library where it plugs in, as importing peft or timm does: the model classes
with transformers' Auto classes, PolyNet with timm, the built-in model families, and the ``"meme-emotion"``
pipeline.

Examples:
    >>> import hf_memotion
    >>> hf_memotion.MemotionTextConfig(problems=["humour"]).problems
    ['humour']
    >>> from transformers import AutoConfig
    >>> type(AutoConfig.for_model("vise")).__name__
    'ViseConfig'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_memotion.threads import apply_thread_policy

apply_thread_policy()  # before torch loads: idle OpenMP threads spin briefly (a busy machine costs its share)

from hf_memotion.lazy import lazy_exports  # noqa: E402

__version__ = "0.1.0"

#: The public names, each with the module that defines it: ``__all__``, the lazy table below, the type checkers'
#: imports and the API reference agree with it (``tests/test_house.py`` compares them).
_EXPORTS = {
    "MemotionTextConfig": "hf_memotion.models.text.configuration_memotion_text",
    "MemotionTextModel": "hf_memotion.models.text.modeling_memotion_text",
    "MemotionTextForSequenceClassification": "hf_memotion.models.text.modeling_memotion_text",
    "MemotionVisionConfig": "hf_memotion.models.vision.configuration_memotion_vision",
    "MemotionVisionModel": "hf_memotion.models.vision.modeling_memotion_vision",
    "MemotionVisionForImageClassification": "hf_memotion.models.vision.modeling_memotion_vision",
    "MemotionImageProcessor": "hf_memotion.models.vision.image_processing_memotion",
    "MemotionMultimodalConfig": "hf_memotion.models.multimodal.configuration_memotion_multimodal",
    "MemotionMultimodalModel": "hf_memotion.models.multimodal.modeling_memotion_multimodal",
    "MemotionMultimodalForClassification": "hf_memotion.models.multimodal.modeling_memotion_multimodal",
    "MemotionMultimodalProcessor": "hf_memotion.models.multimodal.processing_memotion_multimodal",
    "MemotionEnsembleConfig": "hf_memotion.ensemble.configuration_memotion_ensemble",
    "MemotionEnsembleModel": "hf_memotion.ensemble.modeling_memotion_ensemble",
    "MemeProcessor": "hf_memotion.ensemble.processing_memotion_ensemble",
    "ViseConfig": "hf_memotion.models.vise.configuration_vise",
    "ViseModel": "hf_memotion.models.vise.modeling_vise",
    "ViseForPretraining": "hf_memotion.models.vise.modeling_vise",
    "ViseForImageClassification": "hf_memotion.models.vise.modeling_vise",
    "MemeEmotionPipeline": "hf_memotion.pipelines.meme_emotion",
    "meme_emotion_pipeline": "hf_memotion.pipelines.meme_emotion",
    "MemotionTrainer": "hf_memotion.training.trainer",
    "MemotionTrainingArguments": "hf_memotion.training.arguments",
    "ClassifierTrainingArguments": "hf_memotion.training.arguments",
    "ModelFamily": "hf_memotion.families.base",
    "register_family": "hf_memotion.families.base",
    "load_memotion": "hf_memotion.data.memotion",
    "load_memotion_metric": "hf_memotion.metrics",
}

__all__ = [
    "ClassifierTrainingArguments",
    "MemeEmotionPipeline",
    "MemeProcessor",
    "MemotionEnsembleConfig",
    "MemotionEnsembleModel",
    "MemotionImageProcessor",
    "MemotionMultimodalConfig",
    "MemotionMultimodalForClassification",
    "MemotionMultimodalModel",
    "MemotionMultimodalProcessor",
    "MemotionTextConfig",
    "MemotionTextForSequenceClassification",
    "MemotionTextModel",
    "MemotionTrainer",
    "MemotionTrainingArguments",
    "MemotionVisionConfig",
    "MemotionVisionForImageClassification",
    "MemotionVisionModel",
    "ModelFamily",
    "ViseConfig",
    "ViseForImageClassification",
    "ViseForPretraining",
    "ViseModel",
    "__version__",
    "load_memotion",
    "load_memotion_metric",
    "meme_emotion_pipeline",
    "register_family",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # what type checkers and IDEs see
    from hf_memotion.data.memotion import load_memotion
    from hf_memotion.ensemble.configuration_memotion_ensemble import MemotionEnsembleConfig
    from hf_memotion.ensemble.modeling_memotion_ensemble import MemotionEnsembleModel
    from hf_memotion.ensemble.processing_memotion_ensemble import MemeProcessor
    from hf_memotion.families.base import ModelFamily, register_family
    from hf_memotion.metrics import load_memotion_metric
    from hf_memotion.models.multimodal.configuration_memotion_multimodal import MemotionMultimodalConfig
    from hf_memotion.models.multimodal.modeling_memotion_multimodal import (
        MemotionMultimodalForClassification,
        MemotionMultimodalModel,
    )
    from hf_memotion.models.multimodal.processing_memotion_multimodal import MemotionMultimodalProcessor
    from hf_memotion.models.text.configuration_memotion_text import MemotionTextConfig
    from hf_memotion.models.text.modeling_memotion_text import (
        MemotionTextForSequenceClassification,
        MemotionTextModel,
    )
    from hf_memotion.models.vise.configuration_vise import ViseConfig
    from hf_memotion.models.vise.modeling_vise import ViseForImageClassification, ViseForPretraining, ViseModel
    from hf_memotion.models.vision.configuration_memotion_vision import MemotionVisionConfig
    from hf_memotion.models.vision.image_processing_memotion import MemotionImageProcessor
    from hf_memotion.models.vision.modeling_memotion_vision import (
        MemotionVisionForImageClassification,
        MemotionVisionModel,
    )
    from hf_memotion.pipelines.meme_emotion import MemeEmotionPipeline, meme_emotion_pipeline
    from hf_memotion.training.arguments import ClassifierTrainingArguments, MemotionTrainingArguments
    from hf_memotion.training.trainer import MemotionTrainer

# The one registration: importing these packages registers what they define (the model packages with transformers'
# Auto classes and timm, the families with hf_memotion.families, the pipeline with transformers' pipelines).
import hf_memotion.families  # noqa: E402
import hf_memotion.models  # noqa: E402
import hf_memotion.pipelines  # noqa: E402, F401
