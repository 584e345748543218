"""The typed specs of the three VisE configs: mining, pretraining and the downstream evaluation.

Read by :func:`hf_memotion.specs.parse_spec` (an unknown key names file, section and the nearest valid
key); the defaults here are the only ones. The steps that take them are in :mod:`hf_memotion.vise.steps`.

Example:
    >>> MiningRunSpec.from_dict({"mining": {"comment_clusters": 64}}).mining.comment_clusters
    64
    >>> PretrainRunSpec.from_dict({"pretraining": {"bf16": True}}).pretraining.extra
    {'bf16': True}
    >>> EvaluationRunSpec.from_dict({"finetune": {"epoch": 3}}, source="eval.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hf_memotion.specs.SpecError: eval.yaml, section 'finetune': unknown key 'epoch' (did you mean 'epochs'?); ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hf_memotion.specs import parse_spec
from hf_memotion.vise.evaluation import PROTOCOLS, ProtocolSettings
from hf_memotion.vise.mining import MiningConfig
from hf_memotion.vise.pretraining import PretrainingSettings

__all__ = ["EvaluationRunSpec", "LabelsSpec", "MiningRunSpec", "PretrainRunSpec", "TaskSpec"]

ENGINES = ("local", "spark")


@dataclass
class MiningRunSpec:
    """``scripts/mine_vise_labels.py``.

    Attributes:
        data: ``path`` (a folder of jsonl/parquet engagement shards) or ``demo`` (demo-corpus settings).
        output_dir: Clusters, label shards, errors and ``mining.json``.
        num_proc: Processes labelling shards (local), or Spark cores (``local[num_proc]``); default 1 / 2.
        mining: The mining settings (the paper's by default).
        engine: ``"local"`` (this machine) or ``"spark"``.
    """

    data: dict[str, Any] = field(default_factory=lambda: {"demo": {}})
    output_dir: str = "outputs/vise_mined"
    num_proc: int | None = None
    mining: MiningConfig = field(default_factory=MiningConfig)
    engine: str = "local"

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be 'local' (this machine) or 'spark', got {self.engine!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, source: str | None = None) -> MiningRunSpec:
        """Read a config mapping (``source``: its file, named in errors)."""
        return parse_spec(cls, values, source=source)


@dataclass
class LabelsSpec:
    """Where pretraining's labels come from: ``labels`` (a mined folder or URL) or ``mine`` (a mining config)."""

    labels: str | None = None
    mine: str | None = None

    def __post_init__(self):
        if (self.labels is None) == (self.mine is None):
            raise ValueError("the data section takes 'labels' (a mined folder) or 'mine' (a mining config to run)")


@dataclass
class PretrainRunSpec:
    """``scripts/pretrain_vise.py``.

    Attributes:
        data: The labels (or the mining config to run first).
        output_dir: Run folder (``backbone/``, ``pretraining/``, ``pretraining.json``, ``loss_curves.png``).
        pretraining: The run's settings (the paper's optimisation by default; stock ``TrainingArguments`` fields
            such as ``bf16`` pass through).
        resume: Continue from the last checkpoint in ``output_dir``.
        license: License id of the model cards (default: the data's terms, ``other``; ``apache-2.0`` on the demo).
    """

    data: LabelsSpec = field(default_factory=lambda: LabelsSpec(mine="configs/vise_mining_demo.yaml"))
    output_dir: str = "outputs/vise_pretrain"
    pretraining: PretrainingSettings = field(default_factory=PretrainingSettings)
    resume: bool = True
    license: str | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, source: str | None = None) -> PretrainRunSpec:
        """Read a config mapping (``source``: its file, named in errors)."""
        values = dict(values or {})
        if isinstance(values.get("data"), Mapping):  # `labels: null` beside `mine:` means "not given"
            values["data"] = {k: v for k, v in values["data"].items() if v is not None}
        return parse_spec(cls, values, source=source)


@dataclass
class TaskSpec:
    """One downstream task of an evaluation config.

    Attributes:
        name: The task's name in the tables (default: the reader's).
        format: ``unbiased_emotion``, ``hateful_memes``, ``cub`` or ``image_folder``.
        path: The release folder (or ``demo``: settings of a small demo task in that format).
        demo: Demo-task settings (``output_dir``, ``n_per_class``...).
        options: The reader's options (``n_splits``...).
        text_encoder: For tasks with texts: a folder or Hub id (``tiny:bert`` offline).
    """

    name: str | None = None
    format: str | None = None
    path: str | None = None
    demo: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    text_encoder: str | None = None

    def __post_init__(self):
        if (self.path is None) == (self.demo is None):
            raise ValueError(
                f"task {self.name or self.format!r} takes 'path' (the release folder) or 'demo' (settings)"
            )
        self.options = dict(self.options or {})


@dataclass
class EvaluationRunSpec:
    """``scripts/evaluate_vise.py``.

    Attributes:
        output_dir: ``results.md``, ``results.json``, plots, and the finished grid points (``runs/``).
        backbones: ``{name: VisE folder, Hub id or random:<timm name>}``.
        reference: The backbone the tables compare against.
        protocols: ``linear`` and/or ``finetune``.
        image_size: Input side (default: each backbone's processor's).
        tasks: The downstream tasks.
        seed: Seed of every grid point (a protocol section's own ``seed`` wins).
        linear: The linear protocol's grid and schedule.
        finetune: The fine-tuning protocol's grid and schedule (stock ``TrainingArguments`` fields pass through).
    """

    output_dir: str = "outputs/vise_eval"
    backbones: dict[str, str] = field(default_factory=dict)
    reference: str | None = None
    protocols: list[str] = field(default_factory=lambda: list(PROTOCOLS))
    image_size: int | None = None
    tasks: list[TaskSpec] = field(default_factory=list)
    seed: int = 0
    linear: ProtocolSettings | None = None
    finetune: ProtocolSettings | None = None

    def __post_init__(self):
        self.protocols = list(self.protocols or PROTOCOLS)
        for protocol in self.protocols:
            if protocol not in PROTOCOLS:
                raise ValueError(f"protocols: {protocol!r} is not one of {PROTOCOLS}")
        if not self.backbones:
            raise ValueError("the config names no backbones (backbones: {name: folder, Hub id or random:<arch>})")
        if self.reference is not None and self.reference not in self.backbones:
            raise ValueError(f"reference {self.reference!r} is not one of the backbones {sorted(self.backbones)}")
        if not self.tasks:
            raise ValueError("the config lists no tasks")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, source: str | None = None) -> EvaluationRunSpec:
        """Read a config mapping; a protocol section without ``seed`` takes the top-level one."""
        values = dict(values or {})
        for protocol in PROTOCOLS:
            section = values.get(protocol)
            if isinstance(section, Mapping) or section is None:
                values[protocol] = {"seed": values.get("seed", 0), **dict(section or {})}
        return parse_spec(cls, values, source=source)

    def protocol_settings(self, protocol: str) -> ProtocolSettings:
        """The settings of ``protocol`` (its section, or the paper's grid with the run's seed)."""
        return getattr(self, protocol) or ProtocolSettings(seed=self.seed)
