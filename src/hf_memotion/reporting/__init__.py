"""Reports of finished runs: the ensemble's Table 7/8 report and plots, VisE's downstream tables and plots."""

from hf_memotion.metrics.tables import format_table7
from hf_memotion.reporting.ensemble_report import plot_scores, render_report

__all__ = ["format_table7", "plot_scores", "render_report"]
