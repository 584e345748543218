"""The meta-estimators as ONNX graphs: scikit-learn's through skl2onnx, the rules as small graphs of our own.

Every graph takes one input ``X`` (the stacked feature blocks, as :class:`~hf_memotion.ensemble.stacking.
ProblemStacker` stacks them) and gives ``probabilities`` (no ZipMap). Logistic regression reads ``X`` in float64;
the trees (decision tree, random forest) read float32, as scikit-learn's own trees do (they cast ``X`` to float32
before comparing it with their thresholds), so the graph and the estimator take the same branches. The rules
read only the base models' own blocks, the first ``models x classes`` columns of ``X``:

- ``soft_vote``: the mean of the base probabilities;
- ``average``: the mean of their logs (clipped at 1e-12), exponentiated after subtracting the row maximum;
- ``hard_vote``: one vote per base model for its argmax, plus 1e-3 times the summed probabilities (ties);

each normalised to sum to 1: what :func:`~hf_memotion.ensemble.stacking._rule_proba` computes.

Examples:
    >>> import numpy as np, onnxruntime
    >>> graph = rule_graph("soft_vote", models=2, classes=3, features=6)
    >>> session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    >>> x = np.array([[0.2, 0.3, 0.5, 0.6, 0.2, 0.2]])
    >>> session.run(None, {"X": x})[0].round(3).tolist()
    [[0.4, 0.25, 0.35]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["OPSET", "TREE_METHODS", "estimator_graph", "rule_graph"]

#: The ONNX opset of every graph (and of the base models' export).
OPSET = 18
#: Estimators whose graph reads float32 (scikit-learn's trees compare float32 features).
TREE_METHODS = ("decision_tree", "random_forest")


def estimator_graph(method: str, estimator, features: int):
    """A fitted scikit-learn meta-estimator as an ONNX model (input ``X``, output ``probabilities``).

    The columns of ``probabilities`` are the estimator's ``classes_`` (a class missing from its training rows
    has none: the runtime puts zeros there, as :class:`ProblemStacker` does).
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    tensor = FloatTensorType if method in TREE_METHODS else DoubleTensorType
    model = convert_sklearn(
        estimator,
        initial_types=[("X", tensor([None, features]))],
        options={id(estimator): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    return model


def rule_graph(method: str, *, models: int, classes: int, features: int):
    """A parameter-free rule (``soft_vote``, ``average``, ``hard_vote``) as an ONNX model over ``X`` (float64).

    Args:
        method: The rule.
        models: Base models it combines (their blocks come first in ``X``).
        classes: Classes of the problem.
        features: Columns of ``X`` (more than ``models x classes`` with ``features="all"``: ignored by rules).
    """
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value) -> object:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))

    nodes = [
        const("starts", np.array([0], dtype=np.int64)),
        const("ends", np.array([models * classes], dtype=np.int64)),
        const("axis1", np.array([1], dtype=np.int64)),
        const("shape", np.array([-1, models, classes], dtype=np.int64)),
        helper.make_node("Slice", ["X", "starts", "ends", "axis1"], ["own"]),
        helper.make_node("Reshape", ["own", "shape"], ["blocks"]),  # (rows, models, classes)
    ]
    if method == "soft_vote":
        nodes.append(helper.make_node("ReduceMean", ["blocks", "axis1"], ["raw"], keepdims=0))
    elif method == "average":
        nodes += [
            const("low", np.array(1e-12)),
            const("high", np.array(1.0)),
            helper.make_node("Clip", ["blocks", "low", "high"], ["clipped"]),
            helper.make_node("Log", ["clipped"], ["logs"]),
            helper.make_node("ReduceMean", ["logs", "axis1"], ["mean_log"], keepdims=0),
            helper.make_node("ReduceMax", ["mean_log", "axis1"], ["peak"], keepdims=1),
            helper.make_node("Sub", ["mean_log", "peak"], ["shifted"]),
            helper.make_node("Exp", ["shifted"], ["raw"]),
        ]
    elif method == "hard_vote":
        nodes += [
            helper.make_node("ArgMax", ["blocks"], ["choice"], axis=2, keepdims=0),  # (rows, models)
            const("depth", np.array([classes], dtype=np.int64)),
            const("off_on", np.array([0.0, 1.0], dtype=np.float32)),  # ONNX Runtime's OneHot: float values
            helper.make_node("OneHot", ["choice", "depth", "off_on"], ["votes_f"], axis=-1),
            helper.make_node("Cast", ["votes_f"], ["votes"], to=TensorProto.DOUBLE),
            helper.make_node("ReduceSum", ["votes", "axis1"], ["counted"], keepdims=0),
            helper.make_node("ReduceSum", ["blocks", "axis1"], ["summed"], keepdims=0),
            const("tie", np.array(1e-3)),
            helper.make_node("Mul", ["summed", "tie"], ["ties"]),
            helper.make_node("Add", ["counted", "ties"], ["raw"]),
        ]
    else:
        raise ValueError(f"{method!r} is not a rule; rules are soft_vote, average and hard_vote")
    nodes += [
        helper.make_node("ReduceSum", ["raw", "axis1"], ["total"], keepdims=1),
        helper.make_node("Div", ["raw", "total"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes,
        f"hf_memotion_{method}",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, [None, classes])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hf-memotion")
    model.ir_version = 9
    return model
