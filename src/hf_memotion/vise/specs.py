"""The typed specs of the three VisE configs: mining, pretraining and the downstream evaluation.

Read by :func:`hf_memotion.specs.parse_spec` (an unknown key names file, section and the nearest valid
key); the defaults here are the only ones. The steps that take them are in :mod:`hf_memotion.vise.commands`.

Examples:
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
from hf_memotion.vise.evaluation import LINEAR_FEATURES, PROTOCOLS, SETTING_PROTOCOLS, SETTINGS, ProtocolArguments
from hf_memotion.vise.mining_steps import MiningSpec
from hf_memotion.vise.pretraining import PretrainingArguments

__all__ = [
    "DEFAULT_PREPROCESSING",
    "BackboneSpec",
    "DownstreamTaskSpec",
    "EvaluationRunSpec",
    "LabelsSpec",
    "MiningRunSpec",
    "PretrainRunSpec",
    "check_preprocessing",
]

#: The one preprocessing of every row by default: the common ImageNet evaluation (shorter side to 256, centre crop
#: 224, bilinear), with the pretraining augmentation (random resized crop and flip) for training.
DEFAULT_PREPROCESSING = {"crop_pct": 0.875, "interpolation": "bilinear"}


def check_preprocessing(values: Mapping[str, Any]) -> dict[str, Any]:
    """A ``preprocessing`` section, checked (``crop_pct`` in (0, 1], a known ``interpolation``, no other key).

    Examples:
        >>> check_preprocessing({"crop_pct": 0.95, "interpolation": "bicubic"})
        {'crop_pct': 0.95, 'interpolation': 'bicubic'}
    """
    unknown = sorted(set(values) - {"crop_pct", "interpolation"})
    if unknown:
        raise ValueError(f"preprocessing: unknown key(s) {unknown}; it takes crop_pct and interpolation")
    crop_pct = float(values.get("crop_pct", DEFAULT_PREPROCESSING["crop_pct"]))
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"preprocessing.crop_pct must be in (0, 1], got {crop_pct}")
    interpolation = str(values.get("interpolation", DEFAULT_PREPROCESSING["interpolation"]))
    if interpolation not in ("bilinear", "bicubic", "nearest"):
        raise ValueError(f"preprocessing.interpolation must be bilinear, bicubic or nearest, got {interpolation!r}")
    return {"crop_pct": crop_pct, "interpolation": interpolation}


ENGINES = ("local", "spark")


@dataclass
class MiningRunSpec:
    """``scripts/mine_vise_labels.py``.

    Attributes:
        data: ``path`` (a folder of jsonl/parquet engagement shards) or ``demo`` (demo-corpus settings).
        output_dir: Clusters, label shards, errors and ``mining.json``.
        num_proc: Processes labelling shards (local), or Spark cores (``local[num_proc]``); default 1 / 2.
        mining: The mining settings (the paper's by default).
        engine: ``"local"`` (this machine) or ``"spark"`` (``data.path`` may then be any URI Spark reads:
            ``hdfs://``, ``s3a://``...).
        spark_memory: JVM memory of a local Spark session (under ``spark-submit`` the cluster's settings apply).
        plan: What ``--plan`` counts with where the corpus is not at hand: ``posts`` in the corpus and
            ``comments_per_post`` (default: the paper's 20.25).
    """

    data: dict[str, Any] = field(default_factory=lambda: {"demo": {}})
    output_dir: str = "outputs/vise_mined"
    num_proc: int | None = None
    mining: MiningSpec = field(default_factory=MiningSpec)
    engine: str = "local"
    spark_memory: str = "2g"
    plan: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.plan or {}) - {"posts", "comments_per_post"})
        if unknown:
            raise ValueError(f"plan: unknown key(s) {unknown}; it takes posts and comments_per_post")
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
    pretraining: PretrainingArguments = field(default_factory=PretrainingArguments)
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
class DownstreamTaskSpec:
    """One downstream task of an evaluation config.

    Attributes:
        name: The task's name in the tables (default: the reader's).
        format: ``unbiased_emotion``, ``politics``, ``hateful_memes``, ``cub`` or ``image_folder``.
        path: The release folder (or ``demo``: settings of a small demo task in that format).
        demo: Demo-task settings (``output_dir``, ``n_per_class``...).
        options: The reader's options (``n_splits``...).
        text_encoder: For tasks with texts: a folder or Hub id (``tiny:bert`` offline; the paper: RoBERTa-base).
        settings: For tasks with texts, which of ``image_text_frozen`` (default), ``image_text_finetuned`` and
            ``image_only`` to run (the paper's Tables 12, 14, 15-16).
        schedule: This task's schedule for both protocols (``epochs``, ``lr_epochs``, ``lr_decay``, ...: any
            protocol field), over the run's protocol sections.
        linear: This task's linear-protocol fields, over ``schedule``.
        finetune: This task's fine-tuning fields, over ``schedule``.
        batch_sizes: Batch size per backbone architecture (``resnet50``) or backbone name, over the rest (the
            paper's batch sizes differ per backbone).
        images: Images per split (``train``, ``validation``, ``test``) for ``--plan``'s compute estimate (default:
            the paper's release sizes for its four formats, a demo task's from its settings).
        preprocessing: This task's ``crop_pct`` / ``interpolation``, over the run's (every row of the task alike).
        backbones: The backbones this task evaluates (default: all; CUB's Table 2 has fewer rows).
        schedule_note: Where ``schedule`` comes from when it is not the paper's (an assumption is said so in
            ``results.md`` and ``--plan``).
    """

    name: str | None = None
    format: str | None = None
    path: str | None = None
    demo: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    text_encoder: str | None = None
    settings: list[str] | None = None
    schedule: dict[str, Any] = field(default_factory=dict)
    linear: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    batch_sizes: dict[str, int] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    preprocessing: dict[str, Any] | None = None
    backbones: list[str] | None = None
    schedule_note: str | None = None

    def __post_init__(self):
        if (self.path is None) == (self.demo is None):
            raise ValueError(
                f"task {self.name or self.format!r} takes 'path' (the release folder) or 'demo' (settings)"
            )
        self.options = dict(self.options or {})
        for setting in self.settings or ():
            if setting not in SETTINGS:
                raise ValueError(f"task {self.name or self.format!r}: setting {setting!r} is not one of {SETTINGS}")
        for section in ("schedule", "linear", "finetune"):
            values = dict(getattr(self, section) or {})
            ProtocolArguments.from_dict(values, section=f"tasks.{self.name or self.format}.{section}")  # checked now
            setattr(self, section, values)
        self.batch_sizes = {str(k): int(v) for k, v in (self.batch_sizes or {}).items()}

    @property
    def label(self) -> str:
        """The task's name in the tables."""
        return self.name or str(self.format)

    def task_settings(self, has_text: bool) -> list[str]:
        """The settings this task runs (image-only tasks: ``image_only``)."""
        if not has_text:
            return ["image_only"]
        return list(self.settings or ["image_text_frozen"])


@dataclass
class BackboneSpec:
    """A backbone of an evaluation config.

    Attributes:
        source: A VisE folder or Hub id, ``random:<timm name>`` (random init), ``timm:<timm name>`` (timm's
            ImageNet-supervised weights), or a baseline of the paper's tables from its public checkpoint:
            ``moco:<file>``, ``virtex:<file>``, ``icmlm:<file>``, ``vqagrid:<file>``, ``clip:<file or timm tag>``
            (:mod:`hf_memotion.models.vise.baselines`).
        architecture: Its timm architecture, for ``--plan`` where the files are not at hand.
        pretrained_file: For ``timm:``, a local ImageNet weight file instead of timm's download.
        protocols: The protocols this backbone's rows run (default: the run's; the paper's ResNet-101 rows are in
            its fine-tuning table only).
        group: The row's backbone group in the paper's tables (its "Backbone" column), whose reference row its
            differences are taken against; default: its architecture (a baseline's: ``resnet50``, as the paper
            groups CLIP's modified ResNet-50 and VQAGrid's detectron2 one).
    """

    source: str
    architecture: str | None = None
    pretrained_file: str | None = None
    protocols: list[str] | None = None
    group: str | None = None

    @property
    def kind(self) -> str:
        """``"vise"`` (a folder or Hub id), ``"random"``, ``"timm"`` or a baseline kind (``"moco"``, ``"clip"``...)."""
        from hf_memotion.models.vise.baselines import BASELINE_KINDS

        prefix = self.source.split(":", 1)[0] if ":" in self.source else ""
        return prefix if prefix in ("random", "timm", *BASELINE_KINDS) else "vise"

    @property
    def table_group(self) -> str | None:
        """The backbone group of its row (see ``group``)."""
        if self.group:
            return self.group
        return "resnet50" if self.kind not in ("vise", "random", "timm") else self.resolved_architecture()

    def resolved_architecture(self) -> str | None:
        """The timm architecture: given, in the source's name, or in a local folder's ``config.json``."""
        import json
        from pathlib import Path

        if self.architecture:
            return self.architecture
        if self.source.startswith(("random:", "timm:")):
            return self.source.split(":", 1)[1]
        if self.kind != "vise":
            from hf_memotion.models.vise.baselines import baseline_layout

            return baseline_layout(self.kind).architecture
        config = Path(self.source) / "config.json"
        if config.is_file():
            return json.loads(config.read_text()).get("architecture")
        return None


@dataclass
class EvaluationRunSpec:
    """``scripts/evaluate_vise.py``.

    Attributes:
        output_dir: ``results.md``, ``results.json``, plots, and the finished grid points (``runs/``).
        backbones: ``{name: source}`` or ``{name: {source: ..., architecture: ...}}`` (:class:`BackboneSpec`).
        reference: The row each row is compared against (the tables' differences): a backbone's name, or a mapping
            from backbone group (architecture) to its reference backbone, as the paper's arrows compare each row
            with IN-Sup of the same backbone.
        preprocessing: The one image preprocessing of every row (every backbone kind): ``crop_pct`` and
            ``interpolation`` of the evaluation transform (resize the shorter side to ``image_size / crop_pct``,
            centre crop), the training transform being the pretraining augmentation (random resized crop and
            flip) at the same interpolation; each backbone keeps its own normalisation statistics. A task's own
            ``preprocessing`` wins.
        protocols: ``linear`` and/or ``finetune``.
        image_size: Input side (default: each backbone's processor's).
        tasks: The downstream tasks.
        seed: Seed of every grid point (a protocol section's own ``seed`` wins).
        selection: ``"held_out"`` (select on 10% of train, report on the untouched split) or ``"paper"`` (the
            paper's: Hateful Memes and CUB select on the split they report; see
            :mod:`hf_memotion.data.downstream`).
        linear_features: ``"cached"`` (centre-crop features computed once: fast) or ``"augmented"`` (the paper's
            pretraining augmentation every epoch).
        device: Where the backbones, the text encoders, the linear classifiers and the fine-tuning run:
            ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        decode_workers: Processes decoding images for the linear protocol (0: the main process; on a GPU machine
            a few keep the device fed).
        linear: The linear protocol's grid and schedule.
        finetune: The fine-tuning protocol's grid and schedule (stock ``TrainingArguments`` fields pass through).
        device_tflops: ``--plan``'s assumed sustained rate of one device, in TFLOP/s, for the GPU-hours.
    """

    output_dir: str = "outputs/vise_eval"
    backbones: dict[str, Any] = field(default_factory=dict)
    reference: str | dict[str, str] | None = None
    preprocessing: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PREPROCESSING))
    protocols: list[str] = field(default_factory=lambda: list(PROTOCOLS))
    image_size: int | None = None
    tasks: list[DownstreamTaskSpec] = field(default_factory=list)
    seed: int = 0
    selection: str = "held_out"
    linear_features: str = "cached"
    device: str = "auto"
    decode_workers: int = 0
    linear: ProtocolArguments | None = None
    finetune: ProtocolArguments | None = None
    device_tflops: float = 100.0

    def __post_init__(self):
        self.protocols = list(self.protocols or PROTOCOLS)
        for protocol in self.protocols:
            if protocol not in PROTOCOLS:
                raise ValueError(f"protocols: {protocol!r} is not one of {PROTOCOLS}")
        if not self.backbones:
            raise ValueError("the config names no backbones (backbones: {name: folder, Hub id or random:<arch>})")
        self.backbones = {
            str(name): value
            if isinstance(value, BackboneSpec)
            else BackboneSpec(**value)
            if isinstance(value, Mapping)
            else BackboneSpec(str(value))
            for name, value in self.backbones.items()
        }
        references = self.reference.values() if isinstance(self.reference, Mapping) else [self.reference]
        for reference in references:
            if reference is not None and reference not in self.backbones:
                raise ValueError(f"reference {reference!r} is not one of the backbones {sorted(self.backbones)}")
        self.preprocessing = check_preprocessing({**DEFAULT_PREPROCESSING, **dict(self.preprocessing or {})})
        for task in self.tasks:
            check_preprocessing(dict(task.preprocessing or {}))
            unknown = sorted(set(task.backbones or []) - set(self.backbones))
            if unknown:
                raise ValueError(f"task {task.label!r}: backbones {unknown} are not in the config's backbones")
        if not self.tasks:
            raise ValueError("the config lists no tasks")
        if self.selection not in ("held_out", "paper"):
            raise ValueError(f"selection must be 'held_out' or 'paper', got {self.selection!r}")
        if self.linear_features not in LINEAR_FEATURES:
            raise ValueError(f"linear_features must be one of {LINEAR_FEATURES}, got {self.linear_features!r}")
        if int(self.decode_workers) < 0:
            raise ValueError(f"decode_workers must be 0 or more, got {self.decode_workers}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, source: str | None = None) -> EvaluationRunSpec:
        """Read a config mapping; a protocol section without ``seed`` takes the top-level one."""
        values = dict(values or {})
        for protocol in PROTOCOLS:
            section = values.get(protocol)
            if isinstance(section, Mapping) or section is None:
                values[protocol] = {"seed": values.get("seed", 0), **dict(section or {})}
        return parse_spec(cls, values, source=source)

    def reference_of(self, backbone: str) -> str | None:
        """The backbone ``backbone``'s row is compared against (``None``: none)."""
        if isinstance(self.reference, Mapping):
            return self.reference.get(self.backbones[backbone].table_group or "")
        return self.reference

    def task_preprocessing(self, task: DownstreamTaskSpec) -> dict[str, Any]:
        """The preprocessing every row of ``task`` gets: the run's, then the task's own."""
        return check_preprocessing({**self.preprocessing, **dict(task.preprocessing or {})})

    def protocol_settings(
        self,
        protocol: str,
        task: DownstreamTaskSpec | None = None,
        backbone: str | None = None,
        architecture: str | None = None,
    ) -> ProtocolArguments:
        """The settings of ``protocol`` for a task and backbone.

        Layered: the run's protocol section, the task's ``schedule``, the task's section of the protocol, then its
        batch size for the backbone (by name, else by architecture).
        """
        base = getattr(self, protocol) or ProtocolArguments(seed=self.seed)
        if task is None:
            return base
        values = {**base.to_dict(), **task.schedule, **getattr(task, protocol)}
        for key in (backbone, architecture):
            if key is not None and key in task.batch_sizes:
                values["batch_size"] = task.batch_sizes[key]
                break
        kind = self.backbones[backbone].kind if backbone in self.backbones else "vise"
        if kind not in ("vise", "random", "timm"):  # a baseline whose grid the paper widened (CLIP's)
            from hf_memotion.models.vise.baselines import baseline_layout

            grid = baseline_layout(kind).base_learning_rates
            if grid is not None:
                values["base_learning_rates"] = list(grid)
        return ProtocolArguments.from_dict(values, section=f"tasks.{task.label}.{protocol}")

    def combinations(
        self, task: DownstreamTaskSpec, has_text: bool, backbone: str | None = None
    ) -> list[tuple[str, str]]:
        """``(setting, protocol)`` pairs this run evaluates for ``task`` (and ``backbone``), as the paper runs them."""
        if backbone is not None and task.backbones is not None and backbone not in task.backbones:
            return []
        own = self.backbones[backbone].protocols if backbone is not None else None
        return [
            (setting, protocol)
            for setting in task.task_settings(has_text)
            for protocol in self.protocols
            if protocol in SETTING_PROTOCOLS[setting] and (own is None or protocol in own)
        ]
