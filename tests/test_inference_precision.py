"""Precision and kernels of inference: oneDNN linear layers, ``dtype="auto"`` and its held-out check, bf16 training."""

import copy
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from conftest import build_tiny_ensemble
from hf_memotion.data import load_memotion
from hf_memotion.ensemble import MemotionEnsembleModel, inference_dtype
from hf_memotion.models.onednn_linear import OneDNNLinear, onednn_linear_available, use_onednn_linear
from hf_memotion.specs import SpecError
from hf_memotion.training import ClassifierTrainingArguments, arguments

needs_onednn = pytest.mark.skipif(not onednn_linear_available(), reason="this torch build has no oneDNN")


# ---------------------------------------------------------------- oneDNN linear layers


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 24), (3, 7, 24), (0, 24)])
def test_onednn_linear_gives_the_stock_layers_outputs_and_flop_count(bias, shape):
    from hf_memotion.benchmarking import count_flops

    torch.manual_seed(0)
    stock = torch.nn.Linear(24, 40, bias=bias)
    fast = copy.deepcopy(stock)
    assert use_onednn_linear(fast) == 1 and type(fast) is OneDNNLinear
    x = torch.randn(*shape)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), stock(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            fast(x.transpose(0, -2).contiguous().transpose(0, -2)), stock(x), atol=1e-5, rtol=1e-5
        )
        assert count_flops(lambda: fast(x)) == count_flops(lambda: stock(x))
    assert fast.state_dict().keys() == stock.state_dict().keys()


@needs_onednn
def test_onednn_linear_falls_back_for_gradients_autocast_and_bf16():
    torch.manual_seed(0)
    stock = torch.nn.Linear(16, 8)
    fast = copy.deepcopy(stock)
    use_onednn_linear(fast)
    x = torch.randn(4, 16, requires_grad=True)
    fast(x).square().sum().backward()  # training still reaches the weights
    expected = x.grad.clone()
    x.grad = None
    stock(x).square().sum().backward()
    torch.testing.assert_close(x.grad, expected)
    torch.testing.assert_close(fast.weight.grad, stock.weight.grad)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast(torch.randn(2, 16)).dtype == torch.bfloat16
    with torch.inference_mode():
        assert copy.deepcopy(fast).to(torch.bfloat16)(torch.randn(2, 16, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert use_onednn_linear(fast, enabled=False) == 1 and type(fast) is torch.nn.Linear


@needs_onednn
def test_the_ensemble_routes_text_linears_through_onednn_and_quantizes_them_on_request(synthetic):
    ensemble = build_tiny_ensemble(synthetic)
    images, texts = [Image.new("RGB", (40, 40), (200, 10, 10))] * 3, ["when the exam is on monday", "lol", "nice"]
    reference = ensemble.base_probabilities(images, texts)
    ensemble.optimize_for_inference()
    backbone = ensemble.base_models["text"].memotion_text.backbone
    assert any(type(m) is OneDNNLinear for m in backbone.modules())
    for name, problems in ensemble.base_probabilities(images, texts).items():
        for problem, values in problems.items():
            np.testing.assert_allclose(values, reference[name][problem], atol=1e-5)
    ensemble.optimize_for_inference(quantize_text=True)  # after oneDNN: every backbone linear is still quantized
    assert not any(type(m) in (torch.nn.Linear, OneDNNLinear) for m in backbone.modules())
    ensemble.optimize_for_inference(onednn_linear=False)
    assert not any(type(m) is OneDNNLinear for m in ensemble.modules())


# ---------------------------------------------------------------- dtype="auto"


@pytest.fixture
def held_out(demo_root):
    return load_memotion(demo_root)["test"]


def _passing_check(speedup=1.6):
    """A recorded check: accuracy passed, bf16 timed at ``speedup`` x fp32 on the CPU (``None``: not timed)."""
    speed = {} if speedup is None else {"cpu": {"memes": 4, "speedup": speedup}}
    changes = {"subtask_a": 0.0, "subtask_b": -0.004, "subtask_c": 0.002}
    return {"macro_f1_change": changes, "passed": True, "speed": speed}


class _Config:
    def __init__(self, checks):
        self.dtype_checks = checks


@pytest.mark.parametrize(
    ("native", "checks", "expected", "why"),
    [
        (False, {"bfloat16": _passing_check()}, torch.float32, "has no native bf16"),
        (True, {}, torch.float32, "no bf16 check recorded"),
        (True, {"bfloat16": {"macro_f1_change": {"subtask_a": 0.02}}}, torch.float32, "moved held-out macro-F1 by"),
        (True, {"bfloat16": _passing_check()}, torch.bfloat16, "at most 0.0040"),
        # native bf16 and accurate, but slower (the demo ensemble once ran at 0.60x fp32 with AVX512-BF16)
        (True, {"bfloat16": _passing_check(speedup=0.6)}, torch.float32, "0.60x fp32's speed"),
        (True, {"bfloat16": _passing_check(speedup=1.02)}, torch.float32, "needs >= 1.05x"),
        (True, {"bfloat16": _passing_check(speedup=None)}, torch.float32, "not yet timed"),
    ],
)
def test_auto_picks_bf16_only_on_native_hardware_with_a_passed_check(monkeypatch, native, checks, expected, why):
    monkeypatch.setattr(inference_dtype, "native_bf16", lambda device: native)
    dtype, reason = inference_dtype.resolve_inference_dtype(_Config(checks), "cpu")
    assert dtype == expected and why in reason


@pytest.mark.parametrize(("speedup", "expected"), [(0.6, torch.float32), (1.8, torch.bfloat16)])
def test_auto_times_bf16_once_on_a_device_the_check_did_not_run_on(monkeypatch, speedup, expected):
    monkeypatch.setattr(inference_dtype, "native_bf16", lambda device: True)
    config = _Config({"bfloat16": _passing_check()})  # timed on the CPU only
    calls = []

    def measure():
        calls.append(1)
        return {"memes": 4, "speedup": speedup}

    dtype, _ = inference_dtype.resolve_inference_dtype(config, "cuda:0", measure=measure)
    assert dtype == expected and calls == [1]
    assert config.dtype_checks["bfloat16"]["speed"]["cuda"]["speedup"] == speedup  # recorded beside the CPU's
    assert inference_dtype.resolve_inference_dtype(config, "cuda:1", measure=measure)[0] == expected
    assert calls == [1]  # once per kind of device


def test_auto_on_an_untimed_device_times_the_loaded_models(monkeypatch, synthetic, tmp_path):
    """An ensemble whose check carries no timing for the CPU: loaded in fp32, timed, then cast if bf16 is faster."""
    monkeypatch.setattr(inference_dtype, "native_bf16", lambda device: True)
    ensemble = build_tiny_ensemble(synthetic)
    ensemble.config.dtype_checks = {"bfloat16": _passing_check(speedup=None)}
    ensemble.save_pretrained(tmp_path / "untimed")
    for speedup, expected in ((0.6, torch.float32), (1.5, torch.bfloat16)):
        monkeypatch.setattr(
            "hf_memotion.ensemble.modeling_memotion_ensemble.measure_dtype_speed",
            lambda ensemble, speedup=speedup: {"memes": 4, "speedup": speedup},
        )
        loaded = MemotionEnsembleModel.from_pretrained(tmp_path / "untimed")
        assert set(_dtypes(loaded).values()) == {expected}
        assert loaded.config.dtype_checks["bfloat16"]["speed"]["cpu"]["speedup"] == speedup
    real = inference_dtype.measure_dtype_speed(build_tiny_ensemble(synthetic), memes=2)
    assert real["memes"] == 2 and real["float32_s"] > 0 and real["bfloat16_s"] > 0
    assert real["speedup"] == pytest.approx(real["float32_s"] / real["bfloat16_s"], rel=1e-3)


def test_check_dtype_measures_the_held_out_change_and_is_saved(synthetic, held_out, tmp_path):
    ensemble = build_tiny_ensemble(synthetic)
    check = ensemble.check_dtype(held_out, batch_size=7)
    assert check["rows"] == len(held_out) and check["dtype"] == "bfloat16"
    for subtask, change in check["macro_f1_change"].items():
        assert change == pytest.approx(check["macro_f1"]["bfloat16"][subtask] - check["macro_f1"]["float32"][subtask])
    assert check["passed"] == all(abs(v) <= inference_dtype.DTYPE_TOLERANCE for v in check["macro_f1_change"].values())
    assert 0 < check["max_probability_change"] < 0.1  # bf16 rounding moves probabilities, but only a little
    timing = check["speed"]["cpu"]  # both dtypes timed on the first batch, where the check ran
    assert timing["memes"] == 7 and timing["float32_s"] > 0 and timing["bfloat16_s"] > 0
    assert all(m.dtype == torch.float32 for m in ensemble.base_models.values())  # the ensemble is left as it was
    ensemble.save_pretrained(tmp_path / "e")
    saved = json.loads((tmp_path / "e" / "config.json").read_text())["dtype_checks"]["bfloat16"]
    assert saved["macro_f1_change"] == pytest.approx(check["macro_f1_change"])
    with pytest.raises(ValueError, match="lacks column"):
        ensemble.check_dtype(held_out.remove_columns(["humour"]))
    ensemble.to_inference_dtype(torch.bfloat16)
    with pytest.raises(ValueError, match="compares against fp32"):
        ensemble.check_dtype(held_out)


@pytest.fixture
def checked_folder(synthetic, tmp_path):
    """A saved ensemble carrying a passed bf16 check."""
    ensemble = build_tiny_ensemble(synthetic)
    ensemble.config.dtype_checks = {"bfloat16": _passing_check()}
    ensemble.save_pretrained(tmp_path / "checked")
    return tmp_path / "checked"


def _probabilities(answer):
    """Every probability of a pipeline answer, flat."""
    values = list(answer["sentiment"]["scores"].values())
    for emotion in answer["emotions"].values():
        values += [emotion["score"], *emotion["intensity_scores"].values()]
    return values


def _dtypes(ensemble):
    return {name: model.dtype for name, model in ensemble.base_models.items()}


def test_from_pretrained_and_the_pipeline_default_to_auto(monkeypatch, checked_folder, caplog):
    monkeypatch.setattr(inference_dtype, "native_bf16", lambda device: True)
    with caplog.at_level(logging.INFO, logger=inference_dtype.__name__):
        ensemble = MemotionEnsembleModel.from_pretrained(checked_folder)
    assert set(_dtypes(ensemble).values()) == {torch.bfloat16}
    assert "dtype='auto': bfloat16" in caplog.text
    assert set(_dtypes(MemotionEnsembleModel.from_pretrained(checked_folder, dtype=torch.float32)).values()) == {
        torch.float32
    }
    pipe = pipeline("meme-emotion", model=str(checked_folder))  # transformers passes dtype="auto"
    assert set(_dtypes(pipe.model).values()) == {torch.bfloat16}
    memes = [{"image": Image.new("RGB", (40, 40), (i * 40, 90, 10)), "text": f"lol {i}"} for i in range(4)]
    low = pipe(memes, batch_size=2)
    fp32 = pipeline("meme-emotion", model=str(checked_folder), dtype=torch.float32)
    assert set(_dtypes(fp32.model).values()) == {torch.float32}
    high = fp32(memes, batch_size=2)
    for a, b in zip(low, high, strict=True):
        np.testing.assert_allclose(_probabilities(a), _probabilities(b), atol=0.05)
    # int8 text stays as it is; the visual model still takes bf16
    quantized = MemotionEnsembleModel.from_pretrained(checked_folder, quantize_text=True)
    assert quantized.base_models["vision"].dtype == torch.bfloat16 and quantized.base_models["text"].quantized
    assert quantized.predict_proba([memes[0]["image"]], ["lol"])["humour"].shape == (1, 2)
    monkeypatch.setattr(inference_dtype, "native_bf16", lambda device: False)
    assert set(_dtypes(MemotionEnsembleModel.from_pretrained(checked_folder)).values()) == {torch.float32}


@pytest.mark.parametrize(
    ("device_map", "expected"),
    [
        (None, "cpu"),
        ("cpu", "cpu"),
        ({"": "cpu"}, "cpu"),
        (0, "cuda:0"),
        ("cuda:1", "cuda:1"),
        (torch.device("cpu"), "cpu"),
    ],
)
def test_auto_resolves_for_the_device_the_base_models_will_load_on(device_map, expected):
    from hf_memotion.ensemble.modeling_memotion_ensemble import _target_device

    assert _target_device(device_map) == torch.device(expected)


def test_auto_reads_weights_straight_into_bf16(monkeypatch, checked_folder):
    monkeypatch.setattr(inference_dtype, "native_bf16", lambda device: True)
    casts = []
    monkeypatch.setattr(
        "hf_memotion.ensemble.modeling_memotion_ensemble.cast_base_models",
        lambda models, dtype: casts.append(dtype),
    )
    ensemble = MemotionEnsembleModel.from_pretrained(checked_folder, device_map="cpu")
    assert set(_dtypes(ensemble).values()) == {torch.bfloat16} and casts == []  # loaded in bf16, not cast after
    assert ensemble.inference_dtype_request == "auto" and "held-out macro-F1" in ensemble.inference_dtype_reason


def test_bad_dtypes_are_errors(synthetic):
    ensemble = build_tiny_ensemble(synthetic)
    with pytest.raises(ValueError, match="dtype must be 'auto' or a torch dtype"):
        ensemble.to_inference_dtype("fastest")
    assert _dtypes(ensemble.to_inference_dtype("bfloat16"))["text"] == torch.bfloat16


# ---------------------------------------------------------------- bf16 training


def test_bf16_auto_trains_in_bf16_only_where_it_is_native(monkeypatch, caplog, tmp_path):
    def args_of(bf16):
        return ClassifierTrainingArguments.from_dict({"bf16": bf16}).to_training_arguments(tmp_path, with_eval=False)

    for native in (True, False):
        monkeypatch.setattr("hf_memotion.hardware.native_bf16", lambda device, native=native: native)
        assert args_of("auto").bf16 is native
    with caplog.at_level(logging.WARNING, logger=arguments.__name__):
        assert args_of(True).bf16
    assert "without native bf16" in caplog.text
    with pytest.raises(SpecError, match="'bf16' must be true or false or 'auto', got 'yes'"):
        args_of("yes")
    with pytest.raises(ValueError, match="bf16 must be true, false or 'auto'"):
        arguments.build_training_arguments(tmp_path, batch_size=4, bf16="yes")
