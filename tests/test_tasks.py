import itertools

import numpy as np
import pytest

from hf_memotion.tasks import (
    EMOTIONS,
    PROBLEM_NAMES,
    PROBLEMS,
    SUBTASKS,
    decode_submission,
    encode_submission,
    get_problem,
    to_label_columns,
)

# The mapping of shared/FORMATS.md, written out by hand: (column, release string) -> {problem: class id}.
EXPECTED_A = {"very_negative": 0, "negative": 0, "neutral": 1, "positive": 2, "very_positive": 2}
EXPECTED_C = {
    "humour": {"not_funny": 0, "funny": 1, "very_funny": 2, "hilarious": 3},
    "sarcasm": {"not_sarcastic": 0, "general": 1, "twisted_meaning": 2, "very_twisted": 3},
    "offensive": {"not_offensive": 0, "slight": 1, "very_offensive": 2, "hateful_offensive": 3},
    "motivational": {"not_motivational": 0, "motivational": 1},
}


def test_nine_problems_in_official_order():
    assert PROBLEM_NAMES == (
        "sentiment",
        "humour",
        "sarcasm",
        "offensive",
        "motivational",
        "humour_intensity",
        "sarcasm_intensity",
        "offensive_intensity",
        "motivational_intensity",
    )
    assert SUBTASKS["A"] == ("sentiment",)
    assert EMOTIONS == ("humour", "sarcasm", "offensive", "motivational")
    assert [p.num_labels for p in PROBLEMS] == [3, 2, 2, 2, 2, 4, 4, 4, 2]


def test_release_strings_map_as_formats_md_says():
    for value, expected in EXPECTED_A.items():
        assert get_problem("sentiment").label_from_release(value) == expected
    for emotion, grades in EXPECTED_C.items():
        for value, grade in grades.items():
            assert get_problem(f"{emotion}_intensity").label_from_release(value) == grade
            assert get_problem(emotion).label_from_release(value) == int(not value.startswith("not_"))
    assert get_problem("humour").label_from_release("  Very_Funny ") == 1


def test_unknown_release_string_names_value_and_allowed_values():
    with pytest.raises(ValueError, match=r"'little_sarcastic'.*not_sarcastic, general"):
        get_problem("sarcasm").label_from_release("little_sarcastic")  # Memotion 2.0's scheme
    with pytest.raises(KeyError, match="valid problems"):
        get_problem("humor")


def test_submission_examples():
    assert decode_submission("1_1101_2301") == {
        "sentiment": 2,
        "humour": 1,
        "sarcasm": 1,
        "offensive": 0,
        "motivational": 1,
        "humour_intensity": 2,
        "sarcasm_intensity": 3,
        "offensive_intensity": 0,
        "motivational_intensity": 1,
    }
    assert decode_submission("-1_0000_0000")["sentiment"] == 0
    assert encode_submission(decode_submission("-1_0010_0020")) == "-1_0010_0020"


def test_submission_round_trip_every_combination_of_a_and_c():
    for a, c in itertools.product(range(3), itertools.product(range(4), range(4), range(4), range(2))):
        labels = {"sentiment": a, **{f"{e}_intensity": g for e, g in zip(EMOTIONS, c, strict=True)}}
        labels.update({e: int(g > 0) for e, g in zip(EMOTIONS, c, strict=True)})
        assert decode_submission(encode_submission(labels)) == labels


@pytest.mark.parametrize("bad", ["", "1_1101", "2_1101_2301", "1_1101_2302", "1_11a1_2301", "1_110_2301", "x"])
def test_malformed_submission_names_the_string(bad):
    with pytest.raises(ValueError, match="malformed label string"):
        decode_submission(bad)


def test_encode_rejects_missing_and_out_of_range():
    labels = decode_submission("1_1101_2301")
    with pytest.raises(ValueError, match="missing: humour"):
        encode_submission({k: v for k, v in labels.items() if k != "humour"})
    with pytest.raises(ValueError, match="out of range for sentiment"):
        encode_submission({**labels, "sentiment": 3})


def test_to_label_columns_accepts_all_shapes():
    lines = ["1_1101_2301", "0_0000_0000"]
    as_rows = [decode_submission(x) for x in lines]
    as_columns = {n: [r[n] for r in as_rows] for n in PROBLEM_NAMES}
    assert to_label_columns(lines) == to_label_columns(as_rows) == to_label_columns(as_columns)
    assert to_label_columns({"humour": np.array([0, 1])}) == {"humour": [0, 1]}
    with pytest.raises(ValueError, match="out of range"):
        to_label_columns({"humour": [2]})
    with pytest.raises(ValueError, match="different lengths"):
        to_label_columns({"humour": [0], "sarcasm": [0, 1]})
