"""Card data held by a model: filled while it trains, rendered into ``README.md`` by its ``save_pretrained``.

In the manner of SetFit and SpanMarker: every model class of the library carries a
:class:`MemotionCardData` (``model.card_data``). :class:`CardDataCallback` (added by
:class:`~hf_memotion.training.MemotionTrainer`) records the training's settings, its last evaluation
and where it ended; a recipe adds what only it knows (cross-validated and held-out scores, the data's
provenance) with :meth:`MemotionCardData.update`. ``save_pretrained`` renders the card with the
templates of :mod:`hf_memotion.cards.rendering`, so any saved folder has a card, whoever saved it. A model
loaded from a local folder keeps that folder's card until it learns something new.

Examples:
    >>> data = MemotionCardData(kind="base_model", info={"modality": "text", "backbone": "tiny:bert"})
    >>> data.update(problems=["humour"], test_scores={"humour": 0.61})
    >>> data.render().data.eval_results[0].metric_value
    0.61
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hf_memotion.io_utils import atomic_write_text

__all__ = [
    "MAX_CARD_BYTES",
    "SAVED_MODEL_FILES",
    "CardDataCallback",
    "MemotionCardData",
    "ModelCardMixin",
    "check_save_target",
    "read_model_card",
]

CARD_KINDS = ("base_model", "vise", "ensemble")
#: Largest ``README.md`` read from a folder (our cards are a few kB).
MAX_CARD_BYTES = 1024 * 1024


def read_model_card(folder: str | os.PathLike) -> str | None:
    """A folder's ``README.md`` through the checked read (inside, regular, at most 1 MB, UTF-8); ``None`` if absent.

    Raises:
        UnsafeModelFolderError: The card links outside the folder, is no regular file, or is too large.
        ValueError: The card is not UTF-8.

    Examples:
        >>> import tempfile
        >>> read_model_card(tempfile.mkdtemp()) is None
        True
    """
    from hf_memotion.folder_safety import read_inside

    if not os.path.lexists(Path(folder) / "README.md"):
        return None
    data = read_inside(folder, "README.md", "model card", MAX_CARD_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"model card {Path(folder) / 'README.md'} is not UTF-8 text ({err})") from None


@dataclass
class MemotionCardData:
    """What a model's card says.

    Attributes:
        kind: ``"base_model"`` (a text or visual classifier), ``"vise"`` (a VisE backbone) or ``"ensemble"``.
        info: The renderer's inputs: for a base model ``modality``, ``backbone``/``architecture``, ``problems``,
            ``training``, ``oof_scores``, ``test_scores``, ``data``...; for VisE the pretraining report; for the
            ensemble the run's report (see :mod:`hf_memotion.cards.rendering`).
        training: Settings of the last training, recorded by :class:`CardDataCallback`.
        eval_metrics: Metrics of the last evaluation during training.
        train_summary: Steps, epochs and final training loss.
        name: The model's name in the card's title.
        license: License id of the card (default: the renderer's).
        model_id: Hub id for the usage snippet (publishing fills it in).
        previous_card: A loaded folder's ``README.md``, re-written unchanged while nothing new is known.

    Examples:
        >>> MemotionCardData(kind="vise", info={"origin": "released"}).kind
        'vise'
    """

    kind: str = "base_model"
    info: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    train_summary: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    license: str | None = None
    model_id: str | None = None
    previous_card: str | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.kind not in CARD_KINDS:
            raise ValueError(f"card kind must be one of {CARD_KINDS}, got {self.kind!r}")

    def update(self, **info: Any) -> None:
        """Add what a recipe knows (scores, settings, provenance) to ``info``."""
        self.info.update(info)
        self.previous_card = None

    def render(self, defaults: dict[str, Any] | None = None):
        """The :class:`huggingface_hub.ModelCard` (``defaults``: what the model's config says, under ``info``)."""
        from hf_memotion.cards import rendering

        defaults = dict(defaults or {})
        info = {**defaults, **self.info}
        if "card" in defaults or "card" in self.info:  # the model class's wording under what its family added
            info["card"] = {**(defaults.get("card") or {}), **(self.info.get("card") or {})}
        if self.training and not info.get("training"):
            info["training"] = dict(self.training)
        info.setdefault("eval_metrics", dict(self.eval_metrics))
        info.setdefault("train_summary", dict(self.train_summary))
        options = {"model_id": self.model_id}
        if self.license:
            options["license"] = self.license
        if self.kind == "ensemble":
            return rendering.ensemble_card(info, **options)
        if self.kind == "vise":
            return rendering.vise_card(info, **options)
        return rendering.base_model_card(info, name=self.name or "model", **options)

    def save(self, folder: str | os.PathLike, defaults: dict[str, Any] | None = None) -> Path:
        """Write ``folder/README.md`` atomically: the loaded card unchanged, else a fresh rendering."""
        path = Path(folder) / "README.md"
        text = self.previous_card if self.previous_card is not None else str(self.render(defaults))
        atomic_write_text(path, text)
        return path


def _global_batch(args: Any) -> int:
    return (
        int(args.per_device_train_batch_size)
        * int(getattr(args, "world_size", 1))
        * int(args.gradient_accumulation_steps)
    )


class CardDataCallback(TrainerCallback):
    """Records a training in a :class:`MemotionCardData`: its settings, last evaluation and end state.

    Examples:
        >>> callback = CardDataCallback(MemotionCardData())
        >>> callback.card_data.training
        {}
    """

    def __init__(self, card_data: MemotionCardData):
        self.card_data = card_data

    def on_train_begin(self, args, state, control, **kwargs):
        """Record the settings that define the training."""
        optim = str(getattr(args.optim, "value", args.optim))
        recorded = {
            "learning_rate": args.learning_rate,
            "optimizer": optim
            + (f" (momentum {args.momentum})" if optim == "sgd" and hasattr(args, "momentum") else ""),
            "weight_decay": args.weight_decay,
            "global_batch_size": _global_batch(args),
            "epochs": args.num_train_epochs if args.max_steps <= 0 else None,
            "max_steps": args.max_steps if args.max_steps > 0 else None,
            "schedule": (
                f"warm-up then x{args.lr_decay} at {args.lr_milestone_unit}s {list(args.lr_milestones)}"
                if getattr(args, "lr_milestones", None)
                else str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
            ),
            "max_grad_norm": args.max_grad_norm,
            "seed": args.seed,
            "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        }
        self.card_data.training = {k: v for k, v in recorded.items() if v is not None}
        self.card_data.previous_card = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        """Keep the metrics of the latest evaluation."""
        if metrics:
            self.card_data.eval_metrics = {
                k: round(float(v), 4)
                for k, v in metrics.items()
                if isinstance(v, int | float) and "runtime" not in k and "per_second" not in k
            }
            self.card_data.eval_metrics["epoch"] = round(float(state.epoch or 0.0), 2)

    def on_train_end(self, args, state, control, **kwargs):
        """Record where the training ended."""
        losses = [e["loss"] for e in state.log_history if "loss" in e]
        self.card_data.train_summary = {
            "steps": state.global_step,
            "epochs": round(float(state.epoch or 0.0), 2),
            "final_training_loss": round(float(losses[-1]), 4) if losses else None,
        }


#: What ``save_pretrained`` writes at the top of a model folder (besides weight shards named after the weights).
SAVED_MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "generation_config.json",
    "README.md",
)


def check_save_target(folder: str | os.PathLike, model_type: str) -> None:
    """Refuse to save a ``model_type`` model where it would overwrite files that are not a saved model of that type.

    A folder is fine when it is new, holds none of :data:`SAVED_MODEL_FILES`, or holds a saved ``model_type`` model
    (its ``config.json`` says so): every other file there (a Trainer's ``checkpoint-*``, the user's notes) is left
    as it is. A folder whose ``README.md``, ``config.json`` or weights are someone else's is refused before anything
    is written.

    Raises:
        FolderNotOursError: Naming the folder and the files that would be overwritten.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "notes.md").write_text("mine")
        >>> check_save_target(folder, "memotion_text")  # nothing of it would be overwritten: fine
        >>> _ = (folder / "README.md").write_text("# my project")
        >>> check_save_target(folder, "memotion_text")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        hf_memotion.io_utils.FolderNotOursError: ... holds README.md and no saved memotion_text model...
    """
    import json

    from hf_memotion.folder_safety import MAX_CONFIG_BYTES, read_inside
    from hf_memotion.io_utils import FolderNotOursError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FolderNotOursError(f"{folder} is a file: save_pretrained needs a folder")
    present = [name for name in SAVED_MODEL_FILES if (folder / name).exists() or (folder / name).is_symlink()]
    if not present:
        return
    try:
        saved = json.loads(read_inside(folder, "config.json", "model config", MAX_CONFIG_BYTES)).get("model_type")
    except (OSError, ValueError, AttributeError):
        saved = None
    if saved != model_type:
        raise FolderNotOursError(
            f"{folder} holds {', '.join(present)} and no saved {model_type} model: save_pretrained never writes over "
            "them; choose a new or empty folder"
        )


class ModelCardMixin:
    """For ``PreTrainedModel`` classes: a ``card_data`` attribute, and a card written by ``save_pretrained``.

    A class sets ``card_kind`` and may override :meth:`card_defaults` (what its config tells a card).

    Examples:
        >>> from hf_memotion.models.text import MemotionTextForSequenceClassification
        >>> issubclass(MemotionTextForSequenceClassification, ModelCardMixin)
        True
    """

    card_kind = "base_model"

    @property
    def card_data(self) -> MemotionCardData:
        """The card data of this model (created on first use)."""
        data = self.__dict__.get("_card_data")
        if data is None:
            data = MemotionCardData(kind=self.card_kind)
            self.__dict__["_card_data"] = data
        return data

    @card_data.setter
    def card_data(self, value: MemotionCardData) -> None:
        self.__dict__["_card_data"] = value

    def card_defaults(self) -> dict[str, Any]:
        """What the model's config tells its card (overridden per class)."""
        return {}

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any):
        """``PreTrainedModel.save_pretrained``, then the card (``README.md``) on the main process.

        Where the folder already holds a ``config.json``, card or weights, they must be a saved model of this class's
        kind (the same ``model_type``): otherwise nothing is written (:func:`check_save_target`), so no file of the
        user's is overwritten. Other files in the folder are left as they are.
        """
        check_save_target(save_directory, self.config.model_type)
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            self.card_data.save(save_directory, self.card_defaults())
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any):
        """``PreTrainedModel.from_pretrained``; a local folder's card is kept for the next save.

        A local folder's files are checked first (:func:`~hf_memotion.folder_safety.check_folder_is_safe`: no link
        out of the folder, no FIFO or device, no oversized config), then its configs
        (:func:`~hf_memotion.folder_safety.check_model_configs`: no checkpoint path, location or refused model type),
        and its card is read through the checked read. A Hub id is fetched first as a folder of model files
        (:func:`~hf_memotion.hub.snapshots.download_model_folder`) and checked the same way.

        A weights file that is not safetensors (truncated, replaced) is reported in one line naming the folder.
        """
        from safetensors import SafetensorError

        from hf_memotion.folder_safety import check_folder_is_safe, check_model_configs
        from hf_memotion.hub.snapshots import HUB_OPTIONS, download_model_folder, is_hub_id

        name, local = pretrained_model_name_or_path, None
        if isinstance(name, str) and not Path(name).exists() and is_hub_id(name):
            # a Hub id: its model files fetched (within a size) and checked as a folder before anything is parsed
            hub = {k: kwargs[k] for k in HUB_OPTIONS if kwargs.get(k) is not None}
            pretrained_model_name_or_path = str(download_model_folder(name, kwargs.get("revision"), hub))
        if (
            isinstance(pretrained_model_name_or_path, str | os.PathLike)
            and Path(pretrained_model_name_or_path).is_dir()
        ):
            local = Path(pretrained_model_name_or_path)
            subfolder = kwargs.get("subfolder") or ""
            # links, FIFOs, sizes, then what the configs name: checked before transformers reads anything
            check_folder_is_safe(local / subfolder, recursive=False, refuse_pickles=False)
            check_model_configs(local / subfolder, what=cls.__name__)
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as err:
            raise ValueError(
                f"{pretrained_model_name_or_path}: the weights are not a readable safetensors file ({err}); "
                "download or save the model again"
            ) from None
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True
        if local is not None:
            model.card_data.previous_card = read_model_card(local)
        if name != pretrained_model_name_or_path:
            model.config._name_or_path = name  # the Hub id, not the cache folder it was read from
        return loaded
