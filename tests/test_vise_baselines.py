"""The VisE paper's baselines from their public checkpoints: each released layout, converted exactly; wrong files
refused in one line; one preprocessing for every row of a task."""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_memotion.models.vise import ViseConfig, ViseModel
from hf_memotion.models.vise.baselines import (
    CheckpointMismatchError,
    baseline_layout,
    convert_baseline,
    load_baseline,
    read_checkpoint,
)
from hf_memotion.vise.evaluation import load_backbone
from hf_memotion.vise.specs import EvaluationRunSpec


def _network(architecture: str, **model_args) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = ViseModel(ViseConfig(architecture=architecture, model_args=model_args)).timm_model.state_dict()
    return {k: v + torch.rand_like(v.float()).to(v.dtype) if v.is_floating_point() else v for k, v in state.items()}


FIXTURES = Path(__file__).parent / "fixtures"


def _released(kind: str, state: dict[str, torch.Tensor]) -> dict:
    """A synthetic checkpoint in ``kind``'s public layout holding ``state`` (timm names)."""
    if kind == "moco":
        encoder = {f"module.encoder_q.{k}": v for k, v in state.items()}
        head = {"module.encoder_q.fc.0.weight": torch.rand(8, 4), "module.encoder_q.fc.2.weight": torch.rand(4, 8)}
        keys = {f"module.encoder_k.{k}": v for k, v in state.items()}
        return {"epoch": 800, "arch": "resnet50", "state_dict": {**encoder, **head, **keys}}
    if kind == "virtex":
        textual = {"textual.embedding.words.weight": torch.rand(10, 4)}
        return {"model": {**{f"visual.cnn.{k}": v for k, v in state.items()}, **textual}, "iteration": 500000}
    if kind == "icmlm":
        return {"state_dict": {f"module.cnn.{k}": v for k, v in state.items()}}
    raise AssertionError(kind)


def test_icmlm_s_accepted_layout_converts_exactly_and_loads_from_a_file(tmp_path):
    """ICMLM's release could not be read: this checks the layout the converter accepts (its rows say UNVERIFIED)."""
    layout = baseline_layout("icmlm")
    state = _network(layout.architecture, **layout.model_args)
    converted = convert_baseline("icmlm", _released("icmlm", state))
    assert converted.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(converted[key], value), key
    path = tmp_path / "released.pth"
    torch.save(_released("icmlm", state), path)
    model, loaded_layout = load_baseline("icmlm", path)
    assert loaded_layout == layout and model.config.architecture == layout.architecture
    assert torch.equal(model.timm_model.state_dict()["conv1.weight"], state["conv1.weight"])


def _grid_feats_vqa_checkpoint() -> dict:
    """grid-feats-vqa's R-50 checkpoint by its released key list (``fixtures/grid_feats_vqa_r50_keys.txt``, sources
    named there), saved as detectron2's ``Checkpointer`` does: random weights (convolutions He-initialised, FrozenBN
    statistics and affine maps as training leaves them); the detector's heads, never read, at a token size."""
    generator = torch.Generator().manual_seed(0)
    model = {}
    for line in (FIXTURES / "grid_feats_vqa_r50_keys.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, dimensions = line.split()
        shape = tuple(int(n) for n in dimensions.split("x"))
        if not key.startswith("backbone."):
            model[key] = torch.zeros(2)
        elif len(shape) == 4:
            model[key] = torch.randn(shape, generator=generator) * math.sqrt(2.0 / math.prod(shape[1:]))
        elif key.endswith("running_var") or key.endswith("norm.weight"):
            model[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            model[key] = (torch.rand(shape, generator=generator) - 0.5) * 0.2
    return {"model": model, "iteration": 90000}


def _detectron2_resnet50(model: dict[str, torch.Tensor]) -> torch.nn.Module:
    """torchvision's ResNet-50 run as detectron2 runs MSRA's R-50 (the stride in each stage's first 1x1 convolution:
    ``RESNETS.STRIDE_IN_1X1``), its weights found by detectron2's own renaming (``tools/convert-torchvision-to-d2.py``
    applied to torchvision's names); ``fc`` dropped."""
    import torchvision

    network = torchvision.models.resnet50()

    def detectron2_name(key: str) -> str:
        if "layer" not in key:
            key = "stem." + key
        for t in (1, 2, 3, 4):
            key = key.replace(f"layer{t}", f"res{t + 1}")
        for t in (1, 2, 3):
            key = key.replace(f"bn{t}", f"conv{t}.norm")
        return "backbone." + key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")

    wanted = [k for k in network.state_dict() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    network.load_state_dict({k: model[detectron2_name(k)] for k in wanted}, strict=False)
    for stage in (network.layer2, network.layer3, network.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    network.fc = torch.nn.Identity()
    return network.eval()


def test_vqagrid_s_released_checkpoint_gives_detectron2_s_res5_features(tmp_path):
    """grid-feats-vqa's checkpoint (its key list) loads, and the features equal detectron2's R-50 on the same image:
    BGR in 0-255 less detectron2's PIXEL_MEAN, res5 undilated (extract_grid_feature.py sets RES5_DILATION = 1),
    pooled."""
    released = _grid_feats_vqa_checkpoint()
    path = tmp_path / "R-50.pth"
    torch.save(released, path)
    model, layout = load_baseline("vqagrid", path)
    reference = _detectron2_resnet50(released["model"])
    rgb = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    bgr = rgb.flip(1) * 255.0 - torch.tensor([103.530, 116.280, 123.675])[:, None, None]  # detectron2's defaults
    ours_in = (rgb - torch.tensor(layout.mean)[:, None, None]) / torch.tensor(layout.std)[:, None, None]
    with torch.no_grad():
        ours, theirs = model(ours_in).pooler_output, reference(bgr)
    scale = float(theirs.abs().max())
    torch.testing.assert_close(ours, theirs, atol=1e-4 * scale, rtol=1e-4)


def _trained_statistics(network: torch.nn.Module) -> None:
    """Every BatchNorm given statistics and an affine map of its own, as training leaves them (not 0, 1)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for tensor, low, high in (
                    (module.running_mean, -0.1, 0.1),
                    (module.running_var, 0.5, 1.5),
                    (module.weight, 0.5, 1.5),
                    (module.bias, -0.1, 0.1),
                ):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)


@pytest.mark.parametrize("source", ["RN50.safetensors", "RN50.pt", "resnet50_clip.openai"])
def test_clip_rn50_gives_open_clip_s_image_embedding_by_file_and_by_hub_tag(source, tmp_path, monkeypatch):
    """CLIP's row reads CLIP's image embedding: the attention pool and its projection, what encode_image returns.

    By file: open_clip's state dict (OpenAI's ``visual.*`` keys beside the text tower's). By Hub tag: timm's
    ``timm/resnet50_clip.openai`` file as timm makes it (the same weights through timm's own conversion, the
    projection kept as ``head.proj``), read from a Hub cache laid out here, offline.
    """
    import open_clip
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file
    from timm.models.byobnet import checkpoint_filter_fn

    torch.manual_seed(0)
    reference = open_clip.create_model("RN50", pretrained=None).eval()  # OpenAI's layout, random weights
    _trained_statistics(reference.visual)
    state = reference.state_dict()
    assert "visual.attnpool.c_proj.weight" in state and "token_embedding.weight" in state
    if source.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / source)
        source = tmp_path / source
    elif source.endswith(".pt"):
        torch.save(state, tmp_path / source)
        source = tmp_path / source
    else:
        hub_file = checkpoint_filter_fn(state, timm.create_model("resnet50_clip", num_classes=1024))
        snapshot = tmp_path / "hub" / "models--timm--resnet50_clip.openai" / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in hub_file.items()}, snapshot / "model.safetensors")
        (snapshot.parents[1] / "refs").mkdir()
        (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model, layout = load_baseline("clip", source)
    assert layout.embedding_size == 1024 and model.config.embedding_size == 1024
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        ours, theirs = model(images).pooler_output, reference.encode_image(images)
    assert ours.shape == theirs.shape == (2, 1024)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_moco_v2_s_released_layout_gives_the_torchvision_query_encoder_s_features(tmp_path):
    """MoCo-v2's checkpoint as its release writes it (facebookresearch/moco: ``moco/builder.py`` builds a query and
    a key encoder, torchvision ResNet-50s whose ``fc`` is the 2048-2048-128 MLP, and a queue of keys;
    ``main_moco.py`` saves ``{"epoch", "arch", "state_dict", "optimizer"}`` from the DistributedDataParallel-wrapped
    model, hence ``module.``): the features are the query encoder's pooled 2048, projection head dropped."""
    import torchvision

    class MoCo(torch.nn.Module):
        def __init__(self, dim: int = 128, queue: int = 4096):
            super().__init__()
            self.encoder_q = torchvision.models.resnet50(num_classes=dim)
            self.encoder_k = torchvision.models.resnet50(num_classes=dim)
            for encoder in (self.encoder_q, self.encoder_k):
                width = encoder.fc.weight.shape[1]
                encoder.fc = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), encoder.fc)
            self.register_buffer("queue", torch.nn.functional.normalize(torch.randn(dim, queue), dim=0))
            self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    torch.manual_seed(0)
    moco = MoCo().eval()
    _trained_statistics(moco.encoder_q)
    wrapped = torch.nn.DataParallel(moco)  # the same "module." keys as DistributedDataParallel
    optimizer = torch.optim.SGD(moco.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    path = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    torch.save(
        {"epoch": 800, "arch": "resnet50", "state_dict": wrapped.state_dict(), "optimizer": optimizer.state_dict()},
        path,
    )
    model, _ = load_baseline("moco", path)
    moco.encoder_q.fc = torch.nn.Identity()
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        ours, theirs = model(images).pooler_output, moco.encoder_q(images)
    assert ours.shape == theirs.shape == (2, 2048)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_virtex_s_checkpoint_gives_the_torchvision_backbone_s_features(tmp_path):
    """VirTex's checkpoint as its release writes it (kdexd/virtex: ``TorchvisionVisualBackbone`` holds a torchvision
    ResNet-50 as ``cnn``, built with ``zero_init_residual=True``, its average pool and ``fc`` replaced by identities;
    ``CheckpointManager`` saves ``{"model": <visual.* and textual.*>, "optimizer", "iteration"}``): the features are
    that backbone's map, pooled."""
    import torchvision

    class VirTex(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = torch.nn.Module()
            self.visual.cnn = torchvision.models.resnet50(zero_init_residual=True)
            self.visual.cnn.avgpool, self.visual.cnn.fc = torch.nn.Identity(), torch.nn.Identity()
            self.textual = torch.nn.Module()
            self.textual.embedding = torch.nn.Module()
            self.textual.embedding.words = torch.nn.Embedding(100, 16)

    torch.manual_seed(0)
    virtex = VirTex().eval()
    _trained_statistics(virtex.visual.cnn)
    optimizer = torch.optim.SGD(virtex.parameters(), lr=0.02, momentum=0.9)
    path = tmp_path / "bicaptioning_R_50_L1_H2048.pth"
    torch.save({"model": virtex.state_dict(), "optimizer": optimizer.state_dict(), "iteration": 500000}, path)
    model, _ = load_baseline("virtex", path)
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        ours, theirs = model(images).pooler_output, virtex.visual.cnn(images).reshape(2, 2048, 4, 4).mean((2, 3))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_virtex_s_torch_hub_backbone_converts_too():
    state = _network("resnet50")
    assert convert_baseline("virtex", dict(state)).keys() == state.keys()


def test_vqagrid_runs_detectron2_s_network_and_normalisation():
    layout = baseline_layout("vqagrid")
    network = ViseModel(layout.config()).timm_model
    first = network.layer2[0]
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)  # the stride in the 1x1 (STRIDE_IN_1X1)
    # grid-feats-vqa's extract_grid_feature.py: cfg.MODEL.RESNETS.RES5_DILATION = 1 before extracting
    assert network.layer4[0].conv1.stride == (2, 2) and network.layer4[2].conv2.dilation == (1, 1)
    assert network(torch.zeros(1, 3, 224, 224)).shape[-1] == 2048 and network.forward_features(
        torch.zeros(1, 3, 224, 224)
    ).shape[-2:] == (7, 7)  # stride 32, as extracted
    trained = ViseModel(ViseConfig(architecture="resnet50_d2", model_args={"output_stride": 16})).timm_model
    assert trained.layer4[0].conv2.dilation == (2, 2) == trained.layer4[2].conv2.dilation  # as the detector trained
    pixel = torch.tensor([[[[0.5]], [[0.5]], [[0.5]]]])  # an RGB value of 127.5 in every channel
    normalised = (pixel - torch.tensor(layout.mean)[:, None, None]) / torch.tensor(layout.std)[:, None, None]
    torch.testing.assert_close(normalised.flatten(), torch.tensor([127.5 - 123.675, 127.5 - 116.28, 127.5 - 103.53]))


@pytest.mark.parametrize(
    ("kind", "released_as", "message"),
    [
        ("virtex", "moco", "not a virtex ResNet checkpoint: missing 'conv1.weight'"),
        ("moco", "virtex", "not a moco checkpoint: no key starts with 'module.encoder_q.'"),
        ("vqagrid", "moco", "not a vqagrid checkpoint: no key starts with 'backbone.'"),
        ("icmlm", "vqagrid", "not a icmlm checkpoint: no torchvision ResNet keys"),
    ],
)
def test_a_checkpoint_of_another_kind_is_refused_in_one_line(kind, released_as, message):
    layout = baseline_layout(released_as)
    if released_as == "vqagrid":
        released = _grid_feats_vqa_checkpoint()
    else:
        released = _released(released_as, _network(layout.architecture, **layout.model_args))
    with pytest.raises(CheckpointMismatchError, match=re.escape(message)) as caught:
        convert_baseline(kind, released)
    assert "\n" not in str(caught.value)


def test_a_wrong_shape_or_missing_tensor_is_named():
    state = _network("resnet50")
    broken = _released("moco", {**state, "layer1.0.conv1.weight": torch.rand(3, 3)})
    with pytest.raises(CheckpointMismatchError, match=r"'layer1\.0\.conv1\.weight' is \(3, 3\), expected"):
        convert_baseline("moco", broken)
    del state["layer4.2.bn3.running_var"]
    with pytest.raises(CheckpointMismatchError, match=r"missing 'layer4\.2\.bn3\.running_var'"):
        convert_baseline("moco", _released("moco", state))


def test_no_pickle_runs_and_a_torchscript_archive_is_refused(tmp_path):
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(scripted, tmp_path / "RN50.pt")
    assert zipfile.is_zipfile(tmp_path / "RN50.pt")
    with pytest.raises(CheckpointMismatchError, match="TorchScript archive"):
        read_checkpoint(tmp_path / "RN50.pt")
    torch.save({"state_dict": {"x": torch.zeros(1)}, "code": Image.new("RGB", (2, 2))}, tmp_path / "object.pth")
    with pytest.raises(CheckpointMismatchError, match="not a tensors-only PyTorch checkpoint"):
        read_checkpoint(tmp_path / "object.pth")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        load_baseline("moco", tmp_path / "absent.pth.tar")


def test_every_row_of_a_task_gets_the_same_transforms(tmp_path):
    """One preprocessing: a VisE folder saved with other transforms, a random and a baseline backbone see the same
    pixels of a meme (each normalised with its own statistics)."""
    from hf_memotion.models.vision import MemotionImageProcessor

    ViseModel(ViseConfig(architecture="test_resnet")).save_pretrained(tmp_path / "vise")
    own = MemotionImageProcessor(crop_size=48, crop_pct=0.95, interpolation="bicubic", mean=(0.1, 0.2, 0.3))
    own.save_pretrained(tmp_path / "vise")
    torch.save(_released("moco", _network("resnet50")), tmp_path / "moco.pth.tar")
    spec = EvaluationRunSpec.from_dict(
        {
            "backbones": {
                "vise": str(tmp_path / "vise"),
                "random": "random:test_resnet",
                "moco": f"moco:{tmp_path / 'moco.pth.tar'}",
            },
            "reference": {"test_resnet": "random", "resnet50": "moco"},
            "image_size": 48,
            "tasks": [{"format": "cub", "path": "data/cub", "preprocessing": {"crop_pct": 0.8}}],
        }
    )
    assert spec.reference_of("vise") == "random" and spec.reference_of("moco") == "moco"
    task = spec.tasks[0]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    seen = []
    for name, backbone in spec.backbones.items():
        loaded = load_backbone(name, backbone.source, image_size=spec.image_size)
        processor = loaded.with_preprocessing(**spec.task_preprocessing(task)).processor
        pixels = processor.eval_transform(ten_crop=False)(image)
        mean, std = torch.tensor(processor.mean)[:, None, None], torch.tensor(processor.std)[:, None, None]
        seen.append(pixels * std + mean)  # the pixels before each backbone's own normalisation
        assert (processor.crop_pct, processor.interpolation) == (0.8, "bilinear")
    assert all(torch.allclose(other, seen[0], atol=1e-5) for other in seen[1:])
