"""Export a modality ensemble to ONNX: one folder that ONNX Runtime serves with the PyTorch ensemble's answers.

Layout of an exported folder (published and loaded by id like the PyTorch one)::

    config.json              the ensemble's config with backend "onnx", the export check, the int8 check
    README.md                the ensemble's card, saying which runtime it is for
    <model>/model.onnx       each base model: inputs as the processor gives them, one output per problem
                             (its class probabilities); model_int8.onnx beside it with int8=True
    <model>/config.json ...  its config, and its tokenizer files (``tokenizers``) or image processor settings
    meta/<problem>.onnx      each problem's meta-estimator: input X (the stacked blocks), output probabilities

Base models are exported with torch's TorchScript-based exporter (``dynamo=False``), with dynamic batch, crops and
sequence length: in torch 2.14 the dynamo exporter specialises the text model's sequence length (measured). The
text model is exported with its ``masked`` BiLSTM (no packing) and the visual model without splitting a batch into
calls; a visual model always takes ``(batch, crops, 3, H, W)`` (one crop: ``crops = 1``). Each export is checked
at once against the PyTorch model on inputs of another shape (recorded as ``max_difference``). Scikit-learn
meta-estimators go through skl2onnx (no ZipMap), the rules through :mod:`~hf_memotion.ensemble.onnx_graphs`;
calibration maps stay numbers in ``config.json``.

``int8=True`` adds int8 graphs from ONNX Runtime's quantizer: static (QDQ) for the visual models, calibrated on
training images, and dynamic for the textual ones (chosen by measurement: see :func:`_quantize`), and, given
``held_out`` labelled memes, records the held-out macro-F1 of fp32 and int8, whether no subtask moved by more
than 0.005, and the base models' seconds over those memes in each: ``dtype="auto"`` serves int8 only when the
check passed and int8 ran at least 1.05x fp32's speed there (as for bf16 in PyTorch: int8 is not faster
everywhere).

Examples:
    >>> import tempfile
    >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
    >>> folder = Path(tempfile.mkdtemp()) / "onnx"
    >>> recorded = export_onnx(random_ensemble(ENSEMBLE_SIZES["demo"]), folder)
    >>> sorted(p.name for p in (folder / "text").glob("*.onnx")), len(list((folder / "meta").glob("*.onnx")))
    (['model.onnx'], 9)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hf_memotion.ensemble.configuration_memotion_ensemble import ensemble_entries
from hf_memotion.ensemble.onnx_graphs import OPSET, estimator_graph, rule_graph
from hf_memotion.ensemble.stacking import RULES
from hf_memotion.families import get_family
from hf_memotion.families.inputs import MemberInput, TextInput, input_names
from hf_memotion.io_utils import staged_folder

if TYPE_CHECKING:
    import datasets

    from hf_memotion.ensemble.modeling_memotion_ensemble import MemotionEnsembleModel

__all__ = ["ONNX_TOLERANCE", "export_onnx"]

#: Largest probability difference against PyTorch an export may have (checked at export).
ONNX_TOLERANCE = 1e-4


class _Probabilities(torch.nn.Module):
    """A base model as a graph of class probabilities: one output per problem (softmax of its logits, fp32)."""

    def __init__(self, model: torch.nn.Module, names: Sequence[str]):
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.model(**dict(zip(self.names, inputs, strict=True))).problem_logits
        return tuple(v.float().softmax(-1) for v in logits.values())


@contextlib.contextmanager
def _exportable(model: torch.nn.Module, family: Any) -> Iterator[None]:
    """The model set up for tracing (its family's set-up, stock linear layers), then restored."""
    from hf_memotion.models.onednn_linear import use_onednn_linear

    onednn = use_onednn_linear(model, enabled=False)
    try:
        with family.exportable(model):
            yield
    finally:
        if onednn:
            use_onednn_linear(model)


def _examples(inputs: Sequence[MemberInput], rows: int, which: int) -> dict[str, torch.Tensor]:
    """Example tensors of a member's inputs: ``which`` 0 traces, 1 checks at other shapes."""
    out: dict[str, torch.Tensor] = {}
    for part in inputs:
        out.update(part.onnx_examples(rows, part.onnx_sizes[which]))
    return out


def _export_base_model(model: torch.nn.Module, family: Any, inputs: Sequence[MemberInput], path: Path) -> float:
    """Write one base model's graph; return the largest probability difference from PyTorch on other shapes."""
    import onnxruntime

    problems = list(model.config.problem_labels)
    names = input_names(inputs)
    axes = {name: part.onnx_axes for part in inputs for name in part.onnx_names}
    wrapper = _Probabilities(model, names).eval()
    example, other = _examples(inputs, 2, 0), _examples(inputs, 3, 1)
    with _exportable(model, family), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            tuple(example[n] for n in names),
            str(path),
            input_names=names,
            output_names=problems,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = session.run(None, {n: other[n].numpy() for n in names})
    with torch.no_grad():
        reference = model(**other).problem_probabilities()
    return max(float(np.abs(f - reference[p]).max()) for f, p in zip(found, problems, strict=True))


def _quantize(
    source: Path, target: Path, calibrated: MemberInput | None = None, images: Sequence[Any] | None = None
) -> str:
    """Write ``target``, an int8 graph of ``source``; return how it was quantized.

    With calibration ``images`` (a visual model) the quantization is static (QDQ: int8 weights, uint8 activations
    whose ranges come from the images, ten-cropped as served); otherwise dynamic (int8 weights, activations
    quantized on the fly). Static for convolutions and dynamic for the text models was chosen by measurement on
    the demo (``benchmarks/bench.py --sections onnx``): dynamic int8 convolutions ran 3x slower than fp32 here and
    moved the held-out macro-F1 by more.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    class _Calibration(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(
                calibrated.encode(list(images[i : i + 8]), None, ten_crop=True) for i in range(0, len(images), 8)
            )

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"pixel_values": batch["pixel_values"].numpy()}

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process, logged on the root logger each time
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if images:
                quantize_static(
                    str(source),
                    str(target),
                    _Calibration(),
                    quant_format=QuantFormat.QDQ,
                    weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8,
                )
                return f"static (QDQ, calibrated on {len(images)} images)"
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
            return "dynamic"
    finally:
        root.setLevel(level)


def _meta_graphs(ensemble: MemotionEnsembleModel, folder: Path) -> dict[str, dict[str, Any]]:
    """Each problem's meta-estimator as ``meta/<problem>.onnx``; the config's meta entries to match."""
    meta = {}
    (folder / "meta").mkdir(parents=True, exist_ok=True)
    for problem, stacker in ensemble.stackers.items():
        labels = ensemble.config.problem_labels
        features = sum(
            stacker.num_classes if b in stacker.model_order else len(labels[b.partition(":")[2]])
            for b in stacker.feature_order
        )
        entry = dict(ensemble.config.meta.get(problem) or {})
        entry.update(
            {
                "method": stacker.method,
                "model_order": stacker.model_order,
                "feature_order": stacker.feature_order,
                "num_classes": stacker.num_classes,
                "scores": stacker.scores,
                "calibration": stacker.calibration.to_dict(),
                "background": stacker.background,
                "file": f"meta/{problem}.onnx",
            }
        )
        if stacker.method in RULES:
            graph = rule_graph(
                stacker.method, models=len(stacker.model_order), classes=stacker.num_classes, features=features
            )
        else:
            graph = estimator_graph(stacker.method, stacker.estimator, features)
            entry["onnx_classes"] = [int(c) for c in stacker.estimator.classes_]
        (folder / entry["file"]).write_bytes(graph.SerializeToString())
        meta[problem] = entry
    return meta


def export_onnx(
    ensemble: MemotionEnsembleModel,
    folder: str | os.PathLike,
    *,
    int8: bool = False,
    held_out: datasets.Dataset | None = None,
    calibration: Sequence[Any] | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Write the ensemble as an ONNX folder (see the module docstring); return what was recorded in its config.

    Args:
        ensemble: A :class:`~hf_memotion.ensemble.MemotionEnsembleModel` in fp32 (load it with
            ``dtype=torch.float32``), its base models in memory.
        folder: Where to write (built beside it, then moved into place).
        int8: Also write int8 graphs (``model_int8.onnx``).
        held_out: Labelled memes (``image``, ``text``, every problem's column) for the int8 check; without
            them the int8 graphs are written unchecked and ``dtype="auto"`` keeps fp32.
        calibration: Training images (never the held-out ones) that set the visual models' activation ranges for
            static quantization; without them those are quantized dynamically too.
        batch_size: Memes per run of the int8 check.

    Raises:
        ValueError: For a base model that is not fp32, is int8-quantized in PyTorch, or whose export differs from
            PyTorch by more than :data:`ONNX_TOLERANCE`.
    """
    for entry in ensemble.config.members:
        model = ensemble.base_models[entry.name]
        refusal = get_family(entry.family).onnx_refusal
        if refusal:
            raise ValueError(f"base model {entry.name!r} ({entry.family}): {refusal}")
        if getattr(model, "quantized", False):  # set by optimize_for_inference(quantize_text=True)
            raise ValueError(f"base model {entry.name!r} is int8-quantized in PyTorch; load it without quantize_text")
        if model.dtype != torch.float32:
            raise ValueError(
                f"base model {entry.name!r} is {model.dtype}; export from fp32 weights "
                "(MemotionEnsembleModel.from_pretrained(..., dtype=torch.float32)); int8=True quantizes after"
            )
    with staged_folder(folder, owned=ensemble_entries, what="an ONNX export") as staging:
        differences, entries, quantized = {}, [], {}
        for entry in ensemble.config.members:
            name = entry.name
            model, prep = ensemble.base_models[name], ensemble.preprocessors[name]
            family, inputs = get_family(entry.family), ensemble.processor.inputs_of(name)
            place = staging / name
            place.mkdir(parents=True)
            device = model.device
            try:  # traced on the CPU, then put back where it ran
                differences[name] = _export_base_model(model.cpu(), family, inputs, place / "model.onnx")
            finally:
                model.to(device)
            if differences[name] > ONNX_TOLERANCE:
                raise ValueError(
                    f"base model {name!r}: ONNX Runtime's probabilities differ from PyTorch's by "
                    f"{differences[name]:.2e} (more than {ONNX_TOLERANCE}); this model cannot be exported faithfully"
                )
            if int8:
                calibrated = next((part for part in inputs if part.static_quantization), None)
                images = calibration if calibrated is not None else None
                quantized[name] = _quantize(place / "model.onnx", place / "model_int8.onnx", calibrated, images)
            model.config.save_pretrained(place)
            prep.save_pretrained(place)
            feeding = next((part.feeding for part in inputs if isinstance(part, TextInput)), None)
            exported = dataclasses.replace(
                entry,
                path=name,
                revision=None,
                max_length=feeding.max_length if feeding else None,
                pad_to=feeding.pad_to if feeding else None,
            )
            entries.append(exported.to_dict())
        config = copy.deepcopy(ensemble.config)
        config.base_models, config.backend = entries, "onnx"
        config.meta = _meta_graphs(ensemble, staging)
        config.dtype_checks = {}
        config.onnx = {
            "opset": OPSET,
            "exporter": f"torch {torch.__version__} (TorchScript-based, dynamo=False), skl2onnx",
            "max_difference": differences,
        }
        config.architectures = ["MemotionEnsembleModel"]
        if int8:  # the graphs are there (the check below loads them); the verdict comes after
            config.onnx["int8"] = {"passed": False, "rows": 0, "reason": "being checked"}
        config.save_pretrained(staging)
        if int8:
            config.onnx["int8"] = {
                **_int8_check(staging, held_out, batch_size),
                "quantization": quantized,
            }
            config.save_pretrained(staging)
        card = None
        if ensemble.card_data.info or ensemble.card_data.previous_card is not None:  # as save_pretrained writes it
            card = ensemble.card_data.save(staging, ensemble.card_defaults()).read_text(encoding="utf-8")
        (staging / "README.md").write_text(_onnx_card(card, config), encoding="utf-8")
    return config.onnx


def _int8_check(folder: Path, held_out, batch_size: int) -> dict[str, Any]:
    """Held-out macro-F1 of the fp32 and int8 graphs (each chunk preprocessed once for both), and their speed.

    ``passed`` when no subtask moved by more than 0.005; ``speed`` times the base models only (after a warm-up
    run of each), the part int8 changes.
    """
    from hf_memotion.ensemble.inference_dtype import held_out_change
    from hf_memotion.ensemble.onnx_runtime import OnnxMemotionEnsemble

    if held_out is None:
        return {"passed": False, "rows": 0, "reason": "no held-out memes given: unchecked, dtype='auto' keeps fp32"}
    runtimes = {p: OnnxMemotionEnsemble.from_folder(folder, dtype=p) for p in ("float32", "int8")}
    rows: dict[str, dict[str, list[np.ndarray]]] = {p: {} for p in runtimes}
    seconds = dict.fromkeys(runtimes, 0.0)
    for start in range(0, len(held_out), batch_size):
        chunk = held_out[start : start + batch_size]
        inputs = runtimes["float32"].processor(chunk["image"], chunk["text"])  # the same preprocessing for both
        for precision, runtime in runtimes.items():
            if start == 0:  # warm-up: a session's first run allocates
                runtime.probabilities_from_inputs(inputs)
            began = time.perf_counter()
            base = runtime.probabilities_from_inputs(inputs)
            seconds[precision] += time.perf_counter() - began
            for problem, values in runtime.combine(base).items():
                rows[precision].setdefault(problem, []).append(values)
    finals = {key: {p: np.concatenate(v) for p, v in found.items()} for key, found in rows.items()}
    labels = {p: np.asarray(held_out[p]) for p in finals["float32"]}
    return {
        "rows": len(held_out),
        **held_out_change(finals, labels, "int8"),
        "max_probability_change": max(
            float(np.abs(finals["int8"][p] - finals["float32"][p]).max()) for p in finals["float32"]
        ),
        "speed": {
            "cpu": {
                "float32_s": seconds["float32"],
                "int8_s": seconds["int8"],
                "speedup": seconds["float32"] / max(seconds["int8"], 1e-9),
            }
        },
    }


def _onnx_card(card: str | None, config) -> str:
    """The ensemble's card (or a short one) with ``onnx`` tags and a section on the runtime."""
    from huggingface_hub import ModelCard, ModelCardData

    model_card = ModelCard(card) if card else ModelCard("---\n---\n# Memotion modality ensemble (ONNX)\n")
    data = model_card.data or ModelCardData()
    data.tags = sorted({*(data.tags or []), "onnx", "onnxruntime", "hf-memotion"})
    data.library_name = data.library_name or "hf-memotion"
    model_card.data = data
    from hf_memotion.ensemble.onnx_runtime import resolve_onnx_precision

    int8 = (config.onnx or {}).get("int8")
    check = ""
    if int8 and int8.get("rows"):
        changes = ", ".join(f"{k} {v:+.4f}" for k, v in int8["macro_f1_change"].items())
        served, why = resolve_onnx_precision(config)
        check = (
            f" int8 graphs (`model_int8.onnx`): held-out macro-F1 change {changes} on {int8['rows']} memes; "
            f'`dtype="auto"` serves {served} ({why}).'
        )
    section = (
        "\n\n## Runtime: ONNX Runtime\n\nThis folder is the ensemble exported to ONNX (opset "
        f"{config.onnx['opset']}; largest probability difference from PyTorch at export: "
        f"{max(config.onnx['max_difference'].values()):.1e}).{check} Serve it with ONNX Runtime:\n\n"
        "```python\nfrom transformers import pipeline\nimport hf_memotion\n\n"
        'pipe = pipeline("meme-emotion", model="<this folder or repo>", backend="onnx")\n'
        'pipe({"image": "meme.jpg", "text": "WHEN THE EXAM IS ON MONDAY"})\n```\n'
    )
    return str(model_card) + section
