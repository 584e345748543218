import evaluate
import numpy as np
import pytest
from sklearn.metrics import f1_score

from hf_memotion.metrics import MEMOTION_METRIC_PATH, load_memotion_metric, memotion_scores
from hf_memotion.tasks import PROBLEM_NAMES, PROBLEMS, SUBTASKS, encode_submission


def _random_columns(rng, n):
    columns = {p.name: rng.integers(0, p.num_labels, size=n).tolist() for p in PROBLEMS}
    for emotion in ("humour", "sarcasm", "offensive", "motivational"):  # B consistent with C, as in the release
        columns[emotion] = [int(g > 0) for g in columns[f"{emotion}_intensity"]]
    return columns


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_sklearn_macro_f1_on_random_data(seed):
    rng = np.random.default_rng(seed)
    pred, ref = _random_columns(rng, 200), _random_columns(rng, 200)
    scores = memotion_scores(pred, ref)
    for name in PROBLEM_NAMES:
        assert scores[name] == pytest.approx(f1_score(ref[name], pred[name], average="macro"))
    for subtask, names in SUBTASKS.items():
        expected = np.mean([f1_score(ref[n], pred[n], average="macro") for n in names])
        assert scores[f"subtask_{subtask.lower()}"] == pytest.approx(expected)
    lines = lambda cols: [encode_submission({n: cols[n][i] for n in PROBLEM_NAMES}) for i in range(200)]  # noqa: E731
    assert memotion_scores(lines(pred), lines(ref)) == pytest.approx(scores)


def test_subset_of_problems_and_errors():
    scores = memotion_scores({"humour": [0, 1, 1]}, {"humour": [0, 1, 0], "sarcasm": [1, 1, 1]})
    assert set(scores) == {"humour"}
    assert scores["humour"] == pytest.approx(f1_score([0, 1, 0], [0, 1, 1], average="macro"))
    with pytest.raises(ValueError, match="share no problem"):
        memotion_scores({"humour": [0]}, {"sarcasm": [0]})
    with pytest.raises(ValueError, match="2 predictions for 3 references"):
        memotion_scores({"humour": [0, 1]}, {"humour": [0, 1, 0]})
    assert memotion_scores(["1_1111_3331"], ["1_1111_3331"])["subtask_c"] == 1.0


def test_evaluate_module_loads_offline_and_agrees_with_plain_function():
    rng = np.random.default_rng(3)
    pred, ref = _random_columns(rng, 50), _random_columns(rng, 50)
    plain = memotion_scores(pred, ref)
    metric = evaluate.load(MEMOTION_METRIC_PATH)
    as_ids = lambda cols: [[cols[n][i] for n in PROBLEM_NAMES] for i in range(50)]  # noqa: E731
    assert metric.compute(predictions=as_ids(pred), references=as_ids(ref)) == pytest.approx(plain)
    as_lines = lambda cols: [encode_submission({n: cols[n][i] for n in PROBLEM_NAMES}) for i in range(50)]  # noqa: E731
    metric = load_memotion_metric()
    for p, r in zip(as_lines(pred), as_lines(ref), strict=True):
        metric.add(prediction=p, reference=r)
    assert metric.compute() == pytest.approx(plain)
