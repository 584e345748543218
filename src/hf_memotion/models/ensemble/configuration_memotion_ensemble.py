"""The configuration of the modality ensemble: its base models, problems and meta-estimators.

Examples:
    >>> config = MemotionEnsembleConfig(problems=["sarcasm"], base_models=[
    ...     {"name": "vision", "modality": "vision", "path": "vision", "problems": ["sarcasm"]}])
    >>> [m["name"] for m in config.base_models]
    ['vision']
"""

from __future__ import annotations

import math
from typing import Any

from transformers import PretrainedConfig

from hf_memotion.models.heads import resolve_problem_labels

__all__ = ["BACKENDS", "MODALITIES", "MemotionEnsembleConfig"]

MODALITIES = ("text", "vision", "multimodal")
#: How an ensemble folder is served: PyTorch models and skops files, or an exported ONNX folder.
BACKENDS = ("pytorch", "onnx")


class MemotionEnsembleConfig(PretrainedConfig):
    r"""Configuration of a :class:`MemotionEnsembleModel`.

    Attributes:
        base_models: One entry per base model: ``name``, ``modality`` (``"text"``, ``"vision"`` or ``"multimodal"``),
            ``path`` (a subfolder of the ensemble), or ``path`` + ``revision`` (a Hub id pinned to a
            revision: referenced, not copied), and the ``problems`` it predicts; optionally ``aliases``,
            ``{problem: problem whose probabilities it reads}``, for problems with the same labels served by one head
            (motivational in subtasks B and C).
        problems: Problems the ensemble predicts.
        meta: Per problem: ``method``, ``model_order``, ``feature_order``, ``file`` (skops file or
            ``None`` for rules), the selection ``scores`` and the ``calibration`` map (method, parameters, the
            out-of-fold log-loss of each method compared; none when absent), and the ``background``: each feature
            block's mean over the training rows (what stands in for a left-out model in explanations; ensembles
            saved before it have none, and a uniform answer stands in).
        features: ``"own"`` (a problem's meta-estimator reads that problem's probabilities) or ``"all"``.
        dtype_checks: Per lower-precision dtype (``"bfloat16"``), the held-out check
            :meth:`MemotionEnsembleModel.check_dtype` recorded; ``dtype="auto"`` reads it
            (:mod:`hf_memotion.models.ensemble.inference_dtype`).
        backend: ``"pytorch"`` (base models as ``PreTrainedModel`` folders, meta-estimators as skops files) or
            ``"onnx"`` (an exported folder: ``model.onnx`` per base model, ``meta/<problem>.onnx``; served by ONNX
            Runtime, :mod:`hf_memotion.models.ensemble.onnx_runtime`).
        onnx: For an exported folder: the exporter, opset, the largest probability difference against PyTorch
            measured at export, and the ``int8`` held-out check when int8 graphs were written.

    Examples:
        >>> config = MemotionEnsembleConfig(problems=["humour"], base_models=[
        ...     {"name": "text", "modality": "text", "path": "text", "problems": ["humour"]}])
        >>> config.problem_labels["humour"]
        ['not_funny', 'funny']
    """

    model_type = "memotion_ensemble"

    base_models: list[dict[str, Any]] | None = None
    problems: list[str] | None = None
    problem_labels: dict[str, list[str]] | None = None
    meta: dict[str, dict[str, Any]] | None = None
    features: str = "own"
    dtype_checks: dict[str, dict[str, Any]] | None = None
    backend: str = "pytorch"
    onnx: dict[str, Any] | None = None

    def __post_init__(self, **kwargs: Any):
        super().__post_init__(**kwargs)
        self.base_models = list(self.base_models or [])
        self.problems = list(self.problems or [])
        self.problem_labels = resolve_problem_labels(self.problems, self.problem_labels) if self.problems else {}
        self.meta = dict(self.meta or {})
        self.dtype_checks = dict(self.dtype_checks or {})
        self.onnx = dict(self.onnx) if self.onnx else None
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.features not in ("own", "all"):
            raise ValueError(f"features must be 'own' or 'all', got {self.features!r}")
        names = [m.get("name") for m in self.base_models]
        if len(set(names)) != len(names):
            raise ValueError(f"base model names must be unique, got {names}")
        for entry in self.base_models:
            if entry.get("modality") not in MODALITIES:
                raise ValueError(f"base model {entry.get('name')!r}: modality must be one of {MODALITIES}")
            if not isinstance(entry.get("path"), str) or not isinstance(entry.get("problems", []), list):
                raise ValueError(f"base model {entry.get('name')!r}: needs a 'path' string and a 'problems' list")
            for alias, target in (entry.get("aliases") or {}).items():
                if alias not in entry["problems"] or target not in entry["problems"]:
                    raise ValueError(
                        f"base model {entry.get('name')!r}: alias {alias!r} -> {target!r} must name two of its problems"
                    )
                if len(resolve_problem_labels([alias])[alias]) != len(resolve_problem_labels([target])[target]):
                    raise ValueError(
                        f"base model {entry.get('name')!r}: {alias!r} and {target!r} have different "
                        "classes; only problems with the same labels can share a head"
                    )
        self._check_meta()

    def _check_meta(self) -> None:
        """Every meta entry must fit the problems and base models, so a bad config fails on loading."""
        from hf_memotion.models.ensemble.calibration import ProblemCalibration
        from hf_memotion.models.ensemble.stacking import META_METHODS

        serves = {m.get("name"): set(m.get("problems") or []) for m in self.base_models}
        for problem, entry in self.meta.items():
            where = f"meta[{problem!r}]"
            if problem not in self.problem_labels:
                raise ValueError(f"{where}: {problem!r} is not one of the ensemble's problems {self.problems}")
            if not isinstance(entry, dict) or entry.get("method") not in META_METHODS:
                raise ValueError(f"{where}: method must be one of {list(META_METHODS)}")
            classes = len(self.problem_labels[problem])
            if entry.get("num_classes") != classes:
                raise ValueError(f"{where}: num_classes is {entry.get('num_classes')!r}, {problem!r} has {classes}")
            order = entry.get("model_order")
            if not isinstance(order, list) or not order or any(problem not in serves.get(m, ()) for m in order):
                raise ValueError(
                    f"{where}: model_order {order!r} must list base models that predict {problem!r} "
                    f"(base models: {sorted(serves)})"
                )
            if not isinstance(entry.get("feature_order"), list):
                raise ValueError(f"{where}: feature_order must be a list")
            if entry["method"] not in ("average", "soft_vote", "hard_vote") and not entry.get("file"):
                raise ValueError(f"{where}: a {entry['method']} meta-estimator needs its skops 'file'")
            background = entry.get("background") or {}
            if not isinstance(background, dict) or any(
                name not in entry["feature_order"]
                or not isinstance(values, list)
                or not all(isinstance(v, int | float) and math.isfinite(v) for v in values)
                for name, values in background.items()
            ):
                raise ValueError(f"{where}: background must map feature blocks of feature_order to lists of numbers")
            calibration = ProblemCalibration.from_dict(entry.get("calibration"), where=f"{where}.calibration")
            calibration.check_classes(classes, where=f"{where}.calibration")
