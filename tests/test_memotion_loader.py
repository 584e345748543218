import io
import warnings

import datasets
import pytest
from PIL import Image

from conftest import TRAIN_HEADER, write_csv, write_image, write_train_release
from hf_memotion.data import (
    MemotionFormatError,
    load_memotion,
    make_demo_data,
    memotion_features,
    read_answer_file,
    write_answer_file,
)
from hf_memotion.tasks import PROBLEM_NAMES, decode_submission, encode_submission

ROWS = [
    # index, image_name, text_ocr, text_corrected, humour, sarcasm, offensive, motivational, overall_sentiment
    [
        "0",
        "image_1.jpg",
        "LOOK AT ME",
        "Look at me",
        "hilarious",
        "general",
        "not_offensive",
        "not_motivational",
        "very_positive",
    ],
    [
        "1",
        "image_2.png",
        "WHEN THE OCR",
        "",
        "not_funny",
        "very_twisted",
        "hateful_offensive",
        "motivational",
        "very_negative",
    ],
    ["2", "image_3.JPG", "", "", "funny", "not_sarcastic", "slight", "motivational", "neutral"],
    [
        "3",
        "image_4.bmp",
        "X",
        "Corrected, with a comma",
        "very_funny",
        "twisted_meaning",
        "very_offensive",
        "not_motivational",
        "negative",
    ],
    ["4", "image_5.jpe", "Y", "y", "funny", "general", "slight", "not_motivational", "positive"],
]
# The same rows as A_hsom_hsom strings, worked out by hand from shared/FORMATS.md.
EXPECTED = ["1_1100_3100", "-1_0111_0331", "0_1011_1011", "-1_1110_2220", "1_1110_1110"]


def _records(split):
    return [encode_submission({n: row[n] for n in PROBLEM_NAMES}) for row in split]


def test_training_release_gives_right_labels_and_text_for_every_row(tmp_path):
    root = write_train_release(tmp_path / "memotion_dataset_7k", ROWS)
    ds = load_memotion(root)
    assert list(ds) == ["train"]
    train = ds["train"]
    assert train.features == memotion_features()
    assert _records(train) == EXPECTED
    assert train["image_name"] == [r[1] for r in ROWS]
    # text_corrected, falling back to text_ocr, then to ""; lower-cased, raw kept
    assert train["text_raw"] == ["Look at me", "WHEN THE OCR", "", "Corrected, with a comma", "y"]
    assert train["text"] == ["look at me", "when the ocr", "", "corrected, with a comma", "y"]
    assert train[0]["image"].size == (16, 16)


def test_labels_csv_path_and_parent_folder_both_work(tmp_path):
    write_train_release(tmp_path / "release" / "memotion_dataset_7k", ROWS)
    assert _records(load_memotion(tmp_path / "release" / "memotion_dataset_7k" / "labels.csv")["train"]) == EXPECTED
    assert _records(load_memotion(str(tmp_path / "release"))["train"]) == EXPECTED


def test_image_extension_and_case_quirks_are_resolved(tmp_path):
    root = write_train_release(
        tmp_path / "r", ROWS[:2], images={"image_1.jpg": "image_1.JPG", "image_2.png": "image_2.jpeg"}
    )
    train = load_memotion(root)["train"]
    assert train[0]["image"].size == (16, 16) and train[1]["image"].size == (16, 16)


def _write_test_release(folder, truth_name="Meme_groundTruth.csv", truth=None):
    names = ["b.png", "a.jpg", "c.png"]
    labels = truth or ["1_1101_2301", "-1_0000_0000", "0_1010_3010"]
    for name in names:
        write_image(folder / "2000_data" / name, fmt="PNG" if name.endswith("png") else "JPEG")
    write_csv(
        folder / "2000_testdata.csv",
        ["Image_name", "Image_URL", "OCR_extracted_text", "corrected_text"],
        [[n, f"http://x/{n}", f"OCR {n.upper()}", "" if n == "a.jpg" else f"Fixed {n}"] for n in names],
    )
    if truth_name:
        # ground truth in another order than the test file: the loader must keep test-file order
        write_csv(folder / truth_name, ["Image_name", "Labels"], list(zip(names, labels, strict=True))[::-1])
    return names, labels


@pytest.mark.parametrize("truth_name", ["Meme_groundTruth.csv", "Meme_groundTruth .csv"])
def test_test_release_labels_are_decoded_in_test_file_order(tmp_path, truth_name):
    names, labels = _write_test_release(tmp_path / "test", truth_name)
    test = load_memotion(tmp_path / "test")["test"]
    assert test["image_name"] == names
    assert _records(test) == labels
    assert test["text"] == ["fixed b.png", "ocr a.jpg", "fixed c.png"]


def test_test_release_without_ground_truth_has_no_label_columns(tmp_path):
    _write_test_release(tmp_path / "test", truth_name=None)
    test = load_memotion(tmp_path / "test")["test"]
    assert test.column_names == ["image_name", "image", "text", "text_raw"]
    assert test.num_rows == 3


def test_train_and_test_release_together_and_test_path(tmp_path):
    write_train_release(tmp_path / "root" / "memotion_dataset_7k", ROWS)
    _write_test_release(tmp_path / "root" / "testdata")
    ds = load_memotion(tmp_path / "root")
    assert sorted(ds) == ["test", "train"] and ds["test"].num_rows == 3
    write_train_release(tmp_path / "only_train", ROWS)
    ds = load_memotion(tmp_path / "only_train", test_path=tmp_path / "root" / "testdata")
    assert sorted(ds) == ["test", "train"]


def test_bad_ground_truth_is_reported(tmp_path):
    _write_test_release(tmp_path / "t1", truth=["1_1101_2301", "7_0000_0000", "0_1010_3010"])
    with pytest.raises(MemotionFormatError, match=r"Meme_groundTruth.csv line 3 \(image_name='a.jpg'\).*'7_0000_0000'"):
        load_memotion(tmp_path / "t1")
    _write_test_release(tmp_path / "t2")
    write_csv(tmp_path / "t2" / "Meme_groundTruth.csv", ["Image_name", "Labels"], [["b.png", "1_1101_2301"]])
    with pytest.raises(MemotionFormatError, match="no labels for 2 image"):
        load_memotion(tmp_path / "t2")
    with pytest.warns(UserWarning, match="skipped 2 of 3"):
        assert load_memotion(tmp_path / "t2", on_error="skip")["test"]["image_name"] == ["b.png"]


def test_missing_image_names_file_row_and_value(tmp_path):
    root = write_train_release(tmp_path / "r", ROWS, images={"image_3.JPG": None})
    with pytest.raises(MemotionFormatError, match=r"labels.csv line 4 \(image_name='image_3.JPG'\).*not found"):
        load_memotion(root)
    with pytest.raises(MemotionFormatError, match="line 4"):
        load_memotion(root, verify_images=False)


def test_unreadable_image_is_reported_or_skipped(tmp_path):
    root = write_train_release(tmp_path / "r", ROWS)
    (root / "images" / "image_2.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(MemotionFormatError, match=r"(?s)1 bad row.*line 3 \(image_name='image_2.png'\)"):
        load_memotion(root)
    with pytest.warns(UserWarning, match=r"skipped 1 of 5 row\(s\)"):
        train = load_memotion(root, on_error="skip")["train"]
    assert train.num_rows == 4 and "image_2.png" not in train["image_name"]


def test_unknown_label_string_names_file_row_column_and_value(tmp_path):
    rows = [list(r) for r in ROWS]
    rows[3][5] = "little_sarcastic"
    rows[4][8] = ""
    root = write_train_release(tmp_path / "r", rows)
    with pytest.raises(MemotionFormatError) as info:
        load_memotion(root)
    message = str(info.value)
    assert "2 bad row(s)" in message
    assert "labels.csv line 5 (image_name='image_4.bmp'): column 'sarcasm'" in message
    assert "'little_sarcastic'" in message
    assert "line 6 (image_name='image_5.jpe'): column 'overall_sentiment' is empty" in message
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = load_memotion(root, on_error="skip")["train"]
    assert train.num_rows == 3
    assert any("skipped 2 of 5" in str(w.message) for w in caught)


def test_missing_column_and_missing_folder_are_named(tmp_path):
    header = [h for h in TRAIN_HEADER if h != "offensive"]
    write_csv(tmp_path / "r" / "labels.csv", header, [[c for i, c in enumerate(ROWS[0]) if i != 6]])
    (tmp_path / "r" / "images").mkdir()
    with pytest.raises(MemotionFormatError, match=r"labels.csv lacks column\(s\) offensive"):
        load_memotion(tmp_path / "r")
    write_csv(tmp_path / "s" / "labels.csv", TRAIN_HEADER, ROWS)
    with pytest.raises(MemotionFormatError, match="image folder .*images is missing"):
        load_memotion(tmp_path / "s")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MemotionFormatError, match="no Memotion data in"):
        load_memotion(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_memotion(tmp_path / "absent")


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_parquet_with_release_columns_through_load_dataset(tmp_path):
    table = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": _png((i, 0, 0)), "path": f"image_{i}.png"} for i in range(len(ROWS))],
            "image_name": [r[1] for r in ROWS],
            "text_ocr": [r[2] for r in ROWS],
            "text_corrected": [r[3] or None for r in ROWS],
            **{column: [r[4 + j] for r in ROWS] for j, column in enumerate(TRAIN_HEADER[4:])},
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                **{
                    c: datasets.Value("string") for c in ["image_name", "text_ocr", "text_corrected", *TRAIN_HEADER[4:]]
                },
            }
        ),
    )
    path = tmp_path / "memotion.parquet"
    table.to_parquet(path)
    ds = load_memotion(path)
    assert list(ds) == ["train"]
    assert _records(ds["train"]) == EXPECTED
    assert ds["train"]["text"][1] == "when the ocr"
    assert ds["train"][3]["image"].getpixel((0, 0)) == (3, 0, 0)
    # a folder of parquet files works the same way
    (tmp_path / "folder").mkdir()
    table.to_parquet(tmp_path / "folder" / "train-00000.parquet")
    assert _records(load_memotion(tmp_path / "folder")["train"]) == EXPECTED


def test_parquet_with_label_string_or_problem_columns(tmp_path):
    images = [{"bytes": _png((0, i, 0)), "path": None} for i in range(3)]
    with_strings = datasets.Dataset.from_dict(
        {"image": images, "text": ["A", "B", "C"], "Labels": ["1_1101_2301", "-1_0000_0000", "0_1010_3010"]},
        features=datasets.Features(
            {"image": datasets.Image(), "text": datasets.Value("string"), "Labels": datasets.Value("string")}
        ),
    )
    with_strings.to_parquet(tmp_path / "labels.parquet")
    loaded = load_memotion(tmp_path / "labels.parquet")["train"]
    assert _records(loaded) == ["1_1101_2301", "-1_0000_0000", "0_1010_3010"]
    assert loaded["text"] == ["a", "b", "c"]
    # our own schema (e.g. a dataset pushed with push_to_hub after load_memotion) round-trips
    loaded.to_parquet(tmp_path / "ours.parquet")
    again = load_memotion(tmp_path / "ours.parquet")["train"]
    assert _records(again) == _records(loaded) and again.features == memotion_features()


def test_hub_id_that_cannot_be_reached_gives_a_clear_error():
    with pytest.raises(
        FileNotFoundError, match="could not load the dataset 'no-such-org/no-such-memotion'|not a local"
    ):
        load_memotion("no-such-org/no-such-memotion")


def test_demo_data_loads_with_the_same_loader(demo_root):
    ds = load_memotion(demo_root)
    assert ds["train"].num_rows == 60 and ds["test"].num_rows == 20
    assert ds["train"].features == memotion_features()
    suffixes = {name.rsplit(".", 1)[1] for name in [*ds["train"]["image_name"], *ds["test"]["image_name"]]}
    assert len(suffixes) >= 3  # mixed extensions, as in the release


def test_answer_file_round_trip_and_atomic(tmp_path, demo_root):
    test = load_memotion(demo_root)["test"]
    predictions = {n: test[n] for n in PROBLEM_NAMES}
    path = write_answer_file(predictions, tmp_path)
    assert path.name == "answer.txt"
    lines = path.read_text().splitlines()
    truth = (demo_root / "memotion_test_release" / "Meme_groundTruth.csv").read_text().splitlines()[1:]
    assert lines == [row.split(",")[1] for row in truth]  # test-file order, official strings
    assert read_answer_file(path) == [decode_submission(x) for x in lines]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answer.txt"]  # no temporary file left
    with pytest.raises(ValueError, match="missing: sentiment"):
        write_answer_file([{"humour": 1}], tmp_path / "bad.txt")
    assert not (tmp_path / "bad.txt").exists()


def test_demo_generation_is_deterministic(tmp_path):
    a = make_demo_data(tmp_path / "a", n_train=12, n_test=4, seed=5)
    b = make_demo_data(tmp_path / "b", n_train=12, n_test=4, seed=5)
    c = make_demo_data(tmp_path / "c", n_train=12, n_test=4, seed=6)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    labels_csv = "memotion_dataset_7k/labels.csv"
    assert (a / labels_csv).read_text() != (c / labels_csv).read_text()
    assert make_demo_data(tmp_path / "a", n_train=12, n_test=4, seed=5) == a  # reused as it is
    with pytest.raises(FileExistsError, match="overwrite"):
        make_demo_data(tmp_path / "a", n_train=13, n_test=4, seed=5)
    header = (a / labels_csv).read_text().splitlines()[0]
    assert header == ",image_name,text_ocr,text_corrected,humour,sarcasm,offensive,motivational,overall_sentiment"
