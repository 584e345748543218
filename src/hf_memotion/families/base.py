"""What a model family is: the registry, the settings every member takes, and how one member's run is described.

A *family* is a kind of base model of the ensemble (``text``, ``vision``, ``multimodal``, or one of your own). It is
registered once, when the module that defines it is imported (:func:`register_family`, as timm's
``@register_model`` and peft's ``register_peft_method``), and owns, in that module:

- its typed YAML section: a :class:`MemberSpec` subclass (the keys a model entry of the family takes, its typed
  ``training:`` and its ``search:``: a learning-rate grid, an Optuna study or none);
- how it trains: ``train(data, output_dir, entry, run)``, with the shared options of a run in one
  :class:`MemberRun`;
- how a saved member loads (its model and its preprocessor) and its hooks as an ensemble member: the inputs it
  reads from a meme (its part of the ensemble's processor), inference optimisations, ONNX export or a refusal,
  whether explanations cover it, its size for ``--plan``, and the facts its model card states.

The recipe, selection, planning, the ensemble, explanations, ONNX and the Space ask the family by name
(:func:`get_family`); none of them compares family names.

Examples:
    >>> import hf_memotion  # registers the built-in families
    >>> {"text", "vision", "multimodal"} <= set(registered_families())
    True
    >>> get_family("vision").label
    'vision'
    >>> spec = parse_member({"name": "cnn", "family": "vision", "search": {"learning_rate": [0.01, 0.1]}})
    >>> type(spec).__name__, spec.training.optimizer, spec.search.count()
    ('VisionMemberSpec', 'sgd', 2)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from hf_memotion.specs import parse_spec, spec_to_dict
from hf_memotion.tasks import PROBLEM_NAMES
from hf_memotion.training.arguments import ClassifierTrainingArguments
from hf_memotion.training.pruning import PruningSpec
from hf_memotion.training.runs import MemberRun

if TYPE_CHECKING:
    import datasets
    import torch

    from hf_memotion.families.inputs import MemberInput
    from hf_memotion.models.text.preprocessing import TextFeeding
    from hf_memotion.training.runs import ClassifierRunResult

__all__ = [
    "LAYOUTS",
    "SHARED_PROBLEMS",
    "MemberRun",
    "MemberSpec",
    "ModelEntry",
    "ModelFamily",
    "UnknownFamilyError",
    "expand_models",
    "get_family",
    "parse_member",
    "register_family",
    "registered_families",
]

LAYOUTS = ("multitask", "per_problem")
#: Problems whose labels are the same: motivational is binary in subtask B and C (``share_motivational``).
SHARED_PROBLEMS = {"motivational_intensity": "motivational"}


class UnknownFamilyError(ValueError):
    """A config or a saved ensemble names a family that no imported module registered."""


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily | type[ModelFamily]) -> Any:
    """Register a family under its ``name`` (an instance, or a class: usable as a class decorator).

    Registering the same class again is a no-op; another class under a taken name is refused.

    Examples:
        >>> register_family(get_family("text")) is get_family("text")
        True
    """
    instance = family() if isinstance(family, type) else family
    taken = _FAMILIES.get(instance.name)
    if taken is not None and type(taken) is not type(instance):
        raise ValueError(f"family {instance.name!r} is already registered by {type(taken).__qualname__}")
    _FAMILIES.setdefault(instance.name, instance)
    return family


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name``.

    Raises:
        UnknownFamilyError: No imported module registered it (one line naming the registered ones).
    """
    try:
        return _FAMILIES[name]
    except (KeyError, TypeError):
        raise UnknownFamilyError(
            f"family {name!r} is not registered (registered: {', '.join(sorted(_FAMILIES))}); a family of your own is "
            "registered when the module that defines it is imported"
        ) from None


def registered_families() -> list[str]:
    """The names of the registered families, in registration order."""
    return list(_FAMILIES)


# ------------------------------------------------------------------------------------------------ the YAML section


@dataclass
class MemberSpec:
    """A model entry of a config: the keys every family takes (each family's subclass adds its own).

    Read from YAML by :func:`parse_member` (or as part of a run spec): ``family`` picks the subclass, so a key that
    another family takes is refused with the nearest valid key, and ``training:`` is typed once, over the family's
    defaults.

    Attributes:
        name: The model's name (its folder under ``models/``; required in an ensemble config).
        family: The registered family (``"text"``, ``"vision"``, ``"multimodal"``...).
        problems: Problems to predict (default: all nine).
        layout: ``"multitask"`` (one model, one forward pass for all problems) or ``"per_problem"`` (the paper's).
        training: The trainer's settings (:class:`~hf_memotion.training.arguments.ClassifierTrainingArguments`,
            and any stock ``TrainingArguments`` field), over the family's defaults.
        model: Fields of the family's model config.
        weighted_loss: Inverse-frequency class weights (the paper's loss).
        search: The family's candidates, if it searches: a learning-rate grid
            (:class:`~hf_memotion.families.search.GridSpec`) or an Optuna study
            (:class:`~hf_memotion.families.search.StudySpec`).
        pruning: How the search stops hopeless candidates (:class:`~hf_memotion.training.pruning.PruningSpec`;
            default: the run's ``pruning``, else none).

    Examples:
        >>> spec = parse_member({"name": "bert", "layout": "per_problem", "problems": ["humour", "sarcasm"]})
        >>> spec.groups()
        {'bert-humour': ['humour'], 'bert-sarcasm': ['sarcasm']}
    """

    spec_former_keys: ClassVar[dict[str, str]] = {"modality": "family"}  # refused, with its new name

    name: str | None = None
    family: str = "text"
    problems: list[str] | None = None
    layout: Literal["multitask", "per_problem"] = "multitask"
    training: ClassifierTrainingArguments = field(default_factory=ClassifierTrainingArguments)
    model: dict[str, Any] = field(default_factory=dict)
    weighted_loss: bool = True
    search: Any = None
    pruning: PruningSpec | None = None

    @classmethod
    def spec_variant(cls, values: Mapping[str, Any]) -> type:
        """The spec class of the family ``values`` names (this class's own family when it names none)."""
        default = next(f.default for f in dataclasses.fields(cls) if f.name == "family")
        named = values.get("family", default) if isinstance(values, Mapping) else default
        variant = get_family(str(named)).spec_class
        if issubclass(cls, variant) and (cls is variant or hasattr(cls, "run_of")):
            return cls  # already that family's section (or a run spec built on it)
        return _run_spec_for(cls, variant)

    def __post_init__(self) -> None:
        family = get_family(self.family)
        if not isinstance(self, family.spec_class):
            raise ValueError(f"model {self.name!r}: a {self.family} member is a {family.spec_class.__name__}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"model {self.name!r}: layout must be 'multitask' or 'per_problem', got {self.layout!r}")
        if isinstance(self.training, Mapping):  # built in Python from a mapping: typed here, over the defaults
            self.training = type(self.default_training()).from_dict(self.training)
        self.model = dict(self.model or {})
        self.problems = list(self.problems or PROBLEM_NAMES)
        if self.search is not None:
            if not self.search.enabled:
                self.search = None  # e.g. n_trials: 0
            elif self.pruning is not None:
                self.pruning.check(self.search, self.name)

    @classmethod
    def default_training(cls) -> ClassifierTrainingArguments:
        """The family's training defaults (the ``training`` field's)."""
        return next(f for f in dataclasses.fields(cls) if f.name == "training").default_factory()

    def groups(self, share_motivational: bool = False) -> dict[str, list[str]]:
        """Models to train: ``{name: problems}``; one per problem under ``layout: per_problem``.

        With ``share_motivational`` (per-problem layout), ``motivational_intensity`` gets no model of its own: its
        labels are ``motivational``'s, whose model serves both (see :meth:`aliases`).
        """
        if self.layout == "multitask":
            return {self.name or "multitask": list(self.problems)}
        prefix = f"{self.name}-" if self.name else ""
        return {f"{prefix}{p}": [p] for p in self.problems if not (share_motivational and self.shares(p))}

    def shares(self, problem: str) -> bool:
        """Whether ``problem`` is served by another problem's per-problem model under ``share_motivational``."""
        return self.layout == "per_problem" and problem in SHARED_PROBLEMS and SHARED_PROBLEMS[problem] in self.problems

    def aliases(self, problems: list[str], share_motivational: bool = False) -> dict[str, str]:
        """``{problem: problem it reads}`` for a model trained on ``problems`` (one of :meth:`groups`)."""
        if not share_motivational:
            return {}
        return {a: p for a, p in SHARED_PROBLEMS.items() if p in problems and self.shares(a)}

    def with_values(self, values: Mapping[str, Any]) -> MemberSpec:
        """This spec with a candidate's values: training fields into ``training``, the rest into ``model``.

        Examples:
            >>> spec = parse_member({"family": "text"}).with_values({"learning_rate": 1e-4, "dropout": 0.2})
            >>> spec.training.learning_rate, spec.model
            (0.0001, {'dropout': 0.2})
        """
        names = {f.name for f in dataclasses.fields(self.training)}
        training = dataclasses.replace(self.training, **{k: v for k, v in values.items() if k in names})
        model = {**self.model, **{k: v for k, v in values.items() if k not in names}}
        return dataclasses.replace(self, training=training, model=model)

    def settings(self) -> dict[str, Any]:
        """What defines a training of this spec: its family's fields less name, layout, problems, search and pruning.

        Examples:
            >>> sorted(parse_member({"family": "text"}).settings())
            ['backbone', 'family', 'model', 'tiny', 'training', 'weighted_loss']
        """
        skip = {"name", "layout", "search", "pruning", "problems"}
        own = {f.name for f in dataclasses.fields(get_family(self.family).spec_class)} - skip
        return {k: v for k, v in spec_to_dict(self).items() if k in own}


def _run_spec_for(cls: type, variant: type) -> type:
    """The run spec ``cls`` (built on :class:`MemberSpec`, as ``scripts/train_text.py``'s) over ``variant``."""
    origin = getattr(cls, "run_of", cls)
    if not issubclass(origin, MemberSpec) or origin is MemberSpec or issubclass(variant, origin):
        return variant
    key = (origin, variant)
    if key not in _RUN_SPECS:
        own = [
            (f.name, f.type, field(default=f.default, default_factory=f.default_factory))
            for f in dataclasses.fields(origin)
            if f.name not in _MEMBER_FIELDS
        ]
        name = variant.__name__.removesuffix("MemberSpec") + origin.__name__
        made = dataclasses.make_dataclass(name, own, bases=(variant,), namespace={"__module__": origin.__module__})
        made.__doc__ = origin.__doc__
        made.run_of = origin  # what it was made from (spec_variant of another family starts from it again)
        _RUN_SPECS[key] = made
    return _RUN_SPECS[key]


_RUN_SPECS: dict[tuple[type, type], type] = {}
_MEMBER_FIELDS = {f.name for f in dataclasses.fields(MemberSpec)}


def parse_member(values: Mapping[str, Any] | None, *, source: str | None = None, section: str = "") -> MemberSpec:
    """A model entry from a config mapping, as its family's spec (errors name file, section, key and the fix)."""
    return parse_spec(MemberSpec, values, source=source, section=section)


@dataclass
class ModelEntry:
    """One model to train, as a config entry expands (``layout: per_problem`` makes one per problem).

    Attributes:
        name: Its folder under ``models/`` (``"bert-humour"``).
        problems: The problems it is trained on.
        group: The config entry it comes from (its Table 7 row).
        spec: That entry's :class:`MemberSpec`.
        aliases: Problems it serves through another's labels (``share_motivational``): ``{alias: problem}``.

    Examples:
        >>> entry = ModelEntry("cnn", ["humour"], "cnn", parse_member({"name": "cnn", "family": "vision"}))
        >>> entry.family.name, entry.spec.training.optimizer
        ('vision', 'sgd')
    """

    name: str
    problems: list[str]
    group: str | None
    spec: MemberSpec
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: MemberSpec) -> ModelEntry:
        """The one entry of a multi-task spec (what :func:`train_member` trains when given a spec)."""
        groups = spec.groups()
        if len(groups) != 1:
            raise ValueError(f"model {spec.name!r} is {len(groups)} models (layout: per_problem): train each entry")
        name, problems = next(iter(groups.items()))
        return cls(name, problems, spec.name, spec)

    @property
    def family(self) -> ModelFamily:
        """Its family (the spec's)."""
        return get_family(self.spec.family)

    @property
    def served_problems(self) -> list[str]:
        """Every problem it predicts: its own and its aliases."""
        return [*self.problems, *self.aliases]

    def with_values(self, values: Mapping[str, Any]) -> ModelEntry:
        """This entry with a candidate's values (:meth:`MemberSpec.with_values`)."""
        return dataclasses.replace(self, spec=self.spec.with_values(values))

    def settings(self) -> dict[str, Any]:
        """What defines its training (the run key's part that comes from the config)."""
        return {"family": self.spec.family, "problems": list(self.problems), **self.spec.settings()}


def expand_models(models: Sequence[MemberSpec], share_motivational: bool = False) -> list[ModelEntry]:
    """One :class:`ModelEntry` per trained model: ``layout: per_problem`` (the paper's) makes one per problem.

    Examples:
        >>> spec = parse_member({"name": "bert", "layout": "per_problem", "problems": ["humour", "sarcasm"]})
        >>> [(e.name, e.problems) for e in expand_models([spec])]
        [('bert-humour', ['humour']), ('bert-sarcasm', ['sarcasm'])]
    """
    return [
        ModelEntry(name, problems, spec.name, spec, spec.aliases(problems, share_motivational))
        for spec in models
        for name, problems in spec.groups(share_motivational).items()
    ]


def inherit_pruning(models: Sequence[MemberSpec], pruning: PruningSpec) -> None:
    """Give every searching model without a ``pruning`` of its own the run's (checked against its search)."""
    for model in models:
        if model.pruning is None and model.search is not None:
            pruning.check(model.search, model.name)
            model.pruning = pruning


# ------------------------------------------------------------------------------------------------ the family


class ModelFamily:
    """A kind of base model: its section, its training, its loading and its hooks as an ensemble member.

    Subclass it, set the class attributes, implement :meth:`train`, :meth:`load`, :meth:`load_preprocessor` and
    :meth:`inputs`, and register an instance with :func:`register_family` where the class is defined. Every other
    hook has a default: no inference optimisation, no ONNX export (a one-line refusal), no per-input explanation,
    no ``--plan`` size.

    Attributes:
        name: What ``family:`` names in a config and in an ensemble's ``config.json``.
        label: How reports, Table 7 and the Space name its members (``"text"``, ``"vision"``, ``"joint"``).
        spec_class: Its YAML section (a :class:`MemberSpec` subclass whose ``family`` defaults to :attr:`name`).
        reads: What of a meme it reads: ``("text",)``, ``("image",)`` or both (a member reading one is unimodal).
        explains: Whether explanations attribute its answer to its one input (a heat map over the image, words of
            the text), beside its Shapley share, which every member gets.
        onnx_refusal: Why the ONNX export does not cover it (``None``: it does).
        pipeline_tag: The Hub's task tag of a saved member's card.
        int8_dynamic: Whether ``quantize_text`` (an ensemble's loading option) quantizes it to int8 dynamically (it
            is then read in fp32, the weights int8 quantization starts from).
        model_types: The ``model_type`` a saved member's ``config.json`` may name (empty: any type transformers
            or this library defines); a member folder naming another is refused before anything in it is parsed.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    spec_class: ClassVar[type[MemberSpec]] = MemberSpec
    reads: ClassVar[tuple[str, ...]] = ()
    pipeline_tag: ClassVar[str] = "image-classification"
    int8_dynamic: ClassVar[bool] = False
    explains: ClassVar[bool] = False
    onnx_refusal: ClassVar[str | None] = "the ONNX export does not cover this family; serve with the PyTorch backend"
    model_types: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # -- training

    def train(
        self, data: datasets.DatasetDict, output_dir: Any, entry: ModelEntry, run: MemberRun
    ) -> ClassifierRunResult:
        """Train one member: k-fold out-of-fold probabilities, refit, test scores, the run folder."""
        raise NotImplementedError

    def study_space(self) -> dict[str, Any] | None:
        """The default space of an Optuna ``search:`` (``None``: the family has no study of its own)."""
        return None

    # -- loading and serving

    def load(self, folder: str, **options: Any) -> tuple[torch.nn.Module, Any]:
        """A saved member and its preprocessor (``options``: ``from_pretrained``'s: ``dtype``, ``device_map``...)."""
        raise NotImplementedError

    def load_preprocessor(self, folder: str) -> Any:
        """The preprocessor saved with a member (what an exported ONNX folder keeps beside each graph)."""
        raise NotImplementedError

    def inputs(self, preprocessor: Any, text: TextFeeding | None) -> list[MemberInput]:
        """What the member reads from a meme: its part of the ensemble's processor, one entry per input.

        ``text`` is how its text tower is fed (:meth:`TextFeeding.of_member` of its config), ``None`` for a member
        that reads no text.
        """
        raise NotImplementedError

    def optimize_for_inference(
        self, model: torch.nn.Module, *, channels_last: bool, images_per_forward: Any, quantize_text: bool
    ) -> None:
        """Make a loaded member cheaper to run (same outputs to float rounding, int8 excepted); default: nothing."""

    @contextlib.contextmanager
    def exportable(self, model: torch.nn.Module) -> Iterator[None]:
        """The model set up for the ONNX exporter's tracing while the block runs, then restored."""
        yield

    # -- planning and cards

    def planned_model(
        self, entry: ModelEntry, notes: list[str]
    ) -> tuple[torch.nn.Module, dict[str, torch.Tensor], int]:
        """``(model, inputs for a batch of two, crops per meme)`` for ``--plan`` (built under fake tensors)."""
        raise NotImplementedError(f"--plan cannot size a {self.name} member: its family gives no planned_model")

    def network(self, spec: MemberSpec) -> str:
        """What a plan row and a card name as the member's network."""
        return self.name

    def card_facts(self, spec: MemberSpec) -> dict[str, Any]:
        """What a member's card states beyond its scores, from its spec.

        ``pipeline_tag``, ``network``, ``base_model`` (a Hub id the weights started from, or ``None``) and
        ``pretrained`` (where the weights came from, in words); the model class's own ``card_defaults`` add how it
        is loaded.
        """
        return {
            "pipeline_tag": self.pipeline_tag,
            "network": self.network(spec),
            "base_model": None,
            "pretrained": "as its family builds it",
        }
