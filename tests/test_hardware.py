"""Machine features detected at run time: native bf16 and the theoretical peak, from /proc/cpuinfo-style text."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hf_memotion.hardware as hardware

ROOT = Path(__file__).resolve().parents[1]


def _cpu(monkeypatch, flags: str, vendor="AuthenticAMD", family="26", mhz="2600.0"):
    text = (
        f"vendor_id\t: {vendor}\ncpu family\t: {family}\nmodel name\t: Test CPU\ncpu MHz\t\t: {mhz}\n"
        f"flags\t\t: {flags}\n"
    )
    hardware._cpuinfo.cache_clear()
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: text)
    monkeypatch.setattr(hardware.Path, "read_text", _no_sysfs(hardware.Path.read_text))
    monkeypatch.setattr(hardware.torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(hardware.platform, "machine", lambda: "x86_64")


def _no_sysfs(read_text):
    def read(self, *args, **kwargs):
        if str(self).startswith("/sys/"):
            raise OSError("no cpufreq")
        return read_text(self, *args, **kwargs)

    return read


@pytest.mark.parametrize(
    ("flags", "family", "fp32", "bf16", "native"),
    [
        ("fma avx2 avx512f avx512_bf16", "26", 64, 128, True),  # Zen 5: full-width AVX-512, AVX512-BF16
        ("fma avx2 avx512f avx512_bf16", "25", 32, 64, True),  # Zen 4: AVX-512 on 256-bit pipes
        ("fma avx2", "23", 32, 32, False),  # AVX2 only: bf16 gains nothing
        ("fma avx2 avx512f amx_bf16 avx512_bf16", "6", 64, 1024, True),  # AMX
        ("sse4_2", "6", 8, 8, False),
    ],
)
def test_the_peak_follows_the_detected_features(monkeypatch, flags, family, fp32, bf16, native):
    _cpu(monkeypatch, flags, vendor="AuthenticAMD" if family in ("23", "25", "26") else "GenuineIntel", family=family)
    peak = hardware.theoretical_peak("cpu")
    assert (peak.fp32_flop_per_cycle, peak.bf16_flop_per_cycle) == (fp32, bf16)
    assert peak.cores == 2 and peak.clock_ghz == pytest.approx(2.6)
    assert peak.fp32_gflops == pytest.approx(2 * fp32 * 2.6) and peak.bf16_gflops == pytest.approx(2 * bf16 * 2.6)
    assert "2.600 GHz" in peak.basis and json.dumps(peak.as_dict())
    assert hardware.native_bf16("cpu") is native


def test_no_clock_means_no_peak(monkeypatch):
    _cpu(monkeypatch, "fma avx2", mhz="unknown")
    peak = hardware.theoretical_peak("cpu")
    assert peak.clock_ghz is None and peak.fp32_gflops is None and "unknown clock" in peak.basis


def test_the_gpu_check_runs_on_the_cpu_as_a_dry_run(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (
        "theoretical peak:",
        "inference, demo ensemble",
        "bf16 / fp32:",
        "training, test_resnet",
        "VisE linear",
        "VisE pretraining",
        "VisE fine-tuning",
        "mining comment encoder",
        "explain=True, demo ensemble",
        "joint member, clip_vision_model towers",
    )
    for line in lines:
        assert line in result.stdout
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["kernels"]["fp32_matmul"] > 0
    assert report["inference"]["fp32"]["memes_per_s"] > 0 and report["inference"]["max_probability_difference"] < 0.05
    assert report["training"]["ours_images_per_s"] > 0 and report["training"]["plain_images_per_s"] > 0
    vise = report["vise_linear"]
    assert vise["workers_0"]["images_per_s"] > 0 and vise["workers_2"]["images_per_s"] > 0
    assert report["vise_pretraining"]["images_per_s"] > 0 and report["vise_pretraining"]["tflops"] > 0
    explained = report["explanations"]
    assert explained["same_answers"] and explained["multiple"] > 1 and explained["heatmaps"] == 9
    assert report["vise_finetune"]["images_per_s"] > 0 and report["mining_encoder"]["comments_per_s"] > 0
    joint = report["joint"]
    assert joint["frozen_images_per_s"] > 0 and joint["finetuned_images_per_s"] > 0
    assert joint["inference_memes_per_s"] > 0
