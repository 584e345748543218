"""VisE backbones as transformers models (registered with the Auto classes on import).

The config, ``ViseModel`` (AutoModel), the pretraining and classification heads, and the conversion of the
authors' released checkpoints.
"""

from hf_memotion.models.auto import register_model_family
from hf_memotion.models.vise.baselines import (  # registers resnet50_d2 with timm
    BASELINE_KINDS,
    baseline_layout,
    convert_baseline,
    load_baseline,
    read_checkpoint,
)
from hf_memotion.models.vise.configuration_vise import ViseConfig
from hf_memotion.models.vise.convert import (
    CheckpointMismatchError,
    convert_released_checkpoint,
    load_released_state_dict,
    save_converted_checkpoint,
    to_released_state_dict,
)
from hf_memotion.models.vise.modeling_vise import (
    ViseForImageClassification,
    ViseForPretraining,
    ViseModel,
    VisePreTrainedModel,
)
from hf_memotion.models.vision.image_processing_memotion import MemotionImageProcessor

register_model_family(
    ViseConfig,
    {
        "AutoModel": ViseModel,
        "AutoModelForImageClassification": ViseForImageClassification,
        "AutoModelForPreTraining": ViseForPretraining,
    },
    image_processor=MemotionImageProcessor,
)

__all__ = [
    "BASELINE_KINDS",
    "CheckpointMismatchError",
    "ViseConfig",
    "ViseForImageClassification",
    "ViseForPretraining",
    "ViseModel",
    "VisePreTrainedModel",
    "baseline_layout",
    "convert_baseline",
    "convert_released_checkpoint",
    "load_baseline",
    "load_released_state_dict",
    "read_checkpoint",
    "save_converted_checkpoint",
    "to_released_state_dict",
]
