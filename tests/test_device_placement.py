"""Every compute path runs where it is asked to, checked on the CPU with the ``meta`` device.

How: each path is driven with its device set to ``meta`` (tensors with shapes and no data). torch refuses to mix a
``meta`` tensor with a CPU one ("Tensor on device meta is not on the expected device cpu"), so a path that leaves a
model, a batch or a classifier on the CPU fails here. A path that ends by copying its result to the CPU as numbers
(features, scores) stops at that copy, which ``meta`` cannot do: the test accepts exactly that error, after
checking the forward pass ran on ``meta``. A model that reads values (the text encoder) is stopped as it is called,
once its inputs' device is recorded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate import PartialState

import hf_memotion  # noqa: F401
from hf_memotion.data.downstream import read_task
from hf_memotion.data.downstream_demo import make_demo_downstream
from hf_memotion.vise import evaluation
from hf_memotion.vise.text_encoder import TextEncoder

META = torch.device("meta")


def _until_the_copy_out(fn):
    """Run ``fn``; the one error allowed is the final copy of a ``meta`` result to the CPU."""
    try:
        return fn()
    except NotImplementedError as err:
        assert "meta" in str(err), err
        return None


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    root = make_demo_downstream(tmp_path_factory.mktemp("cub"), "cub", n_per_class=4, image_size=24)
    return read_task("cub", root)


@pytest.fixture
def backbone():
    return evaluation.load_backbone("random", "random:test_resnet", image_size=24, device=META)


def _record_inputs(module: torch.nn.Module) -> list[torch.device]:
    """The device of the first tensor each call of ``module`` receives."""
    seen: list[torch.device] = []

    def record(_, args, kwargs):
        tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
        seen.append(tensors[0].device)

    module.register_forward_pre_hook(record, with_kwargs=True)
    return seen


def test_the_backbone_loads_on_the_device_asked(backbone):
    assert {p.device for p in backbone.model.parameters()} == {META}


def test_cached_features_are_computed_on_the_device(backbone, cub):
    seen = _record_inputs(backbone.model)
    _until_the_copy_out(lambda: evaluation._features(backbone, cub.repeats[0]["test"], 8))
    assert seen and set(seen) == {META}


def test_the_linear_probe_on_cached_features_trains_on_the_device():
    settings = evaluation.ProtocolArguments(batch_size=4, epochs=2)
    features = (np.random.default_rng(0).random((12, 8), dtype=np.float32), np.arange(12) % 3)
    layer = evaluation._fit_linear(features, 3, (0.025, 0.001), settings, adamw=False, device=META)
    assert layer.weight.device == META
    _until_the_copy_out(lambda: evaluation._score_layer(layer, {"test": features}, "accuracy"))


def test_the_augmented_linear_probe_trains_every_grid_point_on_the_device(backbone, cub):
    settings = evaluation.ProtocolArguments(batch_size=8, epochs=1)
    points = [(0.025, 0.001), (0.0025, 0.01)]
    text = np.zeros((len(cub.repeats[0]["train"]), 4), dtype=np.float32)  # a frozen text embedding beside the image
    seen = _record_inputs(backbone.model)
    layers = evaluation._fit_linear_augmented(backbone, cub.repeats[0]["train"], text, 6, points, settings, False)
    assert set(seen) == {META} and all(layer.weight.device == META for layer in layers)


class _Stop(Exception):
    """Raised by a hook once the inputs are seen: the model itself cannot run on ``meta`` (it reads values)."""


def test_the_text_encoder_encodes_on_the_device():
    encoder = TextEncoder("tiny:bert", corpus=["a kind meme", "a hateful meme"], device=META)
    assert encoder.device == META and {p.device for p in encoder.model.parameters()} == {META}
    seen: list[torch.device] = []

    def stop(_, args, kwargs):
        seen.extend(v.device for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor))
        raise _Stop

    encoder.model.register_forward_pre_hook(stop, with_kwargs=True)
    with pytest.raises(_Stop):
        encoder.encode(["a kind meme"])
    assert seen and set(seen) == {META}  # token ids and attention mask moved to the encoder's device


def test_the_mining_comment_encoder_runs_on_the_device_of_this_run(monkeypatch):
    from hf_memotion.vise import text_encoder
    from hf_memotion.vise.cluster_models import ClusterModels
    from hf_memotion.vise.mining_steps import MiningSpec

    made = []

    class Recording:
        def __init__(self, source, max_length=64, device="cpu", **kwargs):
            made.append(device)

        def encode(self, texts):
            return np.ones((len(texts), 4), dtype=np.float32)

    monkeypatch.setattr(text_encoder, "TextEncoder", Recording)
    settings = {"comment_encoder": "tiny:bert", "encoder_device": "cuda:1"}
    models = ClusterModels(None, np.zeros((2, 4)), np.zeros((2, 5)), settings=settings)
    models.embed_comments(["wow"])
    assert made == ["cuda:1"]
    assert MiningSpec(encoder_device="cuda").key() == MiningSpec().key()  # a run may resume on another device


def _stop_and_record(module: torch.nn.Module, seen: list[torch.device]) -> None:
    def stop(_, args, kwargs):
        seen.extend(v.device for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor))
        raise _Stop

    module.register_forward_pre_hook(stop, with_kwargs=True)


def test_the_ensemble_feeds_each_base_model_on_its_device(synthetic):
    """What the pipeline (predict.py, the Space) and the held-out bf16 check run: inputs go where the model is."""
    import datasets
    from PIL import Image

    from conftest import build_tiny_ensemble
    from hf_memotion.ensemble.inference_dtype import check_inference_dtype

    ensemble = build_tiny_ensemble(synthetic)
    first = ensemble.config.base_models[0]["name"]  # the first model the ensemble runs: its call is stopped
    batch = ensemble.processor([Image.new("RGB", (40, 40))], ["lol"], ten_crop=False)
    seen: list[torch.device] = []
    _stop_and_record(ensemble.base_models[first].to(META), seen)
    with pytest.raises(_Stop):
        ensemble.probabilities_from_inputs(batch)
    assert seen and set(seen) == {META}
    # the held-out check moves each base model it loads onto the device it is given, and its inputs with it
    fresh = build_tiny_ensemble(synthetic)
    entry = fresh.config.base_models[0]
    loaded, prep = fresh.base_models[entry["name"]], fresh.preprocessors[entry["name"]]
    seen = []
    _stop_and_record(loaded, seen)
    held_out = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (40, 40))], "text": ["lol"], **{p: [0] for p in fresh.config.problems}}
    )
    with pytest.raises(_Stop):
        check_inference_dtype(fresh, held_out, load=lambda e: (loaded, prep), device=META)
    assert seen and set(seen) == {META} and {p.device for p in loaded.parameters()} == {META}


def test_every_arguments_builder_runs_with_a_gpu_machine_simulated_and_device_cpu(monkeypatch, tmp_path, cub):
    """``device: cpu`` on a GPU machine: the builder takes ``use_cpu`` itself (it once got it twice and crashed)."""
    from hf_memotion.training.arguments import ClassifierTrainingArguments, build_training_arguments
    from hf_memotion.vise.pretraining import PretrainingArguments

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert build_training_arguments(tmp_path / "a", batch_size=8, use_cpu=True).use_cpu
    protocol = evaluation.ProtocolArguments(batch_size=8, epochs=1, base_learning_rates=[0.025], weight_decays=[0.01])
    args = protocol.to_training_arguments(
        tmp_path / "b", learning_rate=0.01, weight_decay=0.0, adamw=False, use_cpu=True
    )
    assert args.use_cpu and args.optim.value == "sgd"
    # every typed section's one method takes the same switch, and a stock field its section sets wins over the
    # library's value instead of arriving twice
    classifier = ClassifierTrainingArguments.from_dict({"save_total_limit": 3})
    made = classifier.to_training_arguments(tmp_path / "c", with_eval=True, use_cpu=True)
    assert made.use_cpu and made.save_total_limit == 3
    pretraining = PretrainingArguments.from_dict({"save_total_limit": 5, "batch_size": 8})
    made = pretraining.to_training_arguments(tmp_path / "d", max_steps=10, use_cpu=True)
    assert made.use_cpu and made.save_total_limit == 5
    # and the fine-tuning protocol end to end, on the CPU as the run asked
    cpu = evaluation.load_backbone("random", "random:test_resnet", image_size=24, device="cpu")
    result = evaluation.evaluate_backbone(cpu, cub, "finetune", protocol, tmp_path / "run")
    assert result["protocol"] == "finetune" and {p.device.type for p in cpu.model.parameters()} == {"cpu"}
    assert torch.device(PartialState().device).type == "cpu"  # the training ran on the CPU, as asked
