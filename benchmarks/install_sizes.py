#!/usr/bin/env python
"""Disk taken by the core install and by what each extra adds, measured in the current environment.

Walks the installed distributions' requirements from ``hf-memotion`` (markers evaluated, extras followed) and sums
each distribution's files as its ``RECORD`` lists them (sizes read from disk). An extra's figure is what it adds to
the core: the packages only it pulls in. Run it in an environment with every extra installed (``make install-all``).

Usage:
    python benchmarks/install_sizes.py            # a Markdown table
    python benchmarks/install_sizes.py --json
"""

from __future__ import annotations

import argparse
import json
import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

PROJECT = "hf-memotion"
#: Distributions a CUDA build of torch pulls in (absent with a CPU-only build).
CUDA_PREFIXES = ("nvidia-", "triton", "cuda-")


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed() -> dict[str, metadata.Distribution]:
    return {_key(d.metadata["Name"]): d for d in metadata.distributions() if d.metadata["Name"]}


def _closure(roots: list[tuple[str, frozenset[str]]], dists: dict[str, metadata.Distribution]) -> set[str]:
    """Every installed distribution reached from ``roots`` (name, extras asked for)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    reached: set[str] = set()
    todo = list(roots)
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen or name not in dists:
            continue
        seen.add((name, extras))
        reached.add(name)
        for line in dists[name].requires or []:
            requirement = Requirement(line)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            todo.append((_key(requirement.name), frozenset(requirement.extras)))
    return reached


def _size(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        path = Path(dist.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total


def measure() -> dict[str, dict[str, float | list[str]]]:
    """``{"core": {...}, extra: {...}}``: megabytes and the distributions counted, per set."""
    dists = _installed()
    if PROJECT not in dists:
        raise SystemExit(f"{PROJECT} is not installed in this environment: run `make install-all` first")
    extras = sorted(dists[PROJECT].metadata.get_all("Provides-Extra") or [])
    sizes = {name: _size(dists[name]) for name in dists}
    core = _closure([(PROJECT, frozenset())], dists)
    cuda = {n for n in core if n.startswith(CUDA_PREFIXES)}
    out: dict[str, dict[str, float | list[str]]] = {
        "core": {"mb": sum(sizes[n] for n in core) / 1e6, "packages": len(core), "largest": _largest(core, sizes)},
        "core: CUDA libraries": {"mb": sum(sizes[n] for n in cuda) / 1e6, "packages": len(cuda), "largest": []},
    }
    for extra in extras:
        added = _closure([(PROJECT, frozenset({extra}))], dists) - core
        megabytes = sum(sizes[n] for n in added) / 1e6
        out[extra] = {"mb": megabytes, "packages": len(added), "largest": _largest(added, sizes)}
    return out


def _largest(names: set[str], sizes: dict[str, int], count: int = 3) -> list[str]:
    ranked = sorted(names, key=lambda n: -sizes[n])[:count]
    return [f"{n} {sizes[n] / 1e6:.0f} MB" for n in ranked]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    args = parser.parse_args(argv)
    figures = measure()
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print("| set | adds | packages | largest |")
    print("|---|---:|---:|---|")
    for name, row in figures.items():
        print(f"| {name} | {row['mb']:,.0f} MB | {row['packages']} | {', '.join(row['largest'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
