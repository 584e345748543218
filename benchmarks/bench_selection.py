#!/usr/bin/env python
"""Pruned selection against the exhaustive search, on a search small enough for this machine, in one run.

The demo's two members (``configs/demo.yaml``: the tiny text model and the tiny visual model, all nine problems
from one forward pass) on the demo data, three folds: the visual model's learning rate from a grid of five, the
textual model's settings from ten Optuna trials. Each search runs twice, into folders of its own: exhaustively (the
paper's protocol) and pruned (``pruning: {method: successive_halving}`` at the library's default first rung, a third
of the epochs: for the grid, every rate on the first fold for 4 of its 10 epochs on the schedule compressed to them,
the best third on to every fold; for the study, Optuna's successive-halving pruner from the 10th epoch of the first
fold, one trial in three continuing at each rung). Nothing is refit: the selection is what is measured. The figures
this benchmark committed (``--json benchmarks/results/selection.json``) are what a test holds the default to.

Prints, per member and method, the candidate chosen, its selection score (the mean out-of-fold macro-F1 over the
member's problems, what the search maximises), the optimisation steps trained (the sum over every fold training of
the search, pruned ones included) and the winner's out-of-fold macro-F1 on every problem; then the pruned search's
share of the exhaustive steps, the gap between the two winners' selection scores and the largest gap on one problem
(target: within 0.01 on every problem). A killed run resumes from its folders (``--output`` kept).

Usage:
    python benchmarks/bench_selection.py [--output outputs/bench_selection] [--trials 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

RATES = [0.005, 0.01, 0.02, 0.05, 0.1]
TEXT_SPACE = {"learning_rate": [3e-4, 1e-2], "dropout": [0.0, 0.3]}


def _entries(pruning: dict[str, dict], n_trials: int) -> list:
    import yaml

    from hf_memotion.families import expand_models
    from hf_memotion.recipe.specs import EnsembleRunSpec

    config = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    text, vision = config["models"]
    text["search"] = {"n_trials": n_trials, "space": TEXT_SPACE}
    text["pruning"] = pruning["text"]
    vision["search"] = {"learning_rate": RATES}
    vision["pruning"] = pruning["vision"]
    spec = EnsembleRunSpec.from_dict({**config, "models": [text, vision]})
    return expand_models(spec.models)


def _winner_scores(selection: dict) -> dict[str, float]:
    from hf_memotion.training.runs import load_finished_run

    run = load_finished_run(selection["folder"], refit=False, load_model=False)
    return {p: float(v) for p, v in run.oof_scores.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="outputs/bench_selection", help="folder of both searches (resumable)")
    parser.add_argument("--trials", type=int, default=10, help="Optuna trials of the textual study")
    parser.add_argument("--n-splits", type=int, default=3)
    parser.add_argument(
        "--min-epochs",
        type=int,
        default=None,
        help="the first rung in epochs (the grid's: of 10; the study's: of 30); default: the library's",
    )
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    from hf_memotion.data.loading import load_data
    from hf_memotion.io_utils import atomic_write_text
    from hf_memotion.logs import configure_logging
    from hf_memotion.recipe.selection import run_selection
    from hf_memotion.tasks import PROBLEM_NAMES
    from hf_memotion.training.runs import MemberRun

    configure_logging()
    import yaml

    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["data"]["demo"]  # the demo's data
    data = load_data({"demo": {**demo, "output_dir": str(Path(args.output) / "demo_data")}})
    halving = {"method": "successive_halving", "reduction_factor": args.reduction_factor}
    if args.min_epochs is not None:
        halving["min_epochs"] = args.min_epochs
    pruned = {"vision": dict(halving), "text": dict(halving)}
    exhaustive = {"vision": {"method": "none"}, "text": {"method": "none"}}
    figures: dict = {"settings": {"rates": RATES, "trials": args.trials, "n_splits": args.n_splits, "pruning": pruned}}
    rung = "default" if args.min_epochs is None else f"min{args.min_epochs}"
    for method, pruning in (("exhaustive", exhaustive), ("pruned", pruned)):
        start = time.perf_counter()
        entries = _entries(pruning, args.trials)
        if method == "pruned":
            figures["settings"]["first_rung"] = {
                e.name: e.spec.pruning.first_rung(e.spec.training.epochs) for e in entries
            }
        selections = run_selection(
            entries,
            Path(args.output) / (method if method == "exhaustive" else f"pruned_{rung}_rf{args.reduction_factor}"),
            lambda: data,
            MemberRun(n_splits=args.n_splits, seed=0),
            data=data,
        )
        figures[method] = {
            name: {
                "chosen": s["chosen"],
                "score": s["score"],
                "train_steps": s["train_steps"],
                "trainings": s["trainings"],
                "pruned": s["pruned"],
                "candidates": len(s["candidates"]),
                "oof_macro_f1": _winner_scores(s),
            }
            for name, s in selections.items()
        }
        figures[method]["seconds"] = time.perf_counter() - start
    problems = " | ".join(PROBLEM_NAMES)
    print(f"| member | method | chosen | selection score | candidates pruned | fold trainings | steps | {problems} |")
    print("|---|---|---|---:|---:|---:|---:|" + "---:|" * len(PROBLEM_NAMES))
    summary = {}
    members = [name for name in figures["exhaustive"] if name != "seconds"]
    for name in members:
        for method in ("exhaustive", "pruned"):
            row = figures[method][name]
            chosen = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["chosen"].items())
            scores = " | ".join(f"{row['oof_macro_f1'][p]:.3f}" for p in PROBLEM_NAMES)
            print(
                f"| {name} | {method} | {chosen} | {row['score']:.4f} | {row['pruned']} of {row['candidates']} | "
                f"{row['trainings']} | {row['train_steps']:,} | {scores} |"
            )
        a, b = figures["exhaustive"][name], figures["pruned"][name]
        summary[name] = {
            "steps_share": b["train_steps"] / a["train_steps"],
            "score_gap": a["score"] - b["score"],
            "largest_problem_gap": max(abs(a["oof_macro_f1"][p] - b["oof_macro_f1"][p]) for p in PROBLEM_NAMES),
        }
    steps = {m: sum(figures[m][name]["train_steps"] for name in members) for m in ("exhaustive", "pruned")}
    summary["all"] = {"steps_share": steps["pruned"] / steps["exhaustive"]}
    figures["summary"] = summary
    print()
    for name, values in summary.items():
        line = f"{name}: pruned ran {values['steps_share']:.0%} of the exhaustive steps"
        if "score_gap" in values:
            line += (
                f"; its winner's selection score is {values['score_gap']:+.4f} from the exhaustive winner's (target "
                f"within 0.01); largest gap on one problem {values['largest_problem_gap']:.4f} (target within 0.01)"
            )
        print(line)
    print(f"wall: exhaustive {figures['exhaustive']['seconds']:.0f} s, pruned {figures['pruned']['seconds']:.0f} s")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
