"""Measuring tools for ``benchmarks/bench.py``: a matmul yardstick, FLOP counts, timings, memory, ensembles to measure.

Speed claims are ratios against a baseline measured in the same run on the same inputs (the
machines are noisy), never absolute thresholds in tests. FLOPs are counted by
:class:`torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions, 2 FLOPs per
multiply-add), so achieved GFLOP/s can be set against a dense fp32 matmul.

Examples:
    >>> import torch
    >>> count_flops(lambda: torch.ones(4, 8) @ torch.ones(8, 2))
    128
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from hf_memotion.ensemble import MemotionEnsembleConfig, MemotionEnsembleModel, fit_stackers
from hf_memotion.families.inputs import TextInput
from hf_memotion.hardware import synchronize
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
from hf_memotion.models.text.preprocessing import encode_texts
from hf_memotion.models.text.tiny import build_tiny_text_backbone
from hf_memotion.models.vision import MemotionImageProcessor, MemotionVisionConfig, MemotionVisionForImageClassification
from hf_memotion.tasks import PROBLEM_NAMES, get_problem

__all__ = [
    "ENSEMBLE_SIZES",
    "BenchmarkEnsemble",
    "Timing",
    "answers_difference",
    "best_kernels",
    "best_seconds",
    "count_flops",
    "fake_model",
    "matmul_gflops",
    "naive_base_probabilities",
    "peak_rss_bytes",
    "random_ensemble",
    "sample_memes",
    "set_channels_last",
    "synchronize",
    "time_calls",
    "time_interleaved",
    "weights_bytes",
]


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best achieved GFLOP/s of a dense fp32 ``n x n`` matmul (the yardstick for every other figure)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_seconds(lambda: a @ b, repeats) / 1e9


def best_seconds(fn: Callable[[], Any], repeats: int, device: str | torch.device = "cpu") -> float:
    """The shortest of ``repeats`` timed calls of ``fn``, after one warm-up call (kernel selection, weight packing).

    Each call is timed until ``device`` has finished its work.

    Examples:
        >>> best_seconds(lambda: torch.ones(64, 64) @ torch.ones(64, 64), repeats=2) > 0
        True
    """

    def timed() -> float:
        start = time.perf_counter()
        fn()
        synchronize(device)
        return time.perf_counter() - start

    timed()
    return min(timed() for _ in range(repeats))


def best_kernels(device: str | torch.device = "cpu", repeats: int = 3, n: int | None = None) -> dict[str, float | None]:
    """Best achieved GFLOP/s of the kernels the models run on, per dtype: the practical yardstick.

    Dense matmul (``4096^3`` on a CPU, ``8192^3`` on a GPU) and a channels-last 3x3 convolution (ResNet's
    third stage: 8 x 256 x 28 x 28, oneDNN on a CPU, cuDNN on a GPU), in fp32 and bf16. bf16 is measured only
    where :func:`hf_memotion.hardware.native_bf16` holds (elsewhere it can be hundreds of times slower: ``None``).

    Args:
        device: Where to measure.
        repeats: Timed calls per kernel (the best counts), after one warm-up call.
        n: Matmul size (default 4096 on a CPU, 8192 on a GPU).

    Examples:
        >>> figures = best_kernels("cpu", repeats=1, n=256)
        >>> sorted(figures), figures["fp32_matmul"] > 0
        (['bf16_conv', 'bf16_matmul', 'fp32_conv', 'fp32_matmul'], True)
    """
    from hf_memotion.hardware import native_bf16

    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 4096)
    out: dict[str, float | None] = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        if dtype == torch.bfloat16 and not native_bf16(device):
            out[f"{name}_matmul"] = out[f"{name}_conv"] = None
            continue
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        with torch.inference_mode():
            out[f"{name}_matmul"] = 2 * n**3 / best_seconds(lambda a=a, b=b: a @ b, repeats, device) / 1e9
            conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False)
            conv = conv.to(device, dtype, memory_format=torch.channels_last)
            x = torch.randn(8, 256, 28, 28, device=device, dtype=dtype).to(memory_format=torch.channels_last)
            flop = 2 * 8 * 256 * 256 * 9 * 28 * 28
            out[f"{name}_conv"] = flop / best_seconds(lambda c=conv, x=x: c(x), repeats, device) / 1e9
    return out


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (matmul and convolution, 2 per multiply-add) that ``fn()`` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def fake_model(build: Callable[[], Any]) -> tuple[Any, Any]:
    """What ``build()`` returns, its models given fake CPU storage: real shapes, no memory (FLOPs at any size).

    ``build`` runs on the meta device (timm reads stochastic-depth rates with ``.item()``, which fake tensors refuse);
    every ``torch.nn.Module`` it returns (alone or in a tuple) then gets fake CPU tensors. Run them, and make their
    inputs, inside the returned ``FakeTensorMode``.

    Examples:
        >>> model, mode = fake_model(lambda: torch.nn.Linear(4096, 4096))
        >>> with mode:
        ...     count_flops(lambda: model(torch.zeros(2, 4096)))
        67108864
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    with torch.device("meta"):
        built = build()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    items = built if isinstance(built, tuple) else (built,)
    with mode:
        items = tuple(item.to_empty(device="cpu") if isinstance(item, torch.nn.Module) else item for item in items)
    return (items if isinstance(built, tuple) else items[0]), mode


@dataclass
class Timing:
    """Wall-clock times of repeated calls."""

    seconds: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        """Median."""
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        """95th percentile (nearest rank)."""
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def as_dict(self) -> dict[str, float]:
        """p50, p95, mean and count."""
        return {"p50_s": self.p50, "p95_s": self.p95, "mean_s": statistics.fmean(self.seconds), "n": len(self.seconds)}


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> Timing:
    """Time ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return Timing([_seconds(fn) for _ in range(repeats)])


def time_interleaved(fns: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """Time ``repeats`` rounds of calls, one of each of ``fns`` in turn per round, after ``warmup`` rounds.

    For ratios between variants: a drift of the machine's speed during the run falls on all of them alike.

    Examples:
        >>> timings = time_interleaved({"a": lambda: sum(range(100)), "b": lambda: sum(range(10))}, repeats=3)
        >>> sorted(timings), len(timings["a"].seconds)
        (['a', 'b'], 3)
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    timings = {name: Timing() for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            timings[name].seconds.append(_seconds(fn))
    return timings


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far.

    Linux: ``VmHWM`` of ``/proc/self/status`` (``ru_maxrss`` would carry the parent's peak across
    ``fork``/``exec``); elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def weights_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


# ---------------------------------------------------------------------------------------------
# Ensembles to measure (random weights: speed and memory do not depend on the values)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkEnsemble:
    """Base models of an ensemble.

    ``text``: ``(name, family, hidden, layers, heads, vocab)``; ``vision``: ``(name, timm architecture)``.
    """

    text: tuple[tuple[str, str, int, int, int, int], ...]
    vision: tuple[tuple[str, str], ...]
    crop_size: int | None = None  # None: each architecture's own timm input size


#: ``demo``: the demo config's models; ``space``: one ResNet-50 and one BERT-base; ``paper``: the paper's
#: eight backbones (Inception-ResNet-v2, PolyNet, SENet-154, PNASNet-5-large; BERT-large, GPT-2 medium and
#: large, XLNet-large) at their real sizes.
ENSEMBLE_SIZES: dict[str, BenchmarkEnsemble] = {
    "demo": BenchmarkEnsemble(text=(("text", "bert", 32, 1, 2, 0),), vision=(("vision", "test_resnet"),), crop_size=64),
    "space": BenchmarkEnsemble(text=(("bert-base", "bert", 768, 12, 12, 30522),), vision=(("resnet50", "resnet50"),)),
    "paper": BenchmarkEnsemble(
        text=(
            ("bert-large", "bert", 1024, 24, 16, 30522),
            ("gpt2-medium", "gpt2", 1024, 24, 16, 50257),
            ("gpt2-large", "gpt2", 1280, 36, 20, 50257),
            ("xlnet-large", "xlnet", 1024, 24, 16, 32000),
        ),
        vision=(
            ("inception_resnet_v2", "inception_resnet_v2"),
            ("polynet", "polynet"),
            ("senet154", "legacy_senet154"),
            ("pnasnet5large", "pnasnet5large"),
        ),
    ),
}

_WORDS = (
    "when",
    "the",
    "exam",
    "is",
    "on",
    "monday",
    "and",
    "my",
    "dog",
    "finally",
    "understands",
    "coffee",
    "again",
    "sincerely",
    "boring",
    "awesome",
    "hate",
    "lol",
    "teacher",
    "trying",
    "okay",
    "feeling",
    "weekend",
    "dream",
    "kind",
    "meanwhile",
    "honestly",
    "polite",
    "believe",
    "morning",
    "night",
    "trash",
)


def sample_memes(n: int, seed: int = 0, size: int = 320) -> tuple[list[Image.Image], list[str]]:
    """``n`` random RGB images and captions of 8 to 24 words (deterministic)."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
    texts = [" ".join(rng.choice(_WORDS, int(rng.integers(8, 25)))) for _ in range(n)]
    return images, texts


def _text_model(family: str, hidden: int, layers: int, heads: int, vocab: int, problems: Sequence[str]):
    config, tokenizer = build_tiny_text_backbone(
        family, [" ".join(_WORDS)], hidden_size=hidden, num_layers=layers, num_heads=heads, max_length=64
    )
    if vocab:  # real-size embeddings (rows past the word-level vocabulary are never looked up)
        config.vocab_size = vocab
    if family == "bert":
        config.intermediate_size = 4 * hidden  # the real models' feed-forward width
    if family == "xlnet":
        config.d_inner = 4 * hidden
    model = MemotionTextForSequenceClassification(MemotionTextConfig(text_config=config, problems=list(problems)))
    return model.eval(), tokenizer


def random_ensemble(spec: BenchmarkEnsemble, layout: str = "multitask", seed: int = 0) -> MemotionEnsembleModel:
    """An ensemble of randomly initialised base models of ``spec``, stacked on synthetic probabilities.

    ``layout="per_problem"`` builds the paper's layout: nine models per backbone, one problem each.
    """
    torch.manual_seed(seed)
    groups = [list(PROBLEM_NAMES)] if layout == "multitask" else [[p] for p in PROBLEM_NAMES]
    base, entries = {}, []
    for name, family, hidden, layers, heads, vocab in spec.text:
        for problems in groups:
            key = name if layout == "multitask" else f"{name}-{problems[0]}"
            base[key] = _text_model(family, hidden, layers, heads, vocab, problems)
            entries.append({"name": key, "family": "text", "path": key, "problems": problems})
    for name, architecture in spec.vision:
        processor_args = {"crop_size": spec.crop_size} if spec.crop_size else {}
        processor = MemotionImageProcessor.from_timm(architecture, **processor_args)
        for problems in groups:
            key = name if layout == "multitask" else f"{name}-{problems[0]}"
            model = MemotionVisionForImageClassification(
                MemotionVisionConfig(architecture=architecture, problems=problems)
            ).eval()
            base[key] = (model, processor)
            entries.append({"name": key, "family": "vision", "path": key, "problems": problems})
    rng = np.random.default_rng(seed)
    n = 90
    labels = {p: rng.integers(0, get_problem(p).num_labels, n) for p in PROBLEM_NAMES}
    oof = {e["name"]: {p: rng.dirichlet(np.ones(get_problem(p).num_labels), n) for p in e["problems"]} for e in entries}
    methods = ["logistic_regression", "soft_vote", "average"]
    stackers = fit_stackers(oof, labels, candidates={p: [methods[i % 3]] for i, p in enumerate(PROBLEM_NAMES)}, cv=3)
    config = MemotionEnsembleConfig(problems=list(PROBLEM_NAMES), base_models=entries)
    return MemotionEnsembleModel(config, base_models=base, stackers=stackers).eval()


def set_channels_last(ensemble: MemotionEnsembleModel, enabled: bool) -> None:
    """Switch the visual base models between channels-last and the default memory format, in place."""
    for model in ensemble.base_models.values():
        if hasattr(model, "to_channels_last"):  # a timm network
            model.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
            model.channels_last = enabled


@torch.inference_mode()
def naive_base_probabilities(
    ensemble: MemotionEnsembleModel, images: Sequence[Any], texts: Sequence[str], ten_crop: bool = True
) -> dict[str, dict[str, np.ndarray]]:
    """The baseline: each base model on its own for each meme, each of the ten crops as its own forward.

    Same maths as :meth:`MemotionEnsembleModel.base_probabilities` (mean of the crops'
    log-probabilities), so outputs must agree to float rounding.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for entry in ensemble.config.members:
        name = entry.name
        model = ensemble.base_models[name]
        (single,) = ensemble.processor.inputs_of(name)  # the benchmark's members read one input each
        rows: dict[str, list[np.ndarray]] = {}
        for image, text in zip(images, texts, strict=True):
            if isinstance(single, TextInput):
                inputs = single.feeding.pad(single.tokenizer, encode_texts(single.tokenizer, [text], single.max_length))
                probabilities = {p: v.softmax(-1) for p, v in model(**inputs).problem_logits.items()}
            else:
                pixels = single.encode([image], None, ten_crop=ten_crop)["pixel_values"]
                crops = pixels[0] if ten_crop else pixels
                per_crop = [model(pixel_values=crop[None]).problem_logits for crop in crops]
                probabilities = {
                    p: torch.stack([c[p].log_softmax(-1) for c in per_crop]).mean(dim=0).softmax(-1)
                    for p in per_crop[0]
                }
            for p, v in probabilities.items():
                rows.setdefault(p, []).append(v.float().numpy())
        out[name] = {p: np.concatenate(v) for p, v in rows.items()}
    return out


def max_difference(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    """Largest absolute difference between two ``{problem: probabilities}`` maps."""
    return max(float(np.abs(a[p] - b[p]).max()) for p in a)


def answers_difference(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> float:
    """Largest difference between the probabilities of two lists of ``meme-emotion`` answers.

    Every score the answers hold is compared: sentiment, each emotion's presence and grades, and each base model's
    probabilities where both carry them (``return_base=True``).

    Examples:
        >>> one = {"sentiment": {"scores": {"positive": 0.6}}, "emotions": {}}
        >>> answers_difference([one], [{"sentiment": {"scores": {"positive": 0.5}}, "emotions": {}}])
        0.09999999999999998
    """
    largest = 0.0
    for x, y in zip(a, b, strict=True):
        pairs = [(x["sentiment"]["scores"], y["sentiment"]["scores"])]
        for emotion, entry in x["emotions"].items():
            pairs.append((entry["intensity_scores"], y["emotions"][emotion]["intensity_scores"]))
            pairs.append(({"score": entry["score"]}, {"score": y["emotions"][emotion]["score"]}))
        for model, per in (x.get("base") or {}).items():
            pairs += [(per[p], y["base"][model][p]) for p in per]
        largest = max(largest, *(abs(u[k] - v[k]) for u, v in pairs for k in u))
    return largest
