"""The modality ensemble as a model repository that ``from_pretrained`` / ``save_pretrained`` / the Hub understand.

Layout of a saved ensemble::

    config.json                 model_type "memotion_ensemble": base models, problems, meta-estimators
    README.md                   (model card, written by the training script)
    text/ , vision/ , ...       one folder per base model (its own config, safetensors, tokenizer/processor),
                                loaded by its family (``family`` in config.json)
    meta/<problem>.skops        fitted scikit-learn meta-estimators (rules need no file)

A base model may instead be a Hub id pinned to a revision (``{"path": "org/model", "revision": "<sha>"}``).
Loading refuses a folder holding pickle-based files (``.pkl``, ``.pickle``, ``.joblib``, ``.bin``,
``.pt``, ``.pth``, ``.ckpt``) and any skops file with types outside the trusted list, before anything in
it is read.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from hf_memotion.cards import ModelCardMixin
from hf_memotion.cards.card_data import read_model_card
from hf_memotion.ensemble.calibration import ProblemCalibration
from hf_memotion.ensemble.configuration_memotion_ensemble import BACKENDS, MemotionEnsembleConfig, ensemble_entries
from hf_memotion.ensemble.inference_dtype import (
    cast_base_models,
    check_inference_dtype,
    measure_dtype_speed,
    needs_speed_measurement,
    resolve_inference_dtype,
)
from hf_memotion.ensemble.processing_memotion_ensemble import MemeProcessor
from hf_memotion.ensemble.stacking import (
    RULES,
    ProblemStacker,
    combine_stackers,
    dump_estimator,
    load_estimator,
    with_aliases,
)
from hf_memotion.families import get_family
from hf_memotion.folder_safety import (
    MAX_CONFIG_BYTES,
    PICKLE_SUFFIXES,
    UnsafeModelFolderError,
    check_folder_is_safe,
    check_model_configs,
    read_inside,
    resolve_inside,
)
from hf_memotion.hub.snapshots import HUB_OPTIONS, download_model_folder, is_hub_id
from hf_memotion.io_utils import atomic_write_bytes, atomic_write_text, staged_folder
from hf_memotion.models.onednn_linear import use_onednn_linear
from hf_memotion.models.text.preprocessing import TextFeeding

__all__ = [
    "BASE_MODEL_OPTIONS",
    "PICKLE_SUFFIXES",
    "MemotionEnsembleModel",
    "UnsafeModelFolderError",
]

#: ``from_pretrained`` options handed to every base model's ``from_pretrained`` (``attn_implementation``: text models).
BASE_MODEL_OPTIONS = ("dtype", "device_map", "max_memory", "offload_folder", "attn_implementation")
#: Options transformers' ``pipeline()`` always passes that an ensemble has no use for (no remote code is ever run).
_PIPELINE_OPTIONS = ("_from_pipeline", "code_revision", "_commit_hash")


def _link_tree(source: Path, destination: Path) -> None:
    """Hard-link every file of ``source`` into ``destination`` (a copy where links are impossible)."""
    check_folder_is_safe(source)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source} is not a saved model folder (no config.json)")
    for path in sorted(source.rglob("*")):
        if path.is_dir():
            continue
        target = destination / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(path, target)


def _target_device(device_map: Any) -> torch.device:
    """Where base models loaded with ``device_map`` run (the first device of a map; CPU without one)."""
    if device_map is None:
        return torch.device("cpu")
    if isinstance(device_map, Mapping):
        device_map = next(iter(device_map.values()), "cpu")
    if isinstance(device_map, int):
        return torch.device("cuda", device_map)
    if isinstance(device_map, torch.device):
        return device_map
    if device_map in ("auto", "balanced", "balanced_low_0", "sequential"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device_map)


def _resolve(path: str | os.PathLike, revision: str | None, hub_options: Mapping[str, Any] | None = None) -> Path:
    """The ensemble's folder: a local one, or the Hub repository's model files; checked either way."""
    local = Path(path)
    if not local.is_dir():
        return download_model_folder(str(path), revision, hub_options)
    check_folder_is_safe(local)
    return local


class MemotionEnsembleModel(ModelCardMixin, PreTrainedModel):
    """Independently trained text and vision models fused per problem by stacked meta-estimators.

    Examples:
        >>> import tempfile
        >>> from PIL import Image
        >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
        >>> folder = tempfile.mkdtemp() + "/ensemble"
        >>> random_ensemble(ENSEMBLE_SIZES["demo"]).save_pretrained(folder)
        >>> ensemble = MemotionEnsembleModel.from_pretrained(folder, dtype="float32")
        >>> ensemble.predict_proba([Image.new("RGB", (64, 64))], ["when the exam is on monday"])["humour"].shape
        (1, 2)
    """

    config_class = MemotionEnsembleConfig
    base_model_prefix = "ensemble"
    main_input_name = "texts"
    card_kind = "ensemble"

    def __init__(
        self,
        config: MemotionEnsembleConfig,
        base_models: Mapping[str, tuple[PreTrainedModel, Any]] | None = None,
        stackers: Mapping[str, ProblemStacker] | None = None,
    ):
        super().__init__(config)
        self.base_models = torch.nn.ModuleDict({name: model for name, (model, _) in (base_models or {}).items()})
        self.preprocessors = {name: prep for name, (_, prep) in (base_models or {}).items()}
        self.stackers = dict(stackers or {})
        self.inference_dtype_request: str | torch.dtype | None = None  # set by to_inference_dtype
        self.inference_dtype_reason = "the base models' own dtype (to_inference_dtype not called)"
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Base models arrive trained; nothing to initialise."""

    # ------------------------------------------------------------------ saving and loading

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        base_model_folders: Mapping[str, str | os.PathLike] | None = None,
        **kwargs: Any,
    ) -> None:
        """Write the ensemble folder (built in a temporary folder, then moved into place).

        Args:
            save_directory: The ensemble folder.
            base_model_folders: Saved base-model folders (``save_pretrained`` of the model and its tokenizer or image
                processor) to put in the ensemble instead of models held in memory: their files are hard-linked
                (copied where the file system cannot link), so assembling an ensemble neither loads its base
                models nor writes a second copy of their weights (what ``scripts/train.py`` does).
            **kwargs: Ignored (``PreTrainedModel.save_pretrained`` options do not apply to the ensemble folder).

        Examples:
            >>> import tempfile
            >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
            >>> root = Path(tempfile.mkdtemp())
            >>> full = random_ensemble(ENSEMBLE_SIZES["demo"])
            >>> full.save_pretrained(root / "full")
            >>> light = MemotionEnsembleModel(full.config, stackers=full.stackers)  # no base model in memory
            >>> light.save_pretrained(root / "linked", base_model_folders={"text": root / "full" / "text",
            ...                                                             "vision": root / "full" / "vision"})
            >>> (root / "linked" / "text" / "model.safetensors").stat().st_nlink >= 2  # the same file, linked
            True
        """
        target = Path(save_directory)
        with staged_folder(target, owned=ensemble_entries, what="an ensemble") as staging:
            meta = {}
            for problem, stacker in self.stackers.items():
                file = None
                if stacker.method not in RULES:
                    file = f"meta/{problem}.skops"
                    atomic_write_bytes(staging / file, dump_estimator(stacker.estimator))
                meta[problem] = {
                    "method": stacker.method,
                    "model_order": stacker.model_order,
                    "feature_order": stacker.feature_order,
                    "num_classes": stacker.num_classes,
                    "scores": stacker.scores,
                    "file": file,
                    "calibration": stacker.calibration.to_dict(),
                    "background": stacker.background,
                }
            config = copy.deepcopy(self.config)  # the live model's config is left as it is
            config.meta = meta
            config.architectures = [type(self).__name__]
            if hasattr(config, "custom_pipelines"):  # the task is this package's: never a remote-code pipeline
                del config.custom_pipelines
            folders = {name: Path(folder) for name, folder in (base_model_folders or {}).items()}
            for entry in config.members:
                if entry.revision:
                    continue  # a Hub id pinned to a revision: referenced, not copied
                if entry.name in folders:
                    _link_tree(folders[entry.name], staging / entry.path)
                    continue
                if entry.name not in self.base_models:
                    raise ValueError(f"base model {entry.name!r} is neither loaded nor given in base_model_folders")
                model = self.base_models[entry.name]
                model.save_pretrained(staging / entry.path)
                self.preprocessors[entry.name].save_pretrained(staging / entry.path)
            config.save_pretrained(staging)
            if self.card_data.info or self.card_data.previous_card is not None:  # a recipe's report, or a loaded card
                self.card_data.save(staging)
            if target.is_dir() and not (staging / "README.md").exists():  # the card already there: kept
                card = read_model_card(target)
                if card is not None:
                    atomic_write_text(staging / "README.md", card)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *args: Any,
        revision: str | None = None,
        channels_last: bool = True,
        quantize_text: bool = False,
        images_per_forward: int | str | None = "auto",
        onednn_linear: bool = True,
        backend: str | None = None,
        **kwargs: Any,
    ) -> MemotionEnsembleModel:
        """Load an ensemble folder or Hub repository (refusing pickle files and untrusted skops types).

        A folder exported to ONNX (``config.json`` says ``backend: "onnx"``:
        :meth:`export_onnx`) loads as an :class:`~hf_memotion.ensemble.onnx_runtime.OnnxMemotionEnsemble`
        served by ONNX Runtime, with the same prediction methods.

        Args:
            pretrained_model_name_or_path: A saved ensemble folder, or a Hub id (``revision`` pins it).
            *args: None are taken (an error, rather than being ignored).
            revision: The Hub revision of the ensemble (base models pinned in its config keep their own).
            channels_last: See :meth:`optimize_for_inference`.
            quantize_text: See :meth:`optimize_for_inference`.
            images_per_forward: See :meth:`optimize_for_inference`.
            onednn_linear: See :meth:`optimize_for_inference`.
            backend: ``"onnx"`` or ``"pytorch"`` to insist on one (an error naming the folder's otherwise); default:
                what the folder holds. An ONNX folder takes ``dtype`` ``"auto"``, ``"float32"`` or ``"int8"`` and
                ``device_map`` ``"cpu"`` or ``"cuda"``; the PyTorch-only options are ignored for it.
            **kwargs: ``dtype``: ``"auto"`` (the default, as in transformers: bf16 where the device computes it
                natively and the ensemble's recorded held-out check passed, else fp32; see
                :meth:`to_inference_dtype`) or an explicit dtype (``torch_dtype`` is read as ``dtype``).
                Options handed to every base model's ``from_pretrained``: ``device_map``, ``max_memory``,
                ``offload_folder``, ``attn_implementation`` (text models); and download options:
                ``token``, ``cache_dir``, ``force_download``, ``local_files_only``. Anything else is an error
                naming it. Through a pipeline these arrive as
                ``pipeline("meme-emotion", model=..., dtype=..., device_map=..., model_kwargs={...})``.

        Raises:
            TypeError: For an option this loader does not know (or positional arguments).
            ValueError: For ``trust_remote_code=True``: an ensemble never runs code from its folder.
        """
        if args:
            raise TypeError(f"MemotionEnsembleModel.from_pretrained takes one positional argument, got {len(args) + 1}")
        base_options, hub_options = cls._loading_options(kwargs)
        requested_dtype = base_options.pop("dtype", "auto")
        folder = _resolve(pretrained_model_name_or_path, revision, hub_options)
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{folder} has no config.json: not a saved MemotionEnsembleModel")
        try:
            config = MemotionEnsembleConfig.from_dict(
                json.loads(read_inside(folder, "config.json", "ensemble config", MAX_CONFIG_BYTES))
            )
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{config_file} is not a JSON config ({err})") from None
        if backend not in (None, *BACKENDS):
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend is not None and backend != config.backend:
            fix = (
                "export it with scripts/export_onnx.py (MemotionEnsembleModel.export_onnx)"
                if backend == "onnx"
                else "load it with backend='onnx', or use the PyTorch ensemble it was exported from"
            )
            raise ValueError(f"{pretrained_model_name_or_path} holds a {config.backend} ensemble, not {backend}: {fix}")
        if config.backend == "onnx":
            from hf_memotion.ensemble.onnx_runtime import OnnxMemotionEnsemble

            device = _target_device(base_options.get("device_map"))
            providers = ["CUDAExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
            return OnnxMemotionEnsemble.from_folder(folder, dtype=requested_dtype, providers=providers)
        stackers = {}
        for problem, entry in config.meta.items():  # estimators first: cheap to check, refused before any model loads
            stacker = ProblemStacker(
                [entry["method"]],
                method=entry["method"],
                scores=dict(entry.get("scores") or {}),
                model_order=list(entry["model_order"]),
                feature_order=list(entry["feature_order"]),
                num_classes=int(entry["num_classes"]),
                calibration=ProblemCalibration.from_dict(entry.get("calibration")),  # checked with the config
                background={k: list(v) for k, v in (entry.get("background") or {}).items()},
            )
            if entry.get("file"):
                data = read_inside(folder, entry["file"], f"meta-estimator file of {problem!r}")
                stacker.estimator = load_estimator(data, source=str(folder / entry["file"]))
            stackers[problem] = stacker
        target = _target_device(base_options.get("device_map"))
        time_after_loading = requested_dtype == "auto" and needs_speed_measurement(config, target)
        if time_after_loading:  # bf16 not yet timed there: read fp32, time both dtypes, then cast (below)
            dtype, dtype_reason = torch.float32, "to be timed"
        elif requested_dtype == "auto":  # resolved before loading: weights are read straight into that dtype
            dtype, dtype_reason = resolve_inference_dtype(config, target)
        else:
            dtype, dtype_reason = requested_dtype, "given"
        base_models = {}
        for entry in config.members:
            if entry.revision:  # a pinned Hub model: a Hub id only (never a local path), downloaded and checked
                if not is_hub_id(str(entry.path)):
                    raise UnsafeModelFolderError(
                        f"base model {entry.name!r}: path {entry.path!r} has a revision, so it must be a Hub id "
                        "(namespace/name); a model inside the ensemble folder takes a relative path and no revision"
                    )
                location = download_model_folder(entry.path, entry.revision, hub_options)
            else:
                location = resolve_inside(folder, entry.path, f"base model {entry.name!r} path")
                if not location.is_dir():
                    raise FileNotFoundError(
                        f"base model {entry.name!r}: {location} is missing (a Hub id needs a pinned revision)"
                    )
            family = get_family(entry.family)
            # its configs walked before transformers, timm or a tokenizer parses them
            check_model_configs(location, model_types=family.model_types, what=f"base model {entry.name!r}")
            options = dict(base_options)
            # int8 dynamic quantization works on fp32 layers: a member to quantize is read in fp32
            options["dtype"] = torch.float32 if quantize_text and family.int8_dynamic else dtype
            model, prep = family.load(str(location), **options)
            base_models[entry.name] = (model.eval(), prep)
        ensemble = cls(config, base_models=base_models, stackers=stackers).eval()
        ensemble.card_data.previous_card = read_model_card(folder)  # kept for the next save_pretrained
        ensemble.optimize_for_inference(
            channels_last=channels_last,
            quantize_text=quantize_text,
            images_per_forward=images_per_forward,
            onednn_linear=onednn_linear,
        )
        if time_after_loading:
            return ensemble.to_inference_dtype("auto")
        ensemble.inference_dtype_request, ensemble.inference_dtype_reason = requested_dtype, dtype_reason
        return ensemble

    @staticmethod
    def _loading_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split ``from_pretrained``'s keyword options into base-model and download options; refuse the rest."""
        options = dict(kwargs)
        if options.pop("trust_remote_code", None):
            raise ValueError(
                "trust_remote_code=True: an hf-memotion ensemble never runs code from its folder; the classes come "
                "from the installed hf-memotion package, so leave trust_remote_code unset"
            )
        if "torch_dtype" in options:  # transformers' old name
            torch_dtype = options.pop("torch_dtype")
            options.setdefault("dtype", torch_dtype)
        for name in _PIPELINE_OPTIONS:
            options.pop(name, None)
        unknown = sorted(set(options) - set(BASE_MODEL_OPTIONS) - set(HUB_OPTIONS))
        if unknown:
            raise TypeError(
                f"MemotionEnsembleModel.from_pretrained got unknown option(s) {unknown}; it takes channels_last, "
                f"quantize_text, images_per_forward, onednn_linear, revision, "
                f"{', '.join(BASE_MODEL_OPTIONS + HUB_OPTIONS)}"
            )
        base = {k: v for k, v in options.items() if k in BASE_MODEL_OPTIONS and v is not None}
        hub = {k: v for k, v in options.items() if k in HUB_OPTIONS and v is not None}
        return base, hub

    def optimize_for_inference(
        self,
        *,
        channels_last: bool = True,
        quantize_text: bool = False,
        images_per_forward: int | str | None = "auto",
        onednn_linear: bool = True,
    ) -> MemotionEnsembleModel:
        """Make prediction cheaper; outputs stay the same up to float rounding (int8 excepted).

        Args:
            channels_last: Store the visual models' weights and feed their inputs NHWC (on the CPU measured
                here: about 20% more convolution throughput, ``benchmarks/bench.py``).
            images_per_forward: Split a batch's images (all memes' crops) into network calls of this many
                (``"auto"``: 4 on a CPU, one call on a GPU; ``None``: one call), keeping the convolutions'
                working set in cache (measured: ResNet-50 runs about 2.4x faster per image in calls of 4 than
                of 80).
            quantize_text: Dynamic int8 quantization of the ``nn.Linear`` layers of the text models'
                backbones (CPU only; weights 4x smaller; changes probabilities slightly: the benchmark
                reports the macro-F1 change).
            onednn_linear: Run fp32 linear layers on a CPU through oneDNN rather than the stock MKL path
                (:mod:`hf_memotion.models.onednn_linear`; measured here: BERT-base about 2x faster, same
                outputs to float rounding). Layers quantized to int8 keep their own kernels.

        Examples:
            >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
            >>> ensemble = random_ensemble(ENSEMBLE_SIZES["demo"]).optimize_for_inference(quantize_text=True)
            >>> ensemble.base_models["text"].quantized
            True
        """
        for entry in self.config.members:
            model = self.base_models[entry.name]
            get_family(entry.family).optimize_for_inference(
                model, channels_last=channels_last, images_per_forward=images_per_forward, quantize_text=quantize_text
            )
            use_onednn_linear(model, enabled=onednn_linear)
        return self

    def to_inference_dtype(self, dtype: str | torch.dtype = "auto") -> MemotionEnsembleModel:
        """Cast the base models to the dtype they predict in (int8-quantized text models stay as they are).

        Args:
            dtype: ``"auto"``: bf16 where the base models' device computes bf16 natively, this ensemble
                carries a passed held-out check (:meth:`check_dtype`: no subtask's macro-F1 moved by more
                than 0.005) *and* bf16 is at least 1.05x fp32's speed for these models on this kind of device
                (timed by the check, or here, once, on a synthetic batch when the check ran elsewhere); fp32
                otherwise; or an explicit ``torch.float32`` / ``torch.bfloat16``.
                ``self.inference_dtype_reason`` says why ``"auto"`` chose what it did.

        Examples:
            >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
            >>> ensemble = random_ensemble(ENSEMBLE_SIZES["demo"]).to_inference_dtype("auto")
            >>> ensemble.base_models["text"].dtype, ensemble.inference_dtype_reason.startswith(("no", "cpu has no"))
            (torch.float32, True)
        """
        self.inference_dtype_request = dtype
        if dtype == "auto":
            devices = {m.device for m in self.base_models.values()}
            device = next(iter(devices)) if len(devices) == 1 else torch.device("cpu")
            movable = [m for m in self.base_models.values() if not getattr(m, "quantized", False)]
            measure = (
                (lambda: measure_dtype_speed(self))
                if len(devices) == 1 and all(m.dtype == torch.float32 for m in movable)
                else None
            )
            dtype, self.inference_dtype_reason = resolve_inference_dtype(self.config, device, measure=measure)
        elif isinstance(dtype, str):
            named = getattr(torch, dtype, None)
            if not isinstance(named, torch.dtype):
                raise ValueError(f"dtype must be 'auto' or a torch dtype such as torch.bfloat16, got {dtype!r}")
            dtype, self.inference_dtype_reason = named, "given"
        else:
            self.inference_dtype_reason = "given"
        cast_base_models({n: m for n, m in self.base_models.items() if not getattr(m, "quantized", False)}, dtype)
        return self

    def check_dtype(
        self,
        data: Any,
        dtype: torch.dtype = torch.bfloat16,
        batch_size: int = 16,
        record: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Measure what predicting in ``dtype`` changes on labelled held-out memes; ``record`` keeps it in the config.

        ``dtype="auto"`` picks bf16 only for an ensemble whose recorded check passed (and only on a device with
        native bf16). ``scripts/train.py`` runs this on the held-out split after training.

        Args:
            data: A ``datasets.Dataset`` with ``image``, ``text`` and the ensemble's problem label columns.
            dtype: The lower precision to check (bf16).
            batch_size: Memes per forward.
            record: Store the result in ``config.dtype_checks`` (saved with the ensemble).
            **kwargs: ``load`` and ``device`` of
                :func:`~hf_memotion.ensemble.inference_dtype.check_inference_dtype` (base models loaded one at a
                time instead of the ensemble's own).

        Returns:
            See :func:`hf_memotion.ensemble.inference_dtype.check_inference_dtype`.

        Examples:
            >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
            >>> from hf_memotion.data import load_memotion, make_demo_data
            >>> held_out = load_memotion(make_demo_data("/tmp/memotion_dtype_doc", n_train=12, n_test=12))["test"]
            >>> ensemble = random_ensemble(ENSEMBLE_SIZES["demo"])
            >>> check = ensemble.check_dtype(held_out)
            >>> sorted(check["macro_f1_change"]), check["rows"], "bfloat16" in ensemble.config.dtype_checks
            (['subtask_a', 'subtask_b', 'subtask_c'], 12, True)
        """
        result = check_inference_dtype(self, data, dtype=dtype, batch_size=batch_size, **kwargs)
        if record:
            self.config.dtype_checks = {**(self.config.dtype_checks or {}), result["dtype"]: result}
        return result

    def export_onnx(self, folder: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
        """Write this ensemble as a folder ONNX Runtime serves (:func:`.onnx_export.export_onnx`).

        ``from_pretrained(folder)`` and ``pipeline("meme-emotion", model=folder, backend="onnx")`` load it.

        Examples:
            >>> import tempfile
            >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
            >>> recorded = random_ensemble(ENSEMBLE_SIZES["demo"]).export_onnx(tempfile.mkdtemp() + "/onnx")
            >>> recorded["opset"], max(recorded["max_difference"].values()) < 1e-4
            (18, True)
        """
        from hf_memotion.ensemble.onnx_export import export_onnx

        return export_onnx(self, folder, **kwargs)

    # ------------------------------------------------------------------ prediction

    @property
    def processor(self) -> MemeProcessor:
        """The :class:`MemeProcessor` that turns memes into every base model's inputs."""
        if getattr(self, "_processor", None) is None:
            self._processor = MemeProcessor(
                {
                    entry.name: get_family(entry.family).inputs(
                        self.preprocessors[entry.name], TextFeeding.of_member(self.base_models[entry.name].config)
                    )
                    for entry in self.config.members
                }
            )
        return self._processor

    @torch.inference_mode()
    def probabilities_from_inputs(self, batch: Mapping[str, torch.Tensor]) -> dict[str, dict[str, np.ndarray]]:
        """Each base model's class probabilities per problem (``{model: {problem: ...}}``) from processor outputs.

        Each model runs once over the whole batch (all memes and all their crops; a visual model splits them
        into calls of ``images_per_forward`` images), on its own device and in its own dtype.
        """
        out: dict[str, dict[str, np.ndarray]] = {}
        for entry in self.config.members:
            name = entry.name
            model = self.base_models[name]
            inputs = self.processor.model_inputs(batch, name, device=model.device, dtype=model.dtype)
            out[name] = with_aliases(model(**inputs).problem_probabilities(), entry.aliases)
        return out

    def base_probabilities(
        self, images: Sequence[Any], texts: Sequence[str], ten_crop: bool = True
    ) -> dict[str, dict[str, np.ndarray]]:
        """Each base model's class probabilities per problem: ``{model: {problem: (n, classes)}}``.

        Models with the same preprocessing share one tensor (:class:`MemeProcessor`).
        """
        return self.probabilities_from_inputs(self.processor(images, texts, ten_crop=ten_crop))

    def combine(self, base: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Final class probabilities per problem from the base models' probabilities (:func:`combine_stackers`)."""
        return combine_stackers(self.stackers, base)

    def predict_proba(
        self, images: Sequence[Any], texts: Sequence[str], ten_crop: bool = True
    ) -> dict[str, np.ndarray]:
        """Final class probabilities per problem for a batch of memes."""
        return self.combine(self.base_probabilities(images, texts, ten_crop=ten_crop))

    def forward(self, *args: Any, **kwargs: Any):
        """Use :meth:`predict_proba` (or ``pipeline("meme-emotion")``); an ensemble has no tensor forward."""
        raise NotImplementedError("call predict_proba(images, texts) or use pipeline('meme-emotion')")
