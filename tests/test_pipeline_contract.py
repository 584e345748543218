"""``pipeline("meme-emotion")`` as transformers users call it: every input kind, streaming, workers, loading
options, saving, and memes without text (OCR)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline
from transformers.pipelines.pt_utils import KeyDataset

from hf_memotion.data import make_demo_data
from hf_memotion.data.memotion import load_memotion
from hf_memotion.ensemble import MemotionEnsembleModel
from hf_memotion.pipelines import MemeInputError

N_STREAM = 500


@pytest.fixture(scope="module")
def pipe(saved_ensemble):
    return pipeline("meme-emotion", model=str(saved_ensemble))


@pytest.fixture(scope="module")
def stream_root(tmp_path_factory):
    """500 demo memes (384-pixel images: 500 decoded at once would take over 200 MB)."""
    return make_demo_data(
        tmp_path_factory.mktemp("stream") / "data", n_train=N_STREAM, n_test=0, seed=5, image_size=384
    )


@pytest.fixture(scope="module")
def demo_memes(stream_root):
    return load_memotion(stream_root, verify_images=False)["train"].select_columns(["image", "text"])


class _Answers(list):
    """Submissions equal, probabilities within 1e-5 (batches of other shapes round differently in the last bits)."""

    def __eq__(self, other):
        return [s for s, _ in self] == [s for s, _ in other] and np.allclose(
            [p for _, p in self], [p for _, p in other], rtol=0, atol=1e-5
        )

    __hash__ = None


def _answers(results):
    return _Answers((r["submission"], r["sentiment"]["scores"]["positive"]) for r in results)


def test_a_generator_a_dataset_and_workers_give_the_list_results(pipe, demo_memes):
    rows = demo_memes.select(range(120))
    as_list = pipe([{"image": row["image"], "text": row["text"]} for row in rows], batch_size=8, ten_crop=False)
    streamed = pipe(({"image": row["image"], "text": row["text"]} for row in rows), batch_size=8, ten_crop=False)
    assert not isinstance(streamed, list)  # an iterator: results come as batches finish
    assert _answers(streamed) == _answers(as_list)
    assert _answers(pipe(rows, batch_size=8, ten_crop=False)) == _answers(as_list)  # a datasets.Dataset
    assert _answers(pipe(rows, batch_size=8, num_workers=2, ten_crop=False)) == _answers(as_list)
    assert _answers(pipe(rows.to_list(), batch_size=5, num_workers=2, ten_crop=False)) == _answers(as_list)
    assert [r["text"] for r in as_list] == rows["text"] and {r["text_source"] for r in as_list} == {"given"}


@pytest.mark.slow
def test_streaming_500_memes_gives_the_list_results_with_memory_bounded_by_the_batch(saved_ensemble, stream_root):
    """Peak memory of streaming 500 memes stays within 64 MB of streaming 20 (decoding all 500 takes > 200 MB)."""
    code = textwrap.dedent(f"""
        import json, sys
        from transformers import pipeline
        import hf_memotion
        from hf_memotion.benchmarking import peak_rss_bytes
        from hf_memotion.data.memotion import load_memotion
        rows = load_memotion({str(stream_root)!r}, verify_images=False)["train"]
        rows = rows.select_columns(["image", "text"]).select(range(int(sys.argv[1])))
        pipe = pipeline("meme-emotion", model={str(saved_ensemble)!r})
        if sys.argv[2] == "generator":
            memes = ({{"image": row["image"], "text": row["text"]}} for row in rows)
        else:
            memes = rows
        answers = [(r["submission"], r["sentiment"]["score"]) for r in pipe(memes, batch_size=8, ten_crop=False)]
        print(json.dumps({{"peak": peak_rss_bytes(), "answers": answers}}))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MEMOTION_PROGRESS": "0"}

    def run(n, kind):
        out = subprocess.run(
            [sys.executable, "-c", code, str(n), kind], capture_output=True, text=True, env=env, timeout=600
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    small, generator, dataset = run(20, "generator"), run(N_STREAM, "generator"), run(N_STREAM, "dataset")
    assert len(generator["answers"]) == N_STREAM and generator["answers"] == dataset["answers"]
    assert generator["answers"][:20] == small["answers"]
    bound = 64 * 2**20
    print(
        f"peak RSS: 20 memes {small['peak'] / 2**20:.0f} MB, {N_STREAM} streamed {generator['peak'] / 2**20:.0f} MB "
        f"(generator), {dataset['peak'] / 2**20:.0f} MB (datasets.Dataset)"
    )
    assert generator["peak"] - small["peak"] < bound
    assert dataset["peak"] - small["peak"] < bound


def test_torch_datasets_and_key_datasets_are_read_lazily(pipe):
    class Memes(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"image": Image.new("RGB", (40, 40), (i * 40, 0, 0)), "text": f"meme {i}"}

    direct = list(pipe(Memes(), batch_size=2))
    assert len(direct) == 5
    assert _answers(direct) == _answers(pipe([Memes()[i] for i in range(5)], batch_size=2))
    keyed = list(pipe(KeyDataset([{"meme": Memes()[i]} for i in range(5)], "meme"), batch_size=3))
    assert _answers(keyed) == _answers(direct)


def test_bad_memes_in_a_stream_are_named_or_returned(pipe):
    memes = [{"image": Image.new("RGB", (30, 30)), "text": "ok"}, {"text": "no image"}, {"image": b"junk", "text": "x"}]
    with pytest.raises(MemeInputError, match="meme 1 lacks image"):
        list(pipe(iter(memes)))
    returned = list(pipe((m for m in memes + memes[:1]), errors="return", batch_size=2))
    assert [set(r) == {"error"} for r in returned] == [False, True, True, False]
    assert "meme 2: " in returned[2]["error"] and returned[0]["submission"] == returned[3]["submission"]
    with pytest.raises(MemeInputError, match="columns .*'image' column"):
        pipe(__import__("datasets").Dataset.from_dict({"picture": ["a.png"], "text": ["x"]}))
    for bad in ("just a string", 5, Image.new("RGB", (4, 4))):
        with pytest.raises(MemeInputError, match="pass a meme dict"):
            pipe(bad)


def test_unknown_options_and_bad_batching_are_errors(pipe, saved_ensemble):
    meme = {"image": Image.new("RGB", (30, 30)), "text": "ok"}
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['top_k'\]"):
        pipe(meme, top_k=3)
    with pytest.raises(TypeError, match="top_k"):
        pipeline("meme-emotion", model=str(saved_ensemble), top_k=3)
    for size in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            pipe([meme], batch_size=size)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        pipeline("meme-emotion", model=str(saved_ensemble), batch_size=0)
    with pytest.raises(ValueError, match="num_workers must be a non-negative integer"):
        pipe([meme], num_workers=-1)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['bogus'\]"):
        MemotionEnsembleModel.from_pretrained(saved_ensemble, bogus=1)
    with pytest.raises(ValueError, match="bogus"):  # transformers' loader reports our message in its own
        pipeline("meme-emotion", model=str(saved_ensemble), model_kwargs={"bogus": 1})
    with pytest.raises(ValueError, match="never runs code from its folder"):
        MemotionEnsembleModel.from_pretrained(saved_ensemble, trust_remote_code=True)


def test_dtype_and_device_map_reach_every_base_model(saved_ensemble):
    meme = {"image": Image.new("RGB", (30, 30), (90, 10, 10)), "text": "when the exam is on monday"}
    reference = pipeline("meme-emotion", model=str(saved_ensemble))(meme)
    bf16 = pipeline("meme-emotion", model=str(saved_ensemble), dtype=torch.bfloat16)
    assert {m.dtype for m in bf16.model.base_models.values()} == {torch.bfloat16}
    answer = bf16(meme)
    assert answer["sentiment"]["scores"] == pytest.approx(reference["sentiment"]["scores"], abs=0.05)
    old_name = pipeline("meme-emotion", model=str(saved_ensemble), torch_dtype=torch.bfloat16)
    assert {m.dtype for m in old_name.model.base_models.values()} == {torch.bfloat16}
    loaded = MemotionEnsembleModel.from_pretrained(
        saved_ensemble, dtype=torch.bfloat16, device_map="cpu", revision=None
    )
    assert {(m.dtype, m.device.type) for m in loaded.base_models.values()} == {(torch.bfloat16, "cpu")}
    quantized = pipeline("meme-emotion", model=str(saved_ensemble), model_kwargs={"quantize_text": True})
    assert quantized.model.base_models["text"].quantized


def test_pipeline_save_pretrained_round_trips_and_leaves_the_model_alone(pipe, tmp_path):
    memes = [{"image": Image.new("RGB", (40, 40), (i * 50, 20, 0)), "text": f"meme number {i}"} for i in range(4)]
    before = pipe.model.config.to_dict()
    pipe.save_pretrained(tmp_path / "saved")
    assert pipe.model.config.to_dict() == before
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert "custom_pipelines" not in config and not list((tmp_path / "saved").glob("*.py"))
    again = pipeline("meme-emotion", model=str(tmp_path / "saved"))
    assert _answers(again(memes)) == _answers(pipe(memes))
    pipe.model.save_pretrained(tmp_path / "model")  # the live model still saves and loads
    assert _answers(pipeline("meme-emotion", model=str(tmp_path / "model"))(memes)) == _answers(pipe(memes))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        pipe.save_pretrained(tmp_path / "file")


# Memes without text: read off the image -----------------------------------------------------------------


def test_a_meme_without_text_has_its_caption_read_from_the_image(pipe, ocr):
    from hf_memotion.data.meme_rendering import render_meme
    from hf_memotion.data.ocr import word_accuracy

    image = render_meme("when the exam is on monday", "and you studied nothing", seed=3)
    answer = pipe({"image": image})
    assert answer["text_source"] == "ocr" and answer["submission"]
    assert word_accuracy("when the exam is on monday and you studied nothing", answer["text"]) >= 0.8
    assert answer["text"] == answer["text"].lower()
    assert pipe({"image": image, "text": None})["text"] == answer["text"]
    assert pipe({"image": image, "text": "typed"})["text_source"] == "given"
    assert "OMP_THREAD_LIMIT" not in os.environ  # Tesseract's one-thread limit does not outlive its call
    with pytest.raises(MemeInputError, match="meme 0 lacks text"):
        pipe({"image": image}, ocr=False)


def test_the_caption_mask_reads_rendered_memes_far_better_than_the_grey_image(ocr):
    import pytesseract

    from hf_memotion.data.meme_rendering import random_caption, render_meme
    from hf_memotion.data.ocr import read_meme_text, word_accuracy

    rng = np.random.default_rng(11)
    ours, grey = [], []
    for i in range(8):
        top, bottom = random_caption(rng), random_caption(rng)
        image = render_meme(
            top, bottom, size=[(480, 480), (320, 320)][i % 2], background="flat" if i % 3 == 0 else "photo", seed=50 + i
        )
        ours.append(word_accuracy(f"{top} {bottom}", read_meme_text(image)))
        grey.append(word_accuracy(f"{top} {bottom}", pytesseract.image_to_string(image.convert("L"), config="--psm 6")))
    print(f"word accuracy: caption mask {np.mean(ours):.3f}, grey image {np.mean(grey):.3f}")
    assert np.mean(ours) >= 0.85 and np.mean(ours) > np.mean(grey)


def test_load_memotion_reads_blank_texts_from_the_images_on_request(tmp_path, ocr):
    from conftest import TRAIN_HEADER, write_csv
    from hf_memotion.data.meme_rendering import render_meme

    root = tmp_path / "memotion_dataset_7k"
    (root / "images").mkdir(parents=True)
    captions = ["nobody literally every teacher ever", "", "me trying to explain"]
    rows = []
    for i, caption in enumerate(captions):
        render_meme(caption or "that moment you realize", seed=i).save(root / "images" / f"image_{i}.png")
        rows.append(
            [str(i), f"image_{i}.png", caption, "", "funny", "general", "not_offensive", "motivational", "positive"]
        )
    write_csv(root / "labels.csv", TRAIN_HEADER, rows)
    plain = load_memotion(root)["train"]
    assert plain["text"][1] == ""
    filled = load_memotion(root, read_missing_text=True)["train"]
    assert filled["text"][0] == captions[0] and filled["text"][2] == captions[2]  # given texts are kept
    assert "moment" in filled["text"][1] and filled["text_raw"][1] == filled["text"][1]


def test_ocr_missing_is_a_message_saying_what_to_install(monkeypatch, pipe):
    import hf_memotion.data.ocr as ocr_module

    check = ocr_module.check_ocr_available
    monkeypatch.setattr(ocr_module.shutil, "which", lambda cmd: None)
    check.cache_clear()
    try:
        with pytest.raises(MemeInputError, match=r"cannot be read from the image: .*tesseract-ocr"):
            pipe({"image": Image.new("RGB", (30, 30))})
        with pytest.raises(ocr_module.OCRUnavailableError, match="(pytesseract|tesseract program) is not"):
            load_memotion("unused", read_missing_text=True)
    finally:
        check.cache_clear()
