#!/usr/bin/env python
"""Evaluate VisE backbones with the paper's protocols: linear evaluation and fine-tuning over the LR x WD grid.

Usage:
    python scripts/evaluate_vise.py [configs/vise_eval_demo.yaml] [key=value ...]
    python scripts/evaluate_vise.py my_eval.yaml protocols=[linear]

Writes ``<output_dir>/results.json`` (every grid point, the chosen one, S_lr and S_wd), ``results.md``
(Tables 6/7-style scores and the hyperparameter table), ``results.png`` and ``grids.png``. Finished grid
points are kept in ``<output_dir>/runs/``: an interrupted evaluation started again skips them.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from hf_memotion.cli import USER_ERRORS, parse_config_arguments
from hf_memotion.config import load_run_config
from hf_memotion.training.runs import check_keys

TASK_KEYS = {"name", "format", "path", "demo", "options", "text_encoder"}


def _read_tasks(entries):
    from hf_memotion.vise.downstream import read_task
    from hf_memotion.vise.downstream_demo import make_demo_downstream

    tasks = []
    for entry in entries or []:
        unknown = sorted(set(entry) - TASK_KEYS)
        if unknown:
            raise ValueError(f"unknown task key(s) {unknown}; valid: {sorted(TASK_KEYS)}")
        kind = entry.get("format")
        if ("path" in entry) == ("demo" in entry):
            raise ValueError(f"task {entry.get('name', kind)!r} takes 'path' (the release folder) or 'demo' (settings)")
        if "demo" in entry:
            demo = dict(entry["demo"] or {})
            root = make_demo_downstream(demo.pop("output_dir", f"outputs/vise_tasks_demo/{kind}"), kind, **demo)
        else:
            root = entry["path"]
        task = read_task(kind, root, **(entry.get("options") or {}))
        task.name = entry.get("name", task.name)
        tasks.append((task, entry.get("text_encoder")))
    if not tasks:
        raise ValueError("the config lists no tasks")
    return tasks


def main(argv: list[str] | None = None) -> int:
    path, overrides = parse_config_arguments(argv, __doc__.splitlines()[0], "configs/vise_eval_demo.yaml",
                                             "linear.epochs=90")  # fmt: skip
    from hf_memotion.vise.eval_report import hyperparameter_table, plot_grids, plot_results, results_table
    from hf_memotion.vise.evaluation import (
        PROTOCOLS,
        ProtocolSettings,
        TextEncoder,
        evaluate_backbone,
        load_backbone,
    )

    try:
        config = load_run_config(path, overrides)
        check_keys(config, {"output_dir", "backbones", "reference", "protocols", "image_size", "tasks", "seed",
                            *PROTOCOLS})  # fmt: skip
        protocols = list(config.get("protocols") or PROTOCOLS)
        for protocol in protocols:
            if protocol not in PROTOCOLS:
                raise ValueError(f"protocols: {protocol!r} is not one of {PROTOCOLS}")
        settings = {p: ProtocolSettings.from_dict({"seed": config.get("seed", 0), **(config.get(p) or {})})
                    for p in protocols}  # fmt: skip
        sources = dict(config.get("backbones") or {})
        if not sources:
            raise ValueError("the config names no backbones (backbones: {name: folder, Hub id or random:<arch>})")
        reference = config.get("reference")
        if reference is not None and reference not in sources:
            raise ValueError(f"reference {reference!r} is not one of the backbones {sorted(sources)}")
        backbones = [load_backbone(n, str(s), image_size=config.get("image_size")) for n, s in sources.items()]
        tasks = _read_tasks(config.get("tasks"))
        output = Path(config.get("output_dir", "outputs/vise_eval"))
        rows = []
        for task, encoder_source in tasks:
            encoder = None
            if task.has_text:
                if not encoder_source:
                    raise ValueError(f"task {task.name!r} has texts: set its text_encoder (a folder or Hub id)")
                encoder = TextEncoder(str(encoder_source), corpus=task.repeats[0]["train"]["text"])
            for backbone in backbones:
                for protocol in protocols:
                    row = evaluate_backbone(backbone, task, protocol, settings[protocol], output, encoder)
                    logging.info("%s / %s / %s: test %s %.4g (chosen base LR %g, WD %g; S_lr %.4g, S_wd %.4g)",
                                 task.name, backbone.name, protocol, row["metric"],
                                 row[f"test_{row['metric']}_mean"], row["base_lr"], row["weight_decay"],
                                 row["s_lr"], row["s_wd"])  # fmt: skip
                    rows.append(row)
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")
    from hf_memotion.io_utils import atomic_write_text

    atomic_write_text(output / "results.json", json.dumps(rows, indent=2))
    sections = [f"# VisE downstream evaluation\n\nConfig: `{path}`; differences from `{reference}` in "
                "parentheses.\n" if reference else "# VisE downstream evaluation\n"]  # fmt: skip
    for title, protocol in (("Linear evaluation (Table 6 form)", "linear"), ("Fine-tuning (Table 7 form)", "finetune")):
        if protocol in protocols:
            sections.append(f"## {title}\n\n" + results_table(rows, protocol, reference) + "\n")
    sections.append("## Chosen hyperparameters and sensitivity (Tables 10-16 form)\n\n" + hyperparameter_table(rows))
    text = "\n".join(sections) + "\n\n![results](results.png)\n\n![grids](grids.png)\n"
    atomic_write_text(output / "results.md", text)
    plot_results(rows, output / "results.png")
    plot_grids(rows, output / "grids.png")
    print(text.split("\n\n![results]")[0])
    print(f"\nresults: {output / 'results.md'}  {output / 'results.json'}  plots: {output / 'results.png'}, grids.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
