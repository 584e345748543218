"""Explanations of the ensemble's answers, and how faithful they are.

- :mod:`~hf_memotion.explaining.shapley`: each base model's exact Shapley value on an answer;
- :mod:`~hf_memotion.explaining.grad_cam`: hook-based Grad-CAM heat maps of a visual model;
- :mod:`~hf_memotion.explaining.integrated_gradients`: word attributions of a textual model;
- :mod:`~hf_memotion.explaining.explanations`: all three per meme and answer (``pipe(meme, explain=True)``);
- :mod:`~hf_memotion.explaining.faithfulness`: the explanations checked against the demo data's planted cues.
"""

from hf_memotion.explaining.explanations import (
    ExplanationUnavailableError,
    crop_box,
    explain_memes,
    overlay_heatmap,
    place_heatmap,
)
from hf_memotion.explaining.grad_cam import SpatialActivationError, grad_cam, spatial_layer
from hf_memotion.explaining.integrated_gradients import WordAttributions, integrated_gradients, word_attributions
from hf_memotion.explaining.shapley import Contributions, member_shapley

__all__ = [
    "Contributions",
    "ExplanationUnavailableError",
    "SpatialActivationError",
    "WordAttributions",
    "crop_box",
    "explain_memes",
    "grad_cam",
    "integrated_gradients",
    "member_shapley",
    "overlay_heatmap",
    "place_heatmap",
    "spatial_layer",
    "word_attributions",
]
