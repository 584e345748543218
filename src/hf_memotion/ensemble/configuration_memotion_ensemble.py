"""The configuration of the modality ensemble: its base models (members), problems and meta-estimators.

Examples:
    >>> config = MemotionEnsembleConfig(problems=["sarcasm"], base_models=[
    ...     {"name": "vision", "family": "vision", "path": "vision", "problems": ["sarcasm"]}])
    >>> [(m.name, m.family) for m in config.members]
    [('vision', 'vision')]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

from hf_memotion.families import get_family
from hf_memotion.models.heads import resolve_problem_labels

__all__ = ["BACKENDS", "EnsembleMember", "MemotionEnsembleConfig", "ensemble_entries"]

#: Longest text a member's ``max_length`` may ask for, in tokens (the paper's models read at most 512).
MAX_TEXT_TOKENS = 8192
#: How an ensemble folder is served: PyTorch models and skops files, or an exported ONNX folder.
BACKENDS = ("pytorch", "onnx")


@dataclass(frozen=True)
class EnsembleMember:
    """One base model of an ensemble, as its ``config.json`` lists it (``base_models``), read back typed.

    Attributes:
        name: Its name (the key of its probabilities, its Table 7 row).
        family: Its registered family (:func:`hf_memotion.families.get_family`), which loads and serves it.
        path: Its folder inside the ensemble, or a Hub id (with ``revision``).
        problems: The problems it predicts (its own and its aliases).
        aliases: ``{problem: problem whose probabilities it reads}`` (motivational in subtasks B and C).
        revision: The pinned revision of a member referenced by Hub id (not copied into the folder).
        max_length: An exported ONNX member's text length (what its tokenizer truncates to).
        pad_to: An exported ONNX member's fixed text length, for a tower trained on texts padded to it (SigLIP's);
            see :class:`~hf_memotion.models.text.preprocessing.TextFeeding`.

    Examples:
        >>> member = EnsembleMember.from_dict({"name": "bert", "family": "text", "path": "bert",
        ...                                    "problems": ["humour"]}, where="base model 0")
        >>> member.family, member.to_dict()["problems"]
        ('text', ['humour'])
    """

    name: str
    family: str
    path: str
    problems: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    revision: str | None = None
    max_length: int | None = None
    pad_to: int | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "base model") -> EnsembleMember:
        """Read one ``base_models`` entry; a missing, unknown or mistyped key is one line naming it."""
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
        where = f"base model {values.get('name')!r}" if values.get("name") else where
        unknown = sorted(set(values) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {unknown}; an ensemble member takes {sorted(cls.__dataclass_fields__)}"
            )
        for key in ("name", "family", "path"):
            if not isinstance(values.get(key), str) or not values[key]:
                raise ValueError(f"{where}: needs a {key!r} string")
        if not isinstance(values.get("problems", []), list) or not isinstance(values.get("aliases") or {}, dict):
            raise ValueError(f"{where}: 'problems' must be a list and 'aliases' a mapping")
        try:
            get_family(values["family"])
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        for key in ("max_length", "pad_to"):
            length = values.get(key)
            if length is not None and (
                not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= MAX_TEXT_TOKENS
            ):
                raise ValueError(f"{where}: {key} must be a number of tokens from 1 to {MAX_TEXT_TOKENS}")
        return cls(
            name=values["name"],
            family=values["family"],
            path=values["path"],
            problems=list(values.get("problems") or []),
            aliases=dict(values.get("aliases") or {}),
            revision=values.get("revision"),
            max_length=values.get("max_length"),
            pad_to=values.get("pad_to"),
        )

    def to_dict(self) -> dict[str, Any]:
        """As ``config.json`` lists it (empty optional keys left out)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


class MemotionEnsembleConfig(PretrainedConfig):
    r"""Configuration of a :class:`MemotionEnsembleModel`.

    Attributes:
        base_models: One entry per base model (:class:`EnsembleMember`, read back typed by :attr:`members`):
            ``name``, ``family`` (``"text"``, ``"vision"``, ``"multimodal"`` or another registered one), ``path`` (a
            subfolder of the ensemble), or ``path`` + ``revision`` (a Hub id pinned to a revision: referenced, not
            copied), and the ``problems`` it predicts; optionally ``aliases``, ``{problem: problem whose
            probabilities it reads}``, for problems with the same labels served by one head (motivational in subtasks
            B and C).
        problems: Problems the ensemble predicts.
        meta: Per problem: ``method``, ``model_order``, ``feature_order``, ``file`` (skops file or
            ``None`` for rules), the selection ``scores`` and the ``calibration`` map (method, parameters, the
            out-of-fold log-loss of each method compared; none when absent), and the ``background``: each feature
            block's mean over the training rows (what stands in for a left-out model in explanations; ensembles
            saved before it have none, and a uniform answer stands in).
        features: ``"own"`` (a problem's meta-estimator reads that problem's probabilities) or ``"all"``.
        dtype_checks: Per lower-precision dtype (``"bfloat16"``), the held-out check
            :meth:`MemotionEnsembleModel.check_dtype` recorded; ``dtype="auto"`` reads it
            (:mod:`hf_memotion.ensemble.inference_dtype`).
        backend: ``"pytorch"`` (base models as ``PreTrainedModel`` folders, meta-estimators as skops files) or
            ``"onnx"`` (an exported folder: ``model.onnx`` per base model, ``meta/<problem>.onnx``; served by ONNX
            Runtime, :mod:`hf_memotion.ensemble.onnx_runtime`).
        onnx: For an exported folder: the exporter, opset, the largest probability difference against PyTorch
            measured at export, and the ``int8`` held-out check when int8 graphs were written.

    Examples:
        >>> config = MemotionEnsembleConfig(problems=["humour"], base_models=[
        ...     {"name": "text", "family": "text", "path": "text", "problems": ["humour"]}])
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
        members = [EnsembleMember.from_dict(entry, where=f"base model {i}") for i, entry in enumerate(self.base_models)]
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"base model names must be unique, got {names}")
        for member in members:
            for alias, target in member.aliases.items():
                if alias not in member.problems or target not in member.problems:
                    raise ValueError(
                        f"base model {member.name!r}: alias {alias!r} -> {target!r} must name two of its problems"
                    )
                if len(resolve_problem_labels([alias])[alias]) != len(resolve_problem_labels([target])[target]):
                    raise ValueError(
                        f"base model {member.name!r}: {alias!r} and {target!r} have different "
                        "classes; only problems with the same labels can share a head"
                    )
        self._check_meta()

    def _check_meta(self) -> None:
        """Every meta entry must fit the problems and base models, so a bad config fails on loading."""
        from hf_memotion.ensemble.calibration import ProblemCalibration
        from hf_memotion.ensemble.stacking import META_METHODS

        serves = {m.name: set(m.problems) for m in self.members}
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
                or not all(isinstance(v, int | float) and 0.0 <= v <= 1.0 for v in values)
                for name, values in background.items()
            ):
                raise ValueError(
                    f"{where}: background must map feature blocks of feature_order to lists of probabilities (0 to 1)"
                )
            onnx_classes = entry.get("onnx_classes")
            if onnx_classes is not None and (
                not isinstance(onnx_classes, list)
                or not onnx_classes
                or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < classes for c in onnx_classes)
                or len(set(onnx_classes)) != len(onnx_classes)
            ):
                raise ValueError(
                    f"{where}: onnx_classes must list distinct class ids of {problem!r} (0 to {classes - 1}), got "
                    f"{onnx_classes!r}; export the ensemble again"
                )
            calibration = ProblemCalibration.from_dict(entry.get("calibration"), where=f"{where}.calibration")
            calibration.check_classes(classes, where=f"{where}.calibration")

    @property
    def members(self) -> list[EnsembleMember]:
        """The base models, typed (:class:`EnsembleMember`), in order."""
        return [EnsembleMember.from_dict(entry) for entry in self.base_models]


def ensemble_entries(folder: Path) -> list[str] | None:
    """The entries an ensemble folder's writer made (what a new save or export there may replace), or ``None``.

    Read from the folder's own ``config.json`` (a checked, bounded read): the config, the card, ``meta/`` and each
    member's folder inside it. A folder whose config is not an ensemble's (or unreadable) is not one of ours.

    Examples:
        >>> import json, tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "config.json").write_text(json.dumps({"model_type": "memotion_ensemble",
        ...     "base_models": [{"name": "text", "path": "text"}, {"name": "hub", "path": "org/m", "revision": "x"}]}))
        >>> ensemble_entries(folder)
        ['README.md', 'config.json', 'meta', 'text']
    """
    import json

    from hf_memotion.folder_safety import MAX_CONFIG_BYTES, read_inside

    try:
        config = json.loads(read_inside(folder, "config.json", "ensemble config", MAX_CONFIG_BYTES))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("model_type") != MemotionEnsembleConfig.model_type:
        return None
    members = {
        str(entry["path"]).split("/")[0]
        for entry in config.get("base_models") or []
        if isinstance(entry, dict) and isinstance(entry.get("path"), str) and not entry.get("revision")
    }
    return sorted({"config.json", "README.md", "meta", *(m for m in members if m not in ("", ".", ".."))})
