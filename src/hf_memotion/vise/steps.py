"""The three VisE steps as library calls: :func:`mine`, :func:`pretrain`, :func:`evaluate`, each taking its spec.

The scripts (``mine_vise_labels.py``, ``pretrain_vise.py``, ``evaluate_vise.py``) only parse a config into the
spec and call one of these; each also has a ``print_*`` summary, what the script shows when it ends.

Example:
    >>> from hf_memotion.vise.run_specs import MiningRunSpec
    >>> spec = MiningRunSpec.from_dict({"data": {"demo": {"output_dir": "/tmp/hf_memotion_doc_posts", "n_posts": 200}},
    ...                                 "output_dir": "/tmp/hf_memotion_doc_mined",
    ...                                 "mining": {"comment_clusters": 8, "reaction_clusters": 4, "embedding_dim": 8}})
    >>> report = mine(spec)
    >>> report["comment_cluster_sizes"]["clusters"], report["reaction_cluster_sizes"]["clusters"]
    (8, 4)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hf_memotion.config import load_run_config
from hf_memotion.data.engagement import resolve_corpus
from hf_memotion.distributed import process_state
from hf_memotion.io_utils import atomic_write_text
from hf_memotion.vise.run_specs import EvaluationRunSpec, MiningRunSpec, PretrainRunSpec, TaskSpec

__all__ = [
    "evaluate",
    "mine",
    "pretrain",
    "print_evaluation_summary",
    "print_mining_summary",
    "print_pretraining_summary",
    "read_tasks",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------- mining


def mine(spec: MiningRunSpec) -> dict[str, Any]:
    """Mine the pseudo-labels a :class:`MiningRunSpec` describes, on this machine or as a Spark job.

    Returns:
        The report written to ``mining.json``.
    """
    from hf_memotion.vise.mining import mine_labels

    corpus = resolve_corpus(spec.data)
    if spec.engine == "spark":
        from hf_memotion.vise.spark_mining import mine_labels_on_spark

        return mine_labels_on_spark(corpus, spec.output_dir, spec.mining, cores=spec.num_proc or 2)
    return mine_labels(corpus, spec.output_dir, spec.mining, num_proc=spec.num_proc or 1)


def _sizes(stats: dict) -> str:
    return (f"{stats['non_empty']}/{stats['clusters']} used, size min {stats['min']} median {stats['median']:g} "
            f"max {stats['max']}, largest share {stats['largest_share']:.1%}, "
            f"effective clusters {stats['effective_clusters']:.1f}")  # fmt: skip


def print_mining_summary(report: dict[str, Any], spec: MiningRunSpec) -> None:
    """Print the counts and the cluster-size statistics of a mining run."""
    print(f"labelled {report['posts_labelled']} posts ({report['holdout']['holdout_posts']} held out for clustering); "
          f"{report['posts_without_comments']} without comments, {report['posts_without_reactions']} without "
          f"reactions, {report['malformed_rows']} malformed rows skipped")  # fmt: skip
    print("comment clusters: " + _sizes(report["comment_cluster_sizes"]))
    print("reaction clusters: " + _sizes(report["reaction_cluster_sizes"]))
    print(f"labels: {spec.output_dir}/labels-*.parquet  report: {spec.output_dir}/mining.json")


# ------------------------------------------------------------------------------------------------- pretraining


def _labels(spec: PretrainRunSpec) -> str:
    """The labels folder: given, or mined first from the named mining config (one process mines)."""
    if spec.data.labels is not None:
        return spec.data.labels
    mining = MiningRunSpec.from_dict(load_run_config(spec.data.mine), source=spec.data.mine)
    state = process_state()
    with state.main_process_first():  # one process mines; the others then find it finished
        if state.is_main_process:
            mine(mining)
    return mining.output_dir


def pretrain(spec: PretrainRunSpec) -> dict[str, Any]:
    """Pretrain the VisE backbone a :class:`PretrainRunSpec` describes (mining first when asked); plot the losses.

    Returns:
        The report written to ``pretraining.json``.
    """
    from hf_memotion.vise.pretraining import plot_pretraining_curves, pretrain_vise

    output = Path(spec.output_dir)
    report = pretrain_vise(_labels(spec), output, spec.pretraining, resume=spec.resume, license=spec.license)
    if process_state().is_main_process:
        plot_pretraining_curves(report["curves"], output / "loss_curves.png")
    return report


def print_pretraining_summary(report: dict[str, Any], spec: PretrainRunSpec) -> None:
    """Print the first and last values of both losses and where the backbone is."""
    curves = report["curves"]
    if curves:
        first, last = curves[0], curves[-1]
        for name in ("loss", "comment_loss", "reaction_loss"):
            if name in first and name in last:
                print(f"{name:<14} {first[name]:.4f} (step {first['step']}) -> {last[name]:.4f} (step {last['step']})")
    output = Path(spec.output_dir)
    print(f"backbone: {output / 'backbone'}  (AutoModel.from_pretrained)   report: {output / 'pretraining.json'}")


# ------------------------------------------------------------------------------------------------- evaluation


def read_tasks(entries: list[TaskSpec]) -> list[tuple[Any, str | None]]:
    """``(DownstreamTask, text encoder source)`` for each task entry (demo tasks are generated first)."""
    from hf_memotion.data.downstream import read_task
    from hf_memotion.data.downstream_demo import make_demo_downstream

    tasks = []
    for entry in entries:
        root = entry.path
        if entry.demo is not None:
            demo = dict(entry.demo)
            root = make_demo_downstream(demo.pop("output_dir", f"outputs/vise_tasks_demo/{entry.format}"), entry.format,
                                        **demo)  # fmt: skip
        task = read_task(entry.format, root, **entry.options)
        task.name = entry.name or task.name
        tasks.append((task, entry.text_encoder))
    return tasks


def evaluate(spec: EvaluationRunSpec, *, source: str | None = None) -> dict[str, Any]:
    """Run every backbone x task x protocol grid of an :class:`EvaluationRunSpec` and write the report.

    Writes ``results.json`` (every grid point, the chosen one, S_lr and S_wd), ``results.md`` (Tables 6/7-style
    scores and the hyperparameter table), ``results.png`` and ``grids.png``. Finished grid points are reused.

    Returns:
        ``rows`` (one per backbone, task and protocol) and ``markdown`` (the report's text without the plots).
    """
    from hf_memotion.reporting.vise_tables import hyperparameter_table, plot_grids, plot_results, results_table
    from hf_memotion.vise.evaluation import TextEncoder, evaluate_backbone, load_backbone

    backbones = [load_backbone(n, str(s), image_size=spec.image_size) for n, s in spec.backbones.items()]
    output = Path(spec.output_dir)
    rows = []
    for task, encoder_source in read_tasks(spec.tasks):
        encoder = None
        if task.has_text:
            if not encoder_source:
                raise ValueError(f"task {task.name!r} has texts: set its text_encoder (a folder or Hub id)")
            encoder = TextEncoder(str(encoder_source), corpus=task.repeats[0]["train"]["text"])
        for backbone in backbones:
            for protocol in spec.protocols:
                row = evaluate_backbone(backbone, task, protocol, spec.protocol_settings(protocol), output, encoder)
                logger.info("%s / %s / %s: test %s %.4g (chosen base LR %g, WD %g; S_lr %.4g, S_wd %.4g)",
                            task.name, backbone.name, protocol, row["metric"], row[f"test_{row['metric']}_mean"],
                            row["base_lr"], row["weight_decay"], row["s_lr"], row["s_wd"])  # fmt: skip
                rows.append(row)
    atomic_write_text(output / "results.json", json.dumps(rows, indent=2))
    title = "# VisE downstream evaluation\n"
    if spec.reference:
        title += f"\nConfig: `{source}`; differences from `{spec.reference}` in parentheses.\n"
    sections = [title]
    for heading, protocol in (
        ("Linear evaluation (Table 6 form)", "linear"),
        ("Fine-tuning (Table 7 form)", "finetune"),
    ):
        if protocol in spec.protocols:
            sections.append(f"## {heading}\n\n" + results_table(rows, protocol, spec.reference) + "\n")
    sections.append("## Chosen hyperparameters and sensitivity (Tables 10-16 form)\n\n" + hyperparameter_table(rows))
    markdown = "\n".join(sections)
    atomic_write_text(output / "results.md", markdown + "\n\n![results](results.png)\n\n![grids](grids.png)\n")
    plot_results(rows, output / "results.png")
    plot_grids(rows, output / "grids.png")
    return {"rows": rows, "markdown": markdown}


def print_evaluation_summary(result: dict[str, Any], spec: EvaluationRunSpec) -> None:
    """Print the report's tables and where its files are."""
    output = Path(spec.output_dir)
    print(result["markdown"])
    print(f"\nresults: {output / 'results.md'}  {output / 'results.json'}  plots: {output / 'results.png'}, grids.png")
