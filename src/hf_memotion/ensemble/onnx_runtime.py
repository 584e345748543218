"""The exported ensemble served by ONNX Runtime: the same interface as the PyTorch one, no model code in PyTorch.

A folder written by :func:`~hf_memotion.ensemble.onnx_export.export_onnx` (``config.json`` with
``backend: "onnx"``) loads as an :class:`OnnxMemotionEnsemble` through ``MemotionEnsembleModel.from_pretrained``
and ``pipeline("meme-emotion", model=...)`` (``backend="onnx"`` says so explicitly, the sentence-transformers
convention). It has the methods the pipeline calls (``processor``, ``probabilities_from_inputs``, ``combine``),
so the pipeline is the same code for both backends: the output schema, ten-crop, OCR, ``return_base``, streaming
and ``errors="return"`` are the same.

Every base model and meta-estimator runs in ONNX Runtime; the calibration maps are numbers in ``config.json``
applied with numpy. What still needs PyTorch: the preprocessing (the image processor's torchvision transforms;
the tokenizers are ``tokenizers`` files) and transformers' ``Pipeline`` machinery (its ``DataLoader`` and
collation). ``explain=True`` needs gradients and the PyTorch ensemble.

``dtype``: ``"auto"`` (the default) runs the int8 graphs (``model_int8.onnx``, written by
``export_onnx(..., int8=True)``) only where the folder's held-out int8 check passed (no subtask's macro-F1 moved by
more than 0.005) and int8 ran at least 1.05x fp32's speed in it, else fp32; ``"int8"`` and ``"float32"`` force one
(``int8`` needs the graphs). Sessions do not spin-wait between calls (``session.intra_op.allow_spinning`` off):
the pipeline's PyTorch preprocessing shares the cores.

Examples:
    >>> import tempfile
    >>> from PIL import Image
    >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
    >>> from hf_memotion.ensemble import MemotionEnsembleModel
    >>> from hf_memotion.ensemble.onnx_export import export_onnx
    >>> folder = tempfile.mkdtemp() + "/onnx"
    >>> recorded = export_onnx(random_ensemble(ENSEMBLE_SIZES["demo"]), folder)
    >>> served = MemotionEnsembleModel.from_pretrained(folder)  # config.json says backend: onnx
    >>> type(served).__name__, served.predict_proba([Image.new("RGB", (64, 64))], ["lol"])["humour"].shape
    ('OnnxMemotionEnsemble', (1, 2))
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hf_memotion.ensemble.calibration import ProblemCalibration
from hf_memotion.ensemble.configuration_memotion_ensemble import MemotionEnsembleConfig, ensemble_entries
from hf_memotion.ensemble.inference_dtype import DTYPE_MIN_SPEEDUP
from hf_memotion.ensemble.stacking import feature_blocks, with_aliases
from hf_memotion.families import get_family
from hf_memotion.families.inputs import feed
from hf_memotion.folder_safety import (
    MAX_CONFIG_BYTES,
    UnsafeModelFolderError,
    check_link_stays_inside,
    check_model_configs,
    check_regular_file,
    read_inside,
    resolve_inside,
)
from hf_memotion.io_utils import staged_folder
from hf_memotion.models.text.preprocessing import TextFeeding

__all__ = ["ONNX_DTYPES", "OnnxMemotionEnsemble", "check_external_data", "resolve_onnx_precision"]

#: What ``dtype`` an ONNX folder takes.
ONNX_DTYPES = ("auto", "float32", "int8")


def resolve_onnx_precision(config: MemotionEnsembleConfig, dtype: Any = "auto") -> tuple[str, str]:
    """``("float32" | "int8", why)`` for an exported folder's config and a requested ``dtype``.

    Examples:
        >>> config = MemotionEnsembleConfig(backend="onnx", onnx={"int8": {"passed": False}})
        >>> resolve_onnx_precision(config)[0]
        'float32'
    """
    name = getattr(dtype, "__name__", None) or str(dtype).removeprefix("torch.")
    name = {"None": "auto", "fp32": "float32", "float": "float32", "qint8": "int8"}.get(name, name)
    if name not in ONNX_DTYPES:
        raise ValueError(f"an ONNX ensemble runs in {ONNX_DTYPES[1:]} (dtype='auto' picks one), not {dtype!r}")
    check = (config.onnx or {}).get("int8")
    if name == "float32":
        return "float32", "given"
    if name == "int8":
        if check is None:
            raise ValueError("this ONNX folder has no int8 graphs: export it with --int8 (export_onnx(int8=True))")
        return "int8", "given"
    if check is None:
        return "float32", "no int8 graphs in this folder"
    if not check.get("passed"):
        changes = ", ".join(f"{k} {v:+.4f}" for k, v in (check.get("macro_f1_change") or {}).items())
        return "float32", f"the int8 graphs failed the held-out check ({changes}; tolerance 0.005): fp32"
    speedup = ((check.get("speed") or {}).get("cpu") or {}).get("speedup")
    if speedup is None or speedup < DTYPE_MIN_SPEEDUP:
        shown = "not timed" if speedup is None else f"{speedup:.2f}x fp32's speed"
        return "float32", f"the int8 graphs passed the held-out check but were not faster ({shown}): fp32"
    return "int8", f"the int8 graphs passed the held-out check and ran at {speedup:.2f}x fp32's speed"


def _graph_tensors(graph: Any):
    """Every tensor a graph holds: initializers, sparse ones, and node attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graph_tensors(subgraph)


def check_external_data(folder: str | os.PathLike, path: str | os.PathLike, what: str = "ONNX graph") -> None:
    """Refuse an ONNX graph whose tensors read external data outside ``folder``, from a link out or a non-file.

    The graph is parsed without its external data (``onnx.load(..., load_external_data=False)``); every tensor
    stored outside it must name a relative ``location`` that stays inside ``folder`` (no ``..``, no absolute path,
    no symlink out), a regular file (no FIFO, device or ``/proc`` file), and an ``offset`` and ``length`` within it.
    Checked here, before ONNX Runtime opens the graph, whatever ONNX Runtime version is installed.

    Raises:
        UnsafeModelFolderError: Naming the graph, the tensor and the location.

    Examples:
        >>> import tempfile, onnx
        >>> from onnx import TensorProto, helper
        >>> folder = Path(tempfile.mkdtemp())
        >>> weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
        >>> weight.ClearField("float_data"); weight.data_location = TensorProto.EXTERNAL
        >>> _ = weight.external_data.add(key="location", value="/etc/hostname")
        >>> output = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])
        >>> graph = helper.make_graph([], "g", [], [output], [weight])
        >>> onnx.save(helper.make_model(graph), folder / "model.onnx")
        >>> check_external_data(folder, folder / "model.onnx")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        hf_memotion.folder_safety.UnsafeModelFolderError: ONNX graph ...: tensor 'w' reads external data '/etc/host...
    """
    import onnx

    folder, path = Path(folder), Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise UnsafeModelFolderError(
            f"{what} {path} is not a readable ONNX graph ({type(err).__name__}): refused"
        ) from None
    base = path.parent.relative_to(folder) if path.parent != folder else Path()
    for tensor in _graph_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        where = f"{what} {path}: tensor {tensor.name!r} reads external data {location!r}"
        if not location or Path(location).is_absolute():
            raise UnsafeModelFolderError(f"{where}, outside the folder: refused")
        target = resolve_inside(folder, base / location, where)
        check_link_stays_inside(folder, target, where)
        size = check_regular_file(target, where, None)
        try:
            offset, length = int(entries.get("offset") or 0), int(entries.get("length") or 0)
        except ValueError:
            raise UnsafeModelFolderError(f"{where}: its offset and length must be numbers: refused") from None
        if offset < 0 or length < 0 or offset + length > size:
            raise UnsafeModelFolderError(
                f"{where}: offset {offset} and length {length} leave its {size} bytes: refused"
            )


class OnnxMemotionEnsemble:
    """An exported modality ensemble run by ONNX Runtime (see the module docstring).

    Args:
        folder: The exported folder (checked).
        config: Its configuration.
        sessions: Base model name -> its ONNX Runtime session.
        preprocessors: Base model name -> its tokenizer or image processor.
        meta_sessions: Problem -> the session of its meta-estimator graph.
        precision: ``"float32"`` or ``"int8"``.
        precision_reason: Why that precision.

    Examples:
        >>> OnnxMemotionEnsemble.backend
        'onnx'
    """

    backend = "onnx"
    #: What transformers' ``Pipeline`` reads of a model.
    input_modalities = ("image", "text")

    def __init__(
        self,
        folder: Path,
        config: MemotionEnsembleConfig,
        sessions: Mapping[str, Any],
        preprocessors: Mapping[str, Any],
        meta_sessions: Mapping[str, Any],
        precision: str = "float32",
        precision_reason: str = "given",
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ):
        self.folder, self.config = Path(folder), config
        self.sessions, self.preprocessors, self.meta_sessions = dict(sessions), dict(preprocessors), dict(meta_sessions)
        self.precision, self.inference_dtype_reason = precision, precision_reason
        self.providers = tuple(providers)
        self.calibrations = {
            p: ProblemCalibration.from_dict(entry.get("calibration")) for p, entry in config.meta.items()
        }
        self._processor = None

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike, *, dtype: Any = "auto", providers: Sequence[str] | None = None
    ) -> OnnxMemotionEnsemble:
        """Load an exported folder (already resolved and checked: ``MemotionEnsembleModel.from_pretrained``)."""
        import onnxruntime

        folder = Path(folder)
        config = MemotionEnsembleConfig.from_dict(
            json.loads(read_inside(folder, "config.json", "ensemble config", MAX_CONFIG_BYTES))
        )
        if config.backend != "onnx":
            raise ValueError(f"{folder} is a PyTorch ensemble; export it first (scripts/export_onnx.py)")
        precision, reason = resolve_onnx_precision(config, dtype)
        providers = list(providers or ["CPUExecutionProvider"])
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no spinning between calls

        def session(relative: str, what: str):
            path = resolve_inside(folder, relative, what)
            if not path.is_file():
                raise FileNotFoundError(f"{what}: {path} is missing")
            check_external_data(folder, path, what)  # before ONNX Runtime opens the graph, whatever its version
            return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)

        sessions, preprocessors = {}, {}
        for entry in config.members:
            name = entry.name
            graph = "model_int8.onnx" if precision == "int8" else "model.onnx"
            sessions[name] = session(f"{entry.path}/{graph}", f"base model {name!r}")
            location = resolve_inside(folder, entry.path, f"base model {name!r} path")
            family = get_family(entry.family)
            check_model_configs(location, model_types=family.model_types, what=f"base model {name!r}")
            preprocessors[name] = family.load_preprocessor(str(location))
        meta_sessions = {p: session(e["file"], f"meta-estimator of {p!r}") for p, e in config.meta.items()}
        return cls(folder, config, sessions, preprocessors, meta_sessions, precision, reason, providers)

    # ------------------------------------------------------------------ what transformers' Pipeline reads

    @property
    def device(self):
        """The device ONNX Runtime runs on, as a torch device (what the pipeline moves its inputs to)."""
        import torch

        return torch.device("cuda" if "CUDAExecutionProvider" in self.providers else "cpu")

    @property
    def dtype(self):
        """Inputs are given in fp32 (an int8 graph quantizes inside)."""
        import torch

        return torch.float32

    def to(self, device: Any) -> OnnxMemotionEnsemble:
        """Run on ``device``: ``"cpu"``, or a GPU with onnxruntime-gpu's CUDA provider (an error without it)."""
        kind = str(getattr(device, "type", device)).split(":")[0]
        if kind == "cpu":
            return self
        import onnxruntime

        if kind != "cuda" or "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise ValueError(
                f"ONNX Runtime here runs on the CPU only (providers: {onnxruntime.get_available_providers()}); "
                "install onnxruntime-gpu for CUDA, or use the PyTorch ensemble"
            )
        return type(self).from_folder(self.folder, dtype=self.precision, providers=["CUDAExecutionProvider"])

    def eval(self) -> OnnxMemotionEnsemble:
        """Nothing to switch (an ONNX graph has no training mode)."""
        return self

    def can_generate(self) -> bool:
        """Not a generative model."""
        return False

    # ------------------------------------------------------------------ prediction

    @property
    def processor(self):
        """The :class:`~hf_memotion.ensemble.MemeProcessor` of the base models (the PyTorch one's)."""
        if self._processor is None:
            from hf_memotion.ensemble.processing_memotion_ensemble import MemeProcessor

            self._processor = MemeProcessor(
                {
                    e.name: get_family(e.family).inputs(
                        self.preprocessors[e.name], TextFeeding(e.max_length, e.pad_to) if e.max_length else None
                    )
                    for e in self.config.members
                }
            )
        return self._processor

    def probabilities_from_inputs(self, batch: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        """Each base model's class probabilities per problem from processor outputs (as the PyTorch ensemble)."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for entry in self.config.members:
            name = entry.name
            session = self.sessions[name]
            inputs = feed(self.processor.inputs_of(name), self.processor.model_inputs(batch, name))
            wanted = {i.name for i in session.get_inputs()}
            feeds = {k: v.detach().cpu().numpy() for k, v in inputs.items() if k in wanted}
            names = [o.name for o in session.get_outputs()]
            found = dict(zip(names, session.run(None, feeds), strict=True))
            out[name] = with_aliases(found, entry.aliases)
        return out

    def base_probabilities(
        self, images: Sequence[Any], texts: Sequence[str], ten_crop: bool = True
    ) -> dict[str, dict[str, np.ndarray]]:
        """Each base model's class probabilities per problem for a batch of memes."""
        return self.probabilities_from_inputs(self.processor(images, texts, ten_crop=ten_crop))

    def combine(
        self, base: Mapping[str, Mapping[str, np.ndarray]], *, calibrated: bool = True
    ) -> dict[str, np.ndarray]:
        """Final class probabilities per problem: each problem's meta-estimator graph, then its calibration."""
        out = {}
        for problem, entry in self.config.meta.items():
            blocks = feature_blocks(problem, entry["feature_order"], entry["model_order"], base)
            matrix = np.hstack([np.asarray(b, dtype=np.float64) for b in blocks.values()])
            session = self.meta_sessions[problem]
            kind = session.get_inputs()[0].type
            feeds = {"X": matrix.astype(np.float32 if kind == "tensor(float)" else np.float64)}
            names = [o.name for o in session.get_outputs()]
            found = dict(zip(names, session.run(None, feeds), strict=True))["probabilities"]
            proba = np.zeros((len(matrix), int(entry["num_classes"])))
            classes = entry.get("onnx_classes") or list(range(proba.shape[1]))  # checked with the config
            if found.ndim != 2 or found.shape[1] != len(classes):
                raise ValueError(
                    f"{self.folder / entry['file']}: the meta-estimator graph of {problem!r} answers "
                    f"{found.shape[1:]} classes, its config lists {len(classes)}; export the ensemble again"
                )
            proba[:, classes] = found
            out[problem] = self.calibrations[problem].apply(proba) if calibrated else proba
        return out

    def predict_proba(self, images: Sequence[Any], texts: Sequence[str], ten_crop: bool = True) -> dict[str, Any]:
        """Final class probabilities per problem for a batch of memes."""
        return self.combine(self.base_probabilities(images, texts, ten_crop=ten_crop))

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Copy the exported folder to ``save_directory`` (written beside it, then moved into place)."""
        with staged_folder(save_directory, owned=ensemble_entries, what="an ONNX ensemble") as staging:
            shutil.copytree(self.folder, staging, dirs_exist_ok=True)
