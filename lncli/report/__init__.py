"""Render evaluation records: the side-by-side table, CSV/JSON, the plot and CI thresholds.

:func:`lncli.jobs.evaluate.evaluate_grid` returns flat :class:`~lncli.records.EvalRecord`
rows (long format, one per checkpoint x mode x noise x severity, as RobustBench's
``unaggregated_results.csv``). Everything here is a view of those rows, and depends on
:mod:`lncli.records` only, never on the jobs that make them:

* :mod:`.pivot`: the columns (checkpoint x mode) and their labels, means, and
  :func:`robustness` (mCE-style error ratios against a baseline column, Hendrycks &
  Dietterich, 2019).
* :mod:`.table`: :func:`render_table` pivots the records (rows noise x severity + clean +
  per-noise mean + overall mean, columns checkpoint x mode) into a rich table, one per
  batch size; rich prints plain text when stdout is not a terminal.
* :mod:`.files`: :func:`write_csv`, :func:`write_json`, :func:`plot_accuracy` write files,
  atomically through :mod:`lncli.io`.
* :mod:`.thresholds`: :func:`parse_threshold` and :func:`check_thresholds` implement
  ``--fail-under`` / ``--max-drop`` for CI gating; :func:`threshold_checks` gives every
  covered cell as a :class:`~.checks.Check`, passed or not (:mod:`.checks`).
* :mod:`.regression`: ``--compare``'s views: :func:`render_comparison` (baseline, now and
  delta per cell) and :func:`regression_checks` (the compute is :mod:`lncli.compare`).
* :mod:`.junit`, :mod:`.markdown`: the checks as JUnit XML (:func:`write_junit`) and as a
  Markdown summary (:func:`render_markdown`, for ``$GITHUB_STEP_SUMMARY``).
* :func:`read_json` reads a run's JSON back (the ``--compare`` baseline).
"""

from lncli.report.checks import Case, Check, cases
from lncli.report.files import EvalRun, check_plot_path, plot_accuracy, read_json, write_csv, write_json
from lncli.report.junit import junit_xml, write_junit
from lncli.report.markdown import render_markdown, write_markdown
from lncli.report.pivot import (
    MEAN,
    Column,
    ColumnKeyed,
    batch_sizes,
    by_batch_size,
    cell_label,
    columns,
    noise_mean,
    resolve_baseline,
    robustness,
    short_names,
)
from lncli.report.regression import regression_checks, render_comparison
from lncli.report.table import format_table, legend, render_table
from lncli.report.thresholds import Threshold, check_max_drop, check_thresholds, parse_threshold, threshold_checks

__all__ = [
    "MEAN",
    "Case",
    "Check",
    "Column",
    "ColumnKeyed",
    "EvalRun",
    "Threshold",
    "batch_sizes",
    "by_batch_size",
    "cases",
    "cell_label",
    "check_max_drop",
    "check_plot_path",
    "check_thresholds",
    "columns",
    "format_table",
    "junit_xml",
    "legend",
    "noise_mean",
    "parse_threshold",
    "plot_accuracy",
    "read_json",
    "regression_checks",
    "render_comparison",
    "render_markdown",
    "render_table",
    "resolve_baseline",
    "robustness",
    "short_names",
    "threshold_checks",
    "write_csv",
    "write_json",
    "write_junit",
    "write_markdown",
]
