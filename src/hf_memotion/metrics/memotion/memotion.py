"""Memotion (SemEval-2020 Task 8) scores as an ``evaluate`` metric module.

Load it offline from this folder: ``evaluate.load("path/to/metrics/memotion")`` (or
``hf_memotion.metrics.load_memotion_metric()``). It needs the ``hf_memotion`` package installed:
the numbers come from :func:`hf_memotion.metrics.memotion_scores`, so both always agree.
"""

import datasets
import evaluate

from hf_memotion.metrics.scoring import memotion_scores
from hf_memotion.tasks import PROBLEM_NAMES

_CITATION = """\\
@inproceedings{sharma-etal-2020-semeval,
    title = "{S}em{E}val-2020 Task 8: Memotion Analysis - the Visuo-Lingual Metaphor!",
    author = "Sharma, Chhavi and Bhageria, Deepesh and Scott, William and PYKL, Srinivas and Das, Amitava
              and Chakraborty, Tanmoy and Pulabaigari, Viswanath and Gamb{\\"a}ck, Bj{\\"o}rn",
    booktitle = "Proceedings of the Fourteenth Workshop on Semantic Evaluation",
    year = "2020",
    pages = "759--773",
}
"""

_DESCRIPTION = """\\
Official Memotion scores: macro-F1 of subtask A (sentiment, 3 classes), and the mean macro-F1 over
the four emotions (humour, sarcasm, offensive, motivational) for subtask B (present or not) and
subtask C (intensity), plus the macro-F1 of each of the nine problems.
"""

_KWARGS_DESCRIPTION = f"""
Args:
    predictions: one item per meme, either an official answer line "{{A}}_{{hsom}}_{{hsom}}"
        (e.g. "1_1101_2301") or a list of nine class ids in the order {", ".join(PROBLEM_NAMES)}.
    references: the gold labels, in the same form as the predictions.
Returns:
    subtask_a, subtask_b, subtask_c, and one macro-F1 per problem.
Examples:
    >>> metric = evaluate.load("src/hf_memotion/metrics/memotion")
    >>> metric.compute(predictions=["1_1101_2301"], references=["1_1101_2301"])["subtask_a"]
    1.0
"""


def _rows(items):
    return [item if isinstance(item, str) else dict(zip(PROBLEM_NAMES, item, strict=True)) for item in items]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Memotion(evaluate.Metric):
    """Macro-F1 of the three Memotion subtasks and their nine problems."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("int32")),
                        "references": datasets.Sequence(datasets.Value("int32")),
                    }
                ),
            ],
            reference_urls=["https://competitions.codalab.org/competitions/20629"],
        )

    def _compute(self, predictions, references):
        return memotion_scores(_rows(predictions), _rows(references))
