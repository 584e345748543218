"""Reports of finished runs: the ensemble's Table 7/8 report and plots, VisE's downstream tables and plots."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_memotion.lazy import lazy_exports

__all__ = ["format_table7", "plot_scores", "render_report"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "format_table7": "hf_memotion.metrics.tables",
        "plot_scores": "hf_memotion.reporting.ensemble_report",
        "render_report": "hf_memotion.reporting.ensemble_report",
    },
)

if TYPE_CHECKING:
    from hf_memotion.metrics.tables import format_table7
    from hf_memotion.reporting.ensemble_report import plot_scores, render_report
