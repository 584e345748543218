import io

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification

import hf_memotion  # noqa: F401  (registers Auto classes and timm's polynet)
from hf_memotion.data import ImageDecodeError
from hf_memotion.models.vision import (
    MemotionImageProcessor,
    MemotionVisionConfig,
    MemotionVisionForImageClassification,
    MemotionVisionModel,
    convert_polynet_state_dict,
)

PAPER_ARCHITECTURES = ["inception_resnet_v2", "polynet", "legacy_senet154", "pnasnet5large"]


def _tiny(problems=("sentiment", "humour_intensity")):
    torch.manual_seed(0)
    config = MemotionVisionConfig(architecture="test_resnet", problems=list(problems))
    return MemotionVisionForImageClassification(config).eval(), MemotionImageProcessor.from_timm(
        "test_resnet", crop_size=64
    )


def _images(n=2):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)) for _ in range(n)]


def _round_trip(model, processor, tmp_path, pixel_values):
    with torch.no_grad():
        expected = model(pixel_values).logits
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is MemotionVisionForImageClassification
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is MemotionImageProcessor
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(pixel_values).logits, expected
        )  # float tolerance: CPU kernels may reorder sums
    return loaded


def test_tiny_timm_model_round_trips_with_its_processor(tmp_path):
    model, processor = _tiny()
    pixel_values = processor(_images())["pixel_values"]
    _round_trip(model, processor, tmp_path, pixel_values)
    reloaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == processor.to_dict() and reloaded.crop_size == 64
    config = (tmp_path / "config.json").read_text()
    assert '"auto_map"' not in config and '"test_resnet"' in config and not list(tmp_path.glob("*.py"))
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert type(base) is MemotionVisionModel
    with torch.no_grad():
        assert base(pixel_values).pooler_output.shape == (2, model.timm_model.num_features)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", PAPER_ARCHITECTURES)
def test_paper_architectures_round_trip_with_random_weights(tmp_path, architecture):
    torch.manual_seed(0)
    model = MemotionVisionForImageClassification(MemotionVisionConfig(architecture=architecture, problems=["humour"]))
    processor = MemotionImageProcessor.from_timm(architecture)
    assert processor.crop_size == {"inception_resnet_v2": 299, "polynet": 331}.get(architecture, processor.crop_size)
    pixel_values = processor(_images(1), ten_crop=False)["pixel_values"]
    _round_trip(model.eval(), processor, tmp_path, pixel_values)


def test_ten_crop_is_the_mean_of_per_crop_log_probabilities():
    model, processor = _tiny()
    crops = processor(_images(2), ten_crop=True)["pixel_values"]
    assert crops.shape == (2, 10, 3, 64, 64)
    with torch.no_grad():
        out = model(crops)
        for b in range(2):
            singles = [model(crops[b, k : k + 1]).problem_logits for k in range(10)]
            for problem in ("sentiment", "humour_intensity"):
                expected = torch.stack([s[problem].log_softmax(-1)[0] for s in singles]).mean(0)
                torch.testing.assert_close(out.problem_logits[problem][b], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        out.problem_logits["sentiment"].exp().sum(-1) <= 1.0 + 1e-6, torch.ones(2, dtype=torch.bool)
    )
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\) or \(batch, crops, 3, H, W\)"):
        model(torch.zeros(3, 64, 64))


def test_polynet_is_registered_in_timm_with_the_original_size():
    model = timm.create_model("polynet")
    n_parameters = sum(p.numel() for p in model.parameters())
    assert 95_000_000 < n_parameters < 96_000_000  # the original: about 95 million with 1000 classes
    assert timm.data.resolve_data_config({}, model=model)["input_size"] == (3, 331, 331)
    assert model.stage_a[0].scale == 1.0 and model.stage_c[-1].scale == pytest.approx(0.7)
    with torch.no_grad():
        assert timm.create_model("polynet", num_classes=0).eval()(torch.zeros(1, 3, 331, 331)).shape == (1, 2048)


# Keys and shapes of the public `pretrainedmodels` PolyNet ImageNet checkpoint (polynet-c8b99e1f.pth),
# read off its module definition: stem, 2-way units (`blocks.N`), poly-3 units (shared conv, `bn_blocks.N`).
CHECKPOINT_SPOT_KEYS = {
    "stem.conv1.0.conv.weight": (32, 3, 3, 3),
    "stem.conv2_long.1.conv.weight": (64, 64, 7, 1),
    "stem.conv2_branch.bn.running_var": (192,),
    "stage_a.9.blocks.1.path0.2.conv.weight": (64, 48, 3, 3),
    "stage_a.0.blocks.0.conv2d.conv.weight": (384, 128, 1, 1),
    "reduction_a.path1.conv.weight": (384, 384, 3, 3),
    "stage_b.0.path0_1x7.conv.weight": (160, 128, 1, 7),
    "stage_b.0.path0_7x1.bn_blocks.2.weight": (192,),
    "stage_b.1.blocks.1.path0.1.conv.weight": (160, 128, 1, 7),
    "stage_b.18.conv2d_blocks.2.conv.weight": (1152, 384, 1, 1),
    "reduction_b.path2.1.conv.weight": (384, 256, 3, 3),
    "stage_c.0.path0_3x1.conv.weight": (256, 224, 3, 1),
    "stage_c.9.blocks.0.conv2d.conv.weight": (2048, 448, 1, 1),
    "last_linear.weight": (1000, 2048),
    "last_linear.bias": (1000,),
}
# 357 conv+BN units (6 keys each with num_batches_tracked), 60 shared convs with 3 BatchNorms each (16 keys),
# the classifier (2): 3104 keys; the checkpoint predates num_batches_tracked: 3104 - (357 + 180) = 2567.
N_CHECKPOINT_KEYS = 2567


@pytest.fixture(scope="module")
def polynet_checkpoint():
    reference = timm.create_model("polynet")
    generator = torch.Generator().manual_seed(0)
    state = {
        f"module.{k}": torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
        for k, v in reference.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    for key in state:
        if key.endswith("running_var"):
            state[key] = state[key].abs() + 0.5
    return state


def test_polynet_converter_checks_every_key_and_shape_of_the_public_checkpoint(polynet_checkpoint, tmp_path):
    assert len(polynet_checkpoint) == N_CHECKPOINT_KEYS
    for key, shape in CHECKPOINT_SPOT_KEYS.items():
        assert tuple(polynet_checkpoint[f"module.{key}"].shape) == shape, key
    model = timm.create_model("polynet").eval()
    converted = convert_polynet_state_dict(polynet_checkpoint, model)
    model.load_state_dict(converted)
    assert torch.equal(model.stem.conv1[0].conv.weight, polynet_checkpoint["module.stem.conv1.0.conv.weight"])
    # timm's own pretrained mechanism with a local file, fine-tuning head of 3 classes
    path = tmp_path / "polynet-c8b99e1f.pth"
    torch.save(polynet_checkpoint, path)
    overlay = {"file": str(path)}
    finetune = timm.create_model("polynet", pretrained=True, num_classes=3, pretrained_cfg_overlay=overlay)
    assert finetune.last_linear.out_features == 3
    assert torch.equal(
        finetune.stage_b[4].path1.bn_blocks[1].running_mean, model.stage_b[4].path1.bn_blocks[1].running_mean
    )
    bad = dict(polynet_checkpoint)
    bad["module.stage_c.0.path1.conv.weight"] = torch.zeros(3, 3)
    bad["module.extra.weight"] = torch.zeros(1)
    del bad["module.stem.conv1.0.bn.weight"]
    with pytest.raises(
        ValueError, match=r"1 missing .*stem.conv1.0.bn.weight.*1 unexpected.*extra.weight.*stage_c.0.path1"
    ):
        convert_polynet_state_dict(bad, model)


def test_pretrained_weights_through_timm_from_a_local_file(tmp_path):
    source = timm.create_model("test_resnet")  # with its 1000-class classifier, as a released checkpoint
    path = tmp_path / "test_resnet.safetensors"
    save_file(source.state_dict(), str(path))
    model = MemotionVisionForImageClassification.from_timm(
        "test_resnet", pretrained_cfg_overlay={"file": str(path)}, problems=["humour"]
    )
    loaded = model.timm_model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items() if k in loaded)
    assert not any(k.startswith("fc.") or k.startswith("head.fc") for k in loaded)  # ImageNet classifier replaced
    assert model.heads.classifiers["humour"].out_features == 2


def test_processor_uses_the_model_input_size_and_augments_for_training():
    processor = MemotionImageProcessor.from_timm("inception_resnet_v2")
    assert (processor.crop_size, processor.mean) == (299, [0.5, 0.5, 0.5])
    small = MemotionImageProcessor(crop_size=48)
    torch.manual_seed(0)
    train = small(_images(1) * 2, train=True)["pixel_values"]
    assert train.shape == (2, 3, 48, 48) and not torch.equal(train[0], train[1])  # random augmentation
    evaluation = small(_images(1) * 2, ten_crop=False)["pixel_values"]
    assert torch.equal(evaluation[0], evaluation[1])  # deterministic


def _encoded(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_processor_converts_or_refuses_every_awkward_image(tmp_path):
    processor = MemotionImageProcessor(crop_size=32)
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 250, 0, 0] + [0] * 762)
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:], loop=0)
    convertible = {
        "cmyk": _encoded(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG"),
        "rgba": _encoded(Image.new("RGBA", (40, 40), (255, 0, 0, 0)), "PNG"),
        "palette": _encoded(palette, "PNG"),
        "animated": animated.getvalue(),
        "grey": _encoded(Image.new("L", (40, 40), 128), "PNG"),
    }
    for name, data in convertible.items():
        assert processor(data, ten_crop=False)["pixel_values"].shape == (1, 3, 32, 32), name
    jpeg = _encoded(Image.new("RGB", (64, 64)), "JPEG")
    (tmp_path / "empty.jpg").write_bytes(b"")
    refused = {
        "corrupt": b"definitely not an image",
        "truncated": jpeg[: len(jpeg) // 2],
        "empty": tmp_path / "empty.jpg",
        "bomb": _encoded(Image.new("1", (20000, 20000)), "PNG"),
    }
    for name, data in refused.items():
        with pytest.raises(ImageDecodeError):
            processor(data)
            pytest.fail(f"{name} was accepted")
    with pytest.raises(ValueError, match="no images"):
        processor([])
