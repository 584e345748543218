"""Which dtype an ensemble predicts in: ``dtype="auto"`` and the held-out check that licenses bf16.

``dtype="auto"`` (the default of ``MemotionEnsembleModel.from_pretrained`` and of
``pipeline("meme-emotion")``) picks **bf16 weights** where both hold:

1. the device computes bf16 natively (:func:`hf_memotion.hardware.native_bf16`: AVX512-BF16 or AMX on a
   CPU, compute capability 8.0+ on a GPU; elsewhere bf16 can be far slower than fp32),
2. the ensemble carries a passed bf16 check: :func:`check_inference_dtype` ran it on labelled held-out
   memes (``scripts/train.py`` does at the end of training) and no subtask's macro-F1 moved by more
   than :data:`DTYPE_TOLERANCE` (0.005), and
3. bf16 is faster for *this* ensemble on *this kind* of device: at least :data:`DTYPE_MIN_SPEEDUP` (1.05x)
   fp32's speed. Native bf16 is not enough: small models can run slower in bf16 than in fp32 (the demo
   ensemble once ran at 0.60x on a CPU with AVX512-BF16). The check times both dtypes on the device it
   runs on; a device type it did not run on is timed once, on a synthetic batch, the first time
   ``"auto"`` resolves there with the models loaded (:func:`measure_dtype_speed`), and recorded beside
   the accuracy check (``config.dtype_checks["bfloat16"]["speed"]``; saved with the ensemble).

Otherwise fp32. bf16 *weights* rather than autocast: on the CPU measured here both give the same
outputs to rounding and bf16 weights are faster (the Space-size pipeline 1.93x fp32 against 1.65x:
``benchmarks/bench.py``, ``dtype`` section). An explicit ``dtype=torch.float32`` / ``torch.bfloat16`` is taken
as given.

Examples:
    >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
    >>> ensemble = random_ensemble(ENSEMBLE_SIZES["demo"])
    >>> resolve_inference_dtype(ensemble.config, "cpu")  # no check recorded: fp32
    (torch.float32, 'no bf16 check recorded for this ensemble (MemotionEnsembleModel.check_dtype)')
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hf_memotion.ensemble.stacking import combine_stackers, with_aliases
from hf_memotion.hardware import native_bf16, release_memory, synchronize
from hf_memotion.models.text.preprocessing import TextFeeding

if TYPE_CHECKING:
    import datasets

    from hf_memotion.ensemble.configuration_memotion_ensemble import EnsembleMember
    from hf_memotion.ensemble.modeling_memotion_ensemble import MemotionEnsembleModel

__all__ = [
    "DTYPE_MIN_SPEEDUP",
    "DTYPE_TOLERANCE",
    "auto_choice",
    "check_inference_dtype",
    "measure_dtype_speed",
    "resolve_inference_dtype",
]

logger = logging.getLogger(__name__)

#: Largest held-out macro-F1 change (any subtask) at which ``dtype="auto"`` still picks bf16.
DTYPE_TOLERANCE = 0.005
#: Smallest measured speed-up of bf16 over fp32 at which ``dtype="auto"`` picks bf16: under it, bf16's rounding
#: buys nothing (the margin keeps timing noise from deciding).
DTYPE_MIN_SPEEDUP = 1.05
#: Timed forwards per dtype and model (after one warm-up each); the median is kept.
SPEED_REPEATS = 3
SUBTASK_KEYS = ("subtask_a", "subtask_b", "subtask_c")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def resolve_inference_dtype(
    config: Any, device: str | torch.device, measure: Callable[[], dict[str, Any]] | None = None
) -> tuple[torch.dtype, str]:
    """The dtype ``"auto"`` means for an ensemble's config on ``device``, and why (one line).

    Args:
        config: A ``MemotionEnsembleConfig`` (its ``dtype_checks`` are read).
        device: Where the base models run.
        measure: Times both dtypes on ``device`` when the check has no speed for its type (the result is
            recorded in ``config``); without it such a device gets fp32.
    """
    device = torch.device(device)
    dtype, reason = _resolve(config, device)
    if reason == _UNTIMED and measure is not None:
        check = config.dtype_checks["bfloat16"]
        check["speed"] = {**(check.get("speed") or {}), device.type: measure()}
        dtype, reason = _resolve(config, device)
    logger.info("dtype='auto': %s (%s)", _dtype_name(dtype), reason)
    return dtype, reason


_UNTIMED = "bf16 not yet timed against fp32 for this ensemble on this kind of device"


def needs_speed_measurement(config: Any, device: str | torch.device) -> bool:
    """Whether ``"auto"`` on ``device`` waits for a timing of the loaded models (everything else allows bf16)."""
    return _resolve(config, torch.device(device))[1] == _UNTIMED


def _resolve(config: Any, device: torch.device) -> tuple[torch.dtype, str]:
    return auto_choice((getattr(config, "dtype_checks", None) or {}).get("bfloat16"), device)


def auto_choice(check: Mapping[str, Any] | None, device: str | torch.device) -> tuple[torch.dtype, str]:
    """What ``"auto"`` picks on ``device`` given a recorded bf16 check (``None``: none), and why; nothing is timed.

    Examples:
        >>> auto_choice({"macro_f1_change": {"subtask_a": 0.0}, "speed": {"cpu": {"speedup": 0.6}}}, "cpu")[0]
        torch.float32
    """
    device = torch.device(device)
    if not native_bf16(device):
        return torch.float32, f"{device.type} has no native bf16"
    if not check:
        return torch.float32, "no bf16 check recorded for this ensemble (MemotionEnsembleModel.check_dtype)"
    changes = check.get("macro_f1_change") or {}
    worst = max((abs(float(v)) for v in changes.values()), default=float("inf"))
    if worst > DTYPE_TOLERANCE:
        return torch.float32, f"bf16 moved held-out macro-F1 by {worst:.4f} (> {DTYPE_TOLERANCE})"
    speed = (check.get("speed") or {}).get(device.type)
    if not speed:
        return torch.float32, _UNTIMED
    speedup = float(speed["speedup"])
    if speedup < DTYPE_MIN_SPEEDUP:
        return torch.float32, (
            f"bf16 ran at {speedup:.2f}x fp32's speed on {device.type} for this ensemble (bf16 needs >= "
            f"{DTYPE_MIN_SPEEDUP}x)"
        )
    return torch.bfloat16, (
        f"native bf16 on {device.type}, {speedup:.2f}x fp32's speed; held-out macro-F1 moved by at most {worst:.4f}"
    )


def _forward_seconds(model: torch.nn.Module, low: torch.nn.Module, inputs: dict, low_inputs: dict) -> np.ndarray:
    """Seconds of one forward of ``model`` (fp32) and of ``low`` (the lower precision): the median of repeats.

    The two dtypes alternate within each repeat, so a drift of the machine's speed falls on both alike.
    """
    times: list[list[float]] = [[], []]
    runs = ((model, inputs), (low, low_inputs))
    with torch.inference_mode():
        for net, given in runs:
            net(**given)  # warm-up: first-call allocation and kernel selection are not the dtype's speed
        for _ in range(SPEED_REPEATS):
            for slot, (net, given) in enumerate(runs):
                synchronize(net.device)
                start = time.perf_counter()
                net(**given)
                synchronize(net.device)
                times[slot].append(time.perf_counter() - start)
    return np.median(times, axis=1)


def _speed_record(seconds: np.ndarray, dtype: torch.dtype, memes: int) -> dict[str, Any]:
    fp32, low = (float(v) for v in seconds)
    return {
        "memes": memes,
        "float32_s": round(fp32, 6),
        f"{_dtype_name(dtype)}_s": round(low, 6),
        "speedup": round(fp32 / max(low, 1e-9), 4),
    }


def measure_dtype_speed(
    ensemble: MemotionEnsembleModel, dtype: torch.dtype = torch.bfloat16, memes: int = 4
) -> dict[str, Any]:
    """Time one forward of every base model in fp32 and in ``dtype`` on a synthetic batch, where the models are.

    The base models must be fp32; each is copied to ``dtype`` in turn (one model's extra memory at a time).

    Args:
        ensemble: A loaded ensemble in fp32.
        dtype: The lower precision.
        memes: Memes in the batch (each read as ten crops, the paper's inference).

    Returns:
        ``{"memes", "float32_s", "<dtype>_s", "speedup"}`` (speedup: fp32 seconds over ``dtype`` seconds).

    Examples:
        >>> from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
        >>> speed = measure_dtype_speed(random_ensemble(ENSEMBLE_SIZES["demo"]), memes=1)
        >>> sorted(speed), speed["speedup"] > 0
        (['bfloat16_s', 'float32_s', 'memes', 'speedup'], True)
    """
    from PIL import Image

    images = [Image.new("RGB", (256, 256), (90 + 20 * i, 120, 160)) for i in range(memes)]
    texts = [f"when the synthetic meme number {i} is only here to time a forward pass" for i in range(memes)]
    batch = ensemble.processor(images, texts, ten_crop=True)
    seconds = np.zeros(2)
    for entry in ensemble.config.members:
        model = ensemble.base_models[entry.name]
        if getattr(model, "quantized", False):
            continue  # int8 text models predict as they are in either case
        if model.dtype != torch.float32:
            name = entry.name
            raise ValueError(f"measure_dtype_speed compares against fp32: base model {name!r} is {model.dtype}")
        low = copy.deepcopy(model).to(dtype)
        seconds += _forward_seconds(
            model,
            low,
            ensemble.processor.model_inputs(batch, entry.name, device=model.device, dtype=model.dtype),
            ensemble.processor.model_inputs(batch, entry.name, device=low.device, dtype=dtype),
        )
        del low
    record = _speed_record(seconds, dtype, memes)
    logger.info("bf16 against fp32 on a synthetic batch: %.2fx fp32's speed", record["speedup"])
    return record


def _probability_pairs(processor: Any, name: str, model: torch.nn.Module, low: torch.nn.Module, data, batch_size: int):
    """One base model's probabilities over ``data`` in fp32 (``model``) and in the lower precision (``low``).

    Each chunk of memes is preprocessed once for both. Also returns the first chunk's inputs (fp32, low), which
    the check times.
    """
    rows: dict[str, list[np.ndarray]] = {}
    low_rows: dict[str, list[np.ndarray]] = {}
    first: list[dict] = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            chunk = data[start : start + batch_size]
            batch = processor(chunk["image"], chunk["text"], ten_crop=True)
            for net, out in ((model, rows), (low, low_rows)):
                inputs = processor.model_inputs(batch, name, device=net.device, dtype=net.dtype)
                if start == 0:
                    first.append(inputs)
                for problem, values in net(**inputs).problem_probabilities().items():
                    out.setdefault(problem, []).append(values)
    found = tuple({p: np.concatenate(v) for p, v in out.items()} for out in (rows, low_rows))
    return found, (first[0], first[1])


def held_out_change(
    finals: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, np.ndarray], lower: str
) -> dict[str, Any]:
    """Each subtask's held-out macro-F1 in fp32 and in a lower precision, the change, and the verdict.

    Args:
        finals: ``{"float32": {problem: probabilities}, lower: {...}}``, the ensemble's final probabilities.
        labels: Problem -> gold class ids.
        lower: The key of the lower precision (``"bfloat16"``, ``"int8"``).

    Returns:
        ``{"macro_f1": {precision: {subtask: F1}}, "macro_f1_change": {subtask: change}, "passed"}``; ``passed``
        when no subtask moved by more than :data:`DTYPE_TOLERANCE`.

    Examples:
        >>> from hf_memotion.tasks import PROBLEM_NAMES
        >>> same = {p: np.eye(2 if p != "sentiment" else 3)[[0, 1]] for p in PROBLEM_NAMES}
        >>> labels = {p: np.array([0, 1]) for p in PROBLEM_NAMES}
        >>> held_out_change({"float32": same, "int8": same}, labels, "int8")["passed"]
        True
    """
    from hf_memotion.metrics import memotion_scores

    scores = {
        key: {k: v for k, v in memotion_scores({p: f[p].argmax(-1) for p in f}, labels).items() if k in SUBTASK_KEYS}
        for key, f in finals.items()
    }
    change = {k: scores[lower][k] - scores["float32"][k] for k in scores["float32"]}
    return {
        "macro_f1": scores,
        "macro_f1_change": change,
        "passed": all(abs(v) <= DTYPE_TOLERANCE for v in change.values()),
    }


def check_inference_dtype(
    ensemble: MemotionEnsembleModel,
    data: datasets.Dataset,
    dtype: torch.dtype = torch.bfloat16,
    batch_size: int = 16,
    load: Callable[[EnsembleMember], tuple[torch.nn.Module, Any]] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Held-out macro-F1 of the ensemble in fp32 and in ``dtype``, and the largest probability change.

    One base model at a time is run in fp32 and then in ``dtype``, so the extra memory is one model's:
    with the ensemble's own base models (which must be fp32; each is copied to ``dtype``, the ensemble is left
    as it is), or, with ``load``, models loaded one by one and freed after (the ensemble then needs no base
    model in memory: what ``scripts/train.py`` does, so the check does not hold every model at once).

    Args:
        ensemble: The ensemble to check (its config and meta-estimators; its base models unless ``load``).
        data: Labelled memes: ``image``, ``text`` and every problem's label column (the held-out split).
        dtype: The lower precision to check.
        batch_size: Memes per forward.
        load: ``member -> (model, its preprocessor)`` for a base model of the config
            (:class:`~hf_memotion.ensemble.configuration_memotion_ensemble.EnsembleMember`).
        device: Where loaded models run (default: the CPU); the ensemble's own models stay where they are.

    Returns:
        ``{"dtype", "rows", "device", "macro_f1": {"float32": {...}, "<dtype>": {...}},
        "macro_f1_change": {subtask: change}, "max_probability_change", "passed", "speed"}``; ``passed``
        is the accuracy verdict; ``speed`` is ``{device type: {"memes", "float32_s", "<dtype>_s", "speedup"}}``,
        one forward of every base model on the first ``batch_size`` memes in each dtype (what ``"auto"`` also
        needs: bf16 at least :data:`DTYPE_MIN_SPEEDUP` x fp32's speed).
    """
    from hf_memotion.ensemble.processing_memotion_ensemble import MemeProcessor
    from hf_memotion.families import get_family

    missing = [c for c in ("image", "text", *ensemble.config.problems) if c not in data.column_names]
    if missing:
        raise ValueError(f"check_dtype needs labelled memes: the data lacks column(s) {missing}")
    if len(data) == 0:
        raise ValueError("check_dtype needs at least one labelled meme")

    reference: dict[str, dict[str, np.ndarray]] = {}
    lowered: dict[str, dict[str, np.ndarray]] = {}
    devices = set()
    seconds = np.zeros(2)
    for entry in ensemble.config.members:
        name = entry.name
        if load is None:
            model, processor = ensemble.base_models[name], ensemble.processor
        else:
            model, prep = load(entry)
            model = model.eval().to(device or "cpu")
            inputs = get_family(entry.family).inputs(prep, TextFeeding.of_member(model.config))
            processor = MemeProcessor({name: inputs})
        if model.dtype != torch.float32:
            raise ValueError(f"check_dtype compares against fp32: base model {name!r} is {model.dtype}")
        devices.add(str(model.device))
        low = copy.deepcopy(model).to(dtype)
        pairs, (inputs, low_inputs) = _probability_pairs(processor, name, model, low, data, batch_size)
        reference[name], lowered[name] = (with_aliases(found, entry.aliases) for found in pairs)
        seconds += _forward_seconds(model, low, inputs, low_inputs)
        del inputs, low_inputs
        del low, model
        if load is not None:
            release_memory()
    labels = {p: np.asarray(data[p]) for p in ensemble.config.problems}
    finals = {
        "float32": combine_stackers(ensemble.stackers, reference),
        _dtype_name(dtype): combine_stackers(ensemble.stackers, lowered),
    }
    verdict = held_out_change(finals, labels, _dtype_name(dtype))
    largest = max(
        [float(np.abs(finals[_dtype_name(dtype)][p] - finals["float32"][p]).max()) for p in finals["float32"]]
        + [float(np.abs(lowered[m][p] - reference[m][p]).max()) for m in reference for p in reference[m]]
    )
    return {
        "dtype": _dtype_name(dtype),
        "rows": len(data),
        "device": ",".join(sorted(devices)),
        **verdict,
        "max_probability_change": largest,
        "speed": {
            "+".join(sorted({d.split(":")[0] for d in devices})): _speed_record(
                seconds, dtype, min(batch_size, len(data))
            )
        },
    }


def cast_base_models(models: Mapping[str, torch.nn.Module], dtype: torch.dtype) -> None:
    """Cast every base model's floating-point weights to ``dtype`` in place."""
    for model in models.values():
        if model.dtype != dtype:
            model.to(dtype)
