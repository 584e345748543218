"""Generate the API reference: one page per public class and function, from the docstrings (mkdocs-gen-files).

A name is public when its module lists it in ``__all__``; the page is ``reference/<module path>/<Name>.md`` and
holds mkdocstrings' ``::: module.Name``. Each module gets an index page, and ``reference/SUMMARY.md`` is the
navigation (mkdocs-literate-nav). The modules are read as text (no import), so the reference needs no torch.
Run by ``mkdocs build`` (the ``gen-files`` plugin); ``public_objects()`` is also what the tests check.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _all_names(tree: ast.Module) -> list[str]:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(getattr(t, "id", None) == "__all__" for t in targets) and node.value is not None:
            return [str(v) for v in ast.literal_eval(node.value)]
    return []


def public_objects(src: Path = SRC) -> dict[str, list[tuple[str, str]]]:
    """``{module: [(name, "class" | "function" | "data"), ...]}`` for every public name a module defines."""
    found: dict[str, list[tuple[str, str]]] = {}
    for path in sorted((src / "hf_memotion").rglob("*.py")):
        if path.name == "__init__.py" and path.parent.name != "metrics":
            continue  # packages re-export; each object is documented where it is defined
        module = ".".join(path.relative_to(src).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        exported = set(_all_names(tree))
        kinds = {}
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                kinds[node.name] = "class"
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                kinds[node.name] = "function"
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name):
                        kinds.setdefault(target.id, "data")
        names = [(name, kinds[name]) for name in sorted(exported) if name in kinds]
        if names:
            found[module] = names
    return found


#: Repository files that are also pages of the site (as ``benchmarks.md`` and so on).
ROOT_PAGES = ("CHANGELOG.md", "BENCHMARKS.md", "SECURITY.md")


def site_links(text: str) -> str:
    """A repository file's Markdown links as the site has them.

    ``(BENCHMARKS.md)`` -> ``(benchmarks.md)``, ``(docs/architecture.md)`` -> ``(architecture.md)``; a link to
    another file of the repository becomes its name in code (the site holds no source files).
    """
    import re

    def link(match: re.Match) -> str:
        label, target = match.group(1), match.group(2)
        page, _, anchor = target.partition("#")
        if page in ROOT_PAGES:
            return f"[{label}]({page.lower()}{'#' + anchor if anchor else ''})"
        if page.startswith("docs/") and page.endswith(".md"):
            return f"[{label}]({page.removeprefix('docs/')}{'#' + anchor if anchor else ''})"
        if "://" in page or not page:
            return match.group(0)
        return f"{label} (`{page}`)" if label.strip("`") != page else f"`{page}`"

    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", link, text)


def page_path(module: str, name: str) -> str:
    """Where the page of ``module.name`` is, under the docs folder."""
    return f"reference/{module.replace('.', '/')}/{name}.md"


def _write_pages() -> None:
    import mkdocs_gen_files

    nav = mkdocs_gen_files.Nav()
    for module, names in public_objects().items():
        parts = tuple(module.split(".")[1:]) or ("hf_memotion",)
        index = f"reference/{module.replace('.', '/')}/index.md"
        nav[parts] = index.removeprefix("reference/")
        with mkdocs_gen_files.open(index, "w") as handle:
            handle.write(f"# `{module}`\n\n::: {module}\n    options:\n      members: false\n\n")
            for name, kind in names:
                shown = f"`{name}`" if kind == "data" else f"[`{name}`]({name}.md)"
                handle.write(f"- {shown} ({kind})\n")
        for name, kind in names:
            if kind == "data":
                continue  # constants are listed with their module's docstring
            path = page_path(module, name)
            nav[(*parts, name)] = path.removeprefix("reference/")
            with mkdocs_gen_files.open(path, "w") as handle:
                handle.write(f"# `{name}`\n\n::: {module}.{name}\n")
            mkdocs_gen_files.set_edit_path(path, Path("src", *module.split(".")).with_suffix(".py"))
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as handle:
        handle.writelines(nav.build_literate_nav())
    root = Path(__file__).resolve().parents[1]
    for name in ROOT_PAGES:  # one copy: the repository's own files, their links to each other kept
        with mkdocs_gen_files.open(name.lower(), "w") as handle:
            handle.write(site_links((root / name).read_text()))


if __name__ in ("__main__", "<run_path>"):
    _write_pages()
