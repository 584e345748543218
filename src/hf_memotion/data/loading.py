"""The ``data:`` section of a config: a Memotion release folder, a data file or Hub id, or the demo data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets

__all__ = ["load_data"]


def load_data(section: Mapping[str, Any], *, source: str | None = None) -> datasets.DatasetDict:
    """Load the data a config's ``data:`` section names.

    ``{"path": ...}`` is anything :func:`hf_memotion.data.load_memotion` reads (a release folder, a
    parquet file, a Hub id) with its options (``test_path``, ``on_error``, ``verify_images``,
    ``revision``, ``num_proc``); ``{"demo": {...}}`` generates (or reuses) the demo data with those
    :class:`~hf_memotion.data.DemoDataSpec` settings plus ``output_dir``. A misspelt key is refused with
    the file (``source``), the section and the nearest valid key.

    Examples:
        >>> load_data({"demo": {"n_trian": 10}}, source="run.yaml")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hf_memotion.specs.SpecError: run.yaml, section 'data.demo': unknown key 'n_trian' (did you mean 'n_train'?); ...
    """
    import dataclasses
    import inspect

    from hf_memotion.data import DemoDataSpec, load_memotion, make_demo_data
    from hf_memotion.specs import check_keys

    section = dict(section or {})
    if "path" in section and "demo" in section:
        raise ValueError("the data section takes either 'path' or 'demo', not both")
    if "demo" in section:
        from hf_memotion.distributed import process_state

        demo = dict(section.pop("demo") or {})
        check_keys(section, ["demo"], section="data", source=source)
        demo_keys = ["output_dir", "overwrite", *(f.name for f in dataclasses.fields(DemoDataSpec))]
        check_keys(demo, demo_keys, section="data.demo", source=source)
        with process_state().main_process_first():  # one process writes, the others reuse its files
            root = make_demo_data(demo.pop("output_dir", "outputs/demo_data"), **demo)
        return load_memotion(root)
    if "path" in section:
        options = [n for n in inspect.signature(load_memotion).parameters if n != "path"]
        check_keys(section, ["path", *options], section="data", source=source)
        path = section.pop("path")
        return load_memotion(path, **section)
    raise ValueError("the data section needs 'path' (Memotion folder, data file or Hub id) or 'demo' (settings)")
