"""The Gradio Space as a user meets it: launched on 127.0.0.1, called with gradio_client and driven in a
real headless Chromium (playwright with Debian's chromium)."""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

gr = pytest.importorskip("gradio")  # the `space` extra; `make test` installs it
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from hf_memotion.tasks import EMOTIONS, decode_submission, get_problem  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("HF_MEMOTION_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def load_app(model: Path | str, **env: str):
    """Import space/app.py as a fresh module with MEMOTION_* settings (it reads them at import)."""
    saved = dict(os.environ)
    os.environ.update({"MEMOTION_MODEL": str(model), "GRADIO_ANALYTICS_ENABLED": "False", **env})
    try:
        spec = importlib.util.spec_from_file_location("memotion_space_app", ROOT / "space" / "app.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return module


@pytest.fixture(scope="module")
def served(saved_ensemble):
    app = load_app(saved_ensemble)
    app.launch(app.demo, server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    yield app, app.demo.local_url
    app.demo.close()


def _check_schema(result):
    sentiment, *rest = result
    present, intensities, chart, details = rest[:4], rest[4:8], rest[8], rest[9]
    assert sentiment["label"] in get_problem("sentiment").labels
    assert sum(c["confidence"] for c in sentiment["confidences"]) == pytest.approx(1.0, abs=1e-6)
    for emotion, answer in zip(EMOTIONS, present, strict=True):  # subtask B: four yes/no answers, decided with C
        scores = {c["label"]: c["confidence"] for c in answer["confidences"]}
        assert set(scores) == {"yes", "no"} and scores["yes"] + scores["no"] == pytest.approx(1.0)
        decided = details["emotions"][emotion]
        assert answer["label"] == ("yes" if decided["present"] else "no")
        assert decided["present"] == (decided["intensity"] != get_problem(f"{emotion}_intensity").labels[0])
    for emotion, grades in zip(EMOTIONS, intensities, strict=True):
        labels = get_problem(f"{emotion}_intensity").labels
        assert {c["label"] for c in grades["confidences"]} == set(labels)
        assert grades["label"] == details["emotions"][emotion]["intensity"]
    assert chart["type"] == "matplotlib" and chart["plot"].startswith("data:image/")
    assert sentiment["label"] == details["sentiment"]["label"]
    assert set(decode_submission(details["submission"])) >= {"sentiment", *EMOTIONS}


def test_gradio_client_gets_the_schema_for_an_example_meme(served):
    app, url = served
    client = Client(url, verbose=False)
    image, text = app.EXAMPLES[0]
    result = client.predict(handle_file(image), text, api_name="/predict")
    _check_schema(result)
    # the same meme through the pipeline directly gives the same answer
    direct = app.PIPE({"image": image, "text": text}, ten_crop=app.TEN_CROP)
    assert result[-1]["submission"] == direct["submission"]


def test_bad_uploads_get_a_readable_message(served, tmp_path):
    app, url = served
    client = Client(url, verbose=False)
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image")
    with pytest.raises(AppError, match=r"notes.png is not a readable image .*Upload a JPEG, PNG"):
        client.predict(handle_file(str(not_image)), "some text", api_name="/predict")
    tiff = tmp_path / "scan.tiff"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tiff)
    with pytest.raises(AppError, match=r"accepted formats: JPEG, PNG, GIF, BMP, WEBP"):
        client.predict(handle_file(str(tiff)), "some text", api_name="/predict")
    with pytest.raises(AppError, match="The text has 1001 characters"):
        client.predict(handle_file(app.EXAMPLES[0][0]), "x" * 1001, api_name="/predict")
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * (app.MAX_UPLOAD_MB * 1024 * 1024 + 10))
    with pytest.raises(Exception, match=r"(?i)exceeds the maximum|too large|413"):
        client.predict(handle_file(str(big)), "some text", api_name="/predict")
    assert app.demo.get_config_file()["max_file_size"] == app.MAX_UPLOAD_MB * 1024 * 1024


def test_a_data_url_is_size_checked_before_decoding_and_ocr_failures_are_warnings(served, monkeypatch):
    from types import SimpleNamespace

    import gradio as gr

    from hf_memotion.data.ocr import OCRTimeoutError

    app, _ = served
    huge = "data:image/png;base64," + "A" * (app.MAX_UPLOAD_MB * 1024 * 1024 * 2)
    decoded = []
    monkeypatch.setattr(app.base64, "b64decode", lambda *a, **k: decoded.append(1))
    with pytest.raises(gr.Error, match=f"over {app.MAX_UPLOAD_MB} MB"):
        app.decode_upload(SimpleNamespace(path=huge, url=None, orig_name=None))
    with pytest.raises(gr.Error, match=f"over {app.MAX_UPLOAD_MB} MB"):
        app.decode_upload(SimpleNamespace(path=None, url=huge, orig_name=None))
    assert not decoded  # refused before a byte was decoded
    monkeypatch.undo()
    with pytest.raises(gr.Error, match="not valid base64"):
        app.decode_upload(SimpleNamespace(path=None, url="data:image/png;base64,***", orig_name=None))

    def timed_out(image, timeout):
        assert timeout == app.OCR_TIMEOUT_S
        raise OCRTimeoutError(f"Tesseract did not read the image within {timeout:g} s")

    monkeypatch.setattr(app, "read_meme_text", timed_out)
    assert app.read_text(Image.new("RGB", (8, 8)), "kept text") == "kept text"  # a warning, never {"error": null}


def test_the_app_builds_without_launching_and_bounds_its_queue(served):
    app, _ = served
    assert app.demo.max_file_size is not None  # launch() applied the upload limit
    assert app.demo._queue.max_size == app.QUEUE_SIZE


@pytest.fixture(scope="module")
def captioned_meme(tmp_path_factory):
    from hf_memotion.data.meme_rendering import render_meme

    path = tmp_path_factory.mktemp("captioned") / "captioned.png"
    render_meme("when the exam is on monday", "and you studied nothing", seed=4).save(path)
    return path


def test_an_image_alone_gets_its_text_read_and_an_answer(served, ocr, captioned_meme):
    _, url = served
    client = Client(url, verbose=False)
    read = client.predict(handle_file(str(captioned_meme)), "", api_name="/read_text")
    assert {"exam", "monday", "studied"} <= set(read.split())
    result = client.predict(handle_file(str(captioned_meme)), "", api_name="/predict")
    _check_schema(result)
    assert result[-1]["text_source"] == "ocr" and result[-1]["text"] == read
    typed = client.predict(handle_file(str(captioned_meme)), "typed text", api_name="/predict")
    assert (typed[-1]["text"], typed[-1]["text_source"]) == ("typed text", "given")


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        if os.environ.get("HF_MEMOTION_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (CI does, see .ci/run)")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; set HF_MEMOTION_REQUIRE_BROWSER=1 to fail)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def test_a_real_browser_uploads_a_meme_and_reads_the_labels(served, browser, tmp_path):
    app, url = served
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(url)
    page.locator("input[type=file]").first.set_input_files(app.EXAMPLES[1][0])
    page.get_by_label("Meme text").fill(app.EXAMPLES[1][1])
    page.get_by_role("button", name="Analyse").click()
    expected = app.PIPE({"image": app.EXAMPLES[1][0], "text": app.EXAMPLES[1][1]}, ten_crop=app.TEN_CROP)
    sentiment = page.locator("#sentiment")
    sentiment.get_by_text(expected["sentiment"]["label"], exact=True).first.wait_for(timeout=60_000)
    humour = expected["emotions"]["humour"]["intensity"]
    page.locator("#humour_intensity").get_by_text(humour, exact=True).first.wait_for(timeout=10_000)
    for emotion, answer in expected["emotions"].items():  # subtask B: a yes or a no per emotion
        verdict = "yes" if answer["present"] else "no"
        page.locator(f"#{emotion}_present").get_by_text(verdict, exact=True).first.wait_for(timeout=10_000)
    shot = tmp_path / "space.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    # a bad upload in the browser shows the message, not a stack trace
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    page.reload()
    page.locator("input[type=file]").first.set_input_files(str(bad))
    page.get_by_label("Meme text").fill("some text")
    page.get_by_role("button", name="Analyse").click()
    page.get_by_text("is not a readable image").first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)  # the toast fades in
    page.screenshot(path=str(tmp_path / "space_error.png"))
    page.close()


def test_a_real_browser_shows_the_heat_map_words_and_shares_of_the_chosen_answer(served, browser, tmp_path):
    app, url = served
    page = browser.new_page(viewport={"width": 1280, "height": 1800})
    page.goto(url)
    image, text = app.EXAMPLES[0]
    page.locator("input[type=file]").first.set_input_files(image)
    page.get_by_label("Meme text").fill(text)
    page.get_by_role("button", name="Analyse").click()
    expected = app.PIPE({"image": image, "text": text}, ten_crop=app.TEN_CROP, explain=True)["explanation"]
    shares = page.locator("#explanation_shares")
    answer = expected["humour_intensity"]["label"]  # the panel opens on humour's intensity
    shares.get_by_text(answer, exact=True).first.wait_for(timeout=60_000)
    assert "Shapley" in shares.inner_text()
    words = page.locator("#explanation_words")
    for word in text.lower().split()[:3]:  # the meme's words, highlighted
        words.get_by_text(word, exact=False).first.wait_for(timeout=10_000)
    heatmap = page.locator("#explanation_heatmap img").first
    heatmap.wait_for(timeout=10_000)
    assert heatmap.evaluate("img => img.naturalWidth") > 0
    shot = tmp_path / "space_explanation.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.locator("#problem input").first.click()  # another answer: drawn from the kept output, no new call
    page.get_by_role("option", name="sentiment", exact=True).click()
    shares.get_by_text(expected["sentiment"]["label"], exact=True).first.wait_for(timeout=30_000)
    page.close()


def test_a_real_browser_analyses_an_image_only_upload(served, browser, ocr, captioned_meme, tmp_path):
    app, url = served
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(url)
    page.locator("input[type=file]").first.set_input_files(str(captioned_meme))
    box = page.get_by_label("Meme text")
    page.wait_for_function("el => el.value.includes('monday')", arg=box.element_handle(), timeout=60_000)
    read = box.input_value()  # pre-filled from the image, for the user to correct
    page.get_by_role("button", name="Analyse").click()
    expected = app.PIPE({"image": str(captioned_meme)}, ten_crop=app.TEN_CROP)
    assert expected["text"] == read
    page.locator("#sentiment").get_by_text(expected["sentiment"]["label"], exact=True).first.wait_for(timeout=60_000)
    humour = expected["emotions"]["humour"]["intensity"]
    page.locator("#humour_intensity").get_by_text(humour, exact=True).first.wait_for(timeout=10_000)
    page.screenshot(path=str(tmp_path / "space_image_only.png"), full_page=True)
    page.close()


@pytest.mark.slow
def test_first_start_trains_the_missing_demo_ensemble(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "data: {demo: {n_train: 150, n_test: 50, image_size: 64}}\nseed: 0\nn_splits: 2\n"
        "models:\n"
        "  - {name: text, family: text, backbone: 'tiny:bert', tiny: {hidden_size: 16, num_layers: 1},\n"
        "     model: {lstm_hidden_size: 8, attention_size: 8, ffn_size: 8, max_length: 16},\n"
        "     training: {optimizer: adam, learning_rate: 0.003, epochs: 2, batch_size: 32}}\n"
        "  - {name: vision, family: vision, architecture: test_resnet, processor: {crop_size: 32}, ten_crop: false,\n"
        "     training: {optimizer: sgd, learning_rate: 0.05, epochs: 2, batch_size: 32}}\n"
        "stacking: {methods: [average, logistic_regression]}\n"
    )
    model = tmp_path / "run" / "ensemble"
    app = load_app(model, MEMOTION_TRAIN_CONFIG=str(config), HF_MEMOTION_PROGRESS="0")
    assert (model / "config.json").is_file() and (model / "README.md").is_file()
    assert (tmp_path / "run_data" / "memotion_dataset_7k").is_dir()
    out = app.analyse(app.PIPE, *app.EXAMPLES[2])
    assert out[0] and out[-1]["submission"]
    with pytest.raises(FileNotFoundError, match="neither an ensemble folder nor a Hub id"):
        app.ensure_model(str(tmp_path / "elsewhere"))


def test_the_space_benchmark_prints_and_writes_its_figures(saved_ensemble, tmp_path):
    import json
    import subprocess

    out = tmp_path / "bench.json"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_space.py"),
            "--model",
            str(saved_ensemble),
            "--repeats",
            "2",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "served" in result.stdout and "p50 (s)" in result.stdout
    figures = json.loads(out.read_text())["results"]
    assert set(figures) == {"pipeline", "handler", "served"}
    assert all(row["n"] == 2 and row["p95_s"] >= row["p50_s"] > 0 for row in figures.values())


def test_the_space_readme_is_a_valid_space_card_for_the_installed_gradio():
    from huggingface_hub import SpaceCard
    from packaging.version import Version

    card = SpaceCard.load(ROOT / "space" / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert Version("6.16") <= Version(card.data.sdk_version) <= Version(gr.__version__)
    requirements = (ROOT / "space" / "requirements.txt").read_text()
    assert "hf-memotion" in requirements and "torch==" in requirements


def test_the_space_serves_an_onnx_folder(saved_ensemble, tmp_path):
    pytest.importorskip("onnxruntime")
    from hf_memotion.ensemble import MemotionEnsembleModel

    MemotionEnsembleModel.from_pretrained(saved_ensemble, dtype="float32").export_onnx(tmp_path / "onnx")
    app = load_app(tmp_path / "onnx", MEMOTION_BACKEND="onnx")
    assert type(app.PIPE.model).__name__ == "OnnxMemotionEnsemble" and not app.EXPLAIN
    image, text = app.EXAMPLES[0]
    answers = app.analyse(app.PIPE, Image.open(image), text)
    direct = load_app(saved_ensemble).PIPE({"image": image, "text": text}, ten_crop=app.TEN_CROP)
    assert answers[-2]["submission"] == direct["submission"]  # the same answer as the PyTorch ensemble


def test_the_explanation_panel_works_on_a_bounded_copy_of_the_largest_upload(served):
    import tracemalloc

    app, _ = served

    def panel_peak(side: int) -> tuple[int, tuple[int, int]]:
        meme = Image.new("RGB", (side, side), (180, 60, 60))
        output = app.PIPE({"image": meme, "text": "lol"}, ten_crop=False, explain=True)
        tracemalloc.start()
        try:
            picture, _, summary = app.explanation_view(meme, output, "humour")
            assert summary.startswith("Answer")
            return tracemalloc.get_traced_memory()[1], picture.size
        finally:
            tracemalloc.stop()

    shown, shown_size = panel_peak(app.MAX_SHOWN_SIZE)
    largest, largest_size = panel_peak(4096)  # MAX_PIXELS: the largest upload the Space decodes
    assert max(largest_size) <= app.MAX_SHOWN_SIZE and shown_size == largest_size
    assert largest < 1.5 * shown  # the panel's work does not grow with the upload (16 times the pixels here)
