"""What ``lncli evaluate`` does around the sweep: output and gate checks up front, loading the
checkpoints, and the reports and exit code after (:mod:`lncli.cli.evaluate` holds the options).

Nothing here imports torch at import time: the jobs are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from lncli import report
from lncli.cli.app import err_console
from lncli.config.evaluate import EvalConfig
from lncli.errors import LncliError
from lncli.io import check_distinct, check_output_file
from lncli.records import ComparisonRecord, EvalRecord

if TYPE_CHECKING:  # the jobs import torch: not at `lncli --help` time
    from lncli.jobs.evaluate import LoadedCheckpoint

__all__ = ["Gate", "Outputs", "check_columns", "check_gate", "check_outputs", "load_models", "report_evaluation"]


@dataclass(frozen=True)
class Outputs:
    """The files a run writes (None: not asked for)."""

    csv: Path | None = None
    json: Path | None = None
    plot: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None


@dataclass(frozen=True)
class Gate:
    """What decides the exit code: the bounds, and the baseline of ``--compare`` with its gate."""

    thresholds: list[report.Threshold]
    max_drop: float | None
    compare: Path | None = None
    baseline: report.EvalRun | None = None
    max_regression: float = 0.0
    significance: float = EvalConfig.significance


def check_outputs(outputs: Outputs, max_drop: float | None, compare: Path | None) -> None:
    """Refuse bad output paths and bounds before any compute: a typo must not cost the whole grid.

    No output may replace the ``--compare`` baseline: accepting a run as the new baseline is a
    deliberate copy, not a side effect of a check.
    """
    if outputs.csv:
        check_output_file(outputs.csv, "--csv", (".csv",))
    if outputs.json:
        check_output_file(outputs.json, "--json", (".json",))
    if outputs.plot:
        report.check_plot_path(outputs.plot)
    if outputs.junit:
        check_output_file(outputs.junit, "--junit", (".xml",))
    if outputs.markdown:
        # No suffix is accepted too: $GITHUB_STEP_SUMMARY names a file without one (step_summary_<id>).
        check_output_file(outputs.markdown, "--markdown", (".md", ".markdown", ""))
    check_distinct(
        {
            "--csv": outputs.csv,
            "--json": outputs.json,
            "--plot": outputs.plot,
            "--junit": outputs.junit,
            "--markdown": outputs.markdown,
        },
        {"--compare": compare},
    )
    report.check_max_drop(max_drop)


def check_gate(
    thresholds: list[report.Threshold],
    max_drop: float | None,
    compare: Path | None,
    max_regression: float | None,
    significance: float,
) -> Gate:
    """The gate, with the baseline read and checked, before any compute (a bad one costs nothing)."""
    from lncli.compare import check_regression_settings

    check_regression_settings(max_regression, significance)
    if compare is None:
        if max_regression is not None:
            raise LncliError("--max-regression needs --compare BASELINE.json (the run to compare with)")
        return Gate(thresholds, max_drop, significance=significance)
    baseline = report.read_json(compare, "--compare")
    return Gate(thresholds, max_drop, compare, baseline, max_regression or 0.0, significance)


def check_columns(gate: Gate, models: list[LoadedCheckpoint], config: EvalConfig) -> None:
    """Refuse, before any compute, a baseline whose columns (checkpoint x mode) are not this run's."""
    if gate.baseline is None:
        return
    from lncli.compare import match_columns
    from lncli.jobs.evaluate import column_keys

    match_columns(column_keys(models, config), {m.path: m.sha256 for m in models}, gate.baseline.records)


def _compare(records: list[EvalRecord], gate: Gate) -> list[ComparisonRecord] | None:
    """This run against the baseline (None without ``--compare``)."""
    if gate.baseline is None:
        return None
    from lncli.compare import compare_records

    return compare_records(
        records, gate.baseline.records, max_regression=gate.max_regression, significance=gate.significance
    )


def report_evaluation(
    records: list[EvalRecord], run: dict[str, Any], outputs: Outputs, baseline: str | None, gate: Gate
) -> None:
    """Write the files, print the tables, and exit 1 when a bound or the regression gate fails.

    A comparison that is refused (settings differ) still writes this run's CSV/JSON/plot first,
    without the comparison, so that the results are not lost; then the one-line error.
    """
    refused: LncliError | None = None
    try:
        comparisons = _compare(records, gate)
    except LncliError as exc:
        comparisons, refused = None, exc
    compare_info = {
        "baseline": str(gate.compare),
        "max_regression": gate.max_regression,
        "significance": gate.significance,
    }
    if outputs.csv:
        report.write_csv(records, outputs.csv, comparisons=comparisons)
    if outputs.json:
        report.write_json(records, outputs.json, config=run, comparison=compare_info, comparisons=comparisons)
    if outputs.plot:
        report.plot_accuracy(records, outputs.plot)
    if refused is not None:
        raise refused
    out = Console()  # after the files, so that a bad --baseline never costs the results
    out.print(report.render_table(records, baseline=baseline, width=out.width))
    if comparisons is not None:
        out.print(report.render_comparison(comparisons, baseline=str(gate.compare)))
    checks = report.threshold_checks(records, gate.thresholds, gate.max_drop)
    checks += report.regression_checks(comparisons or [])
    _write_gate_reports(records, checks, outputs, run, gate)
    failures = [c.message for c in checks if not c.passed]
    for line in failures:
        err_console.print(f"[bold red]FAIL[/] {line}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(code=1)


def load_models(
    checkpoints: list[str], config: EvalConfig, data: str | None, data_dir: Path | None, download: bool
) -> list[LoadedCheckpoint]:
    """Load the CKPT arguments (foreign ones with --arch and --data's metadata) and list what --non-strict left out."""
    from lncli.data import dataset_meta
    from lncli.jobs.evaluate import load_checkpoints

    # --data names a foreign checkpoint's classes and channels (--channels its channels); only --arch says there is one.
    meta = (
        dataset_meta(data, data_dir=data_dir, download=download, channels=config.channels)
        if config.arch and data
        else None
    )
    # An --arch typed by the user is theirs to run (a package.module:function builder).
    models = load_checkpoints(
        checkpoints, arch=config.arch, data=meta, strict=config.strict, allow_code=config.arch is not None
    )
    for loaded in models:
        if loaded.load_report:
            err_console.print(
                f"[yellow]warning:[/] {escape(Path(loaded.path).name)} loaded with --non-strict: "
                f"{escape(loaded.load_report.summary())}",
                highlight=False,
                soft_wrap=True,
            )
    return models


def _write_gate_reports(
    records: list[EvalRecord], checks: list[report.Check], outputs: Outputs, run: dict[str, Any], gate: Gate
) -> None:
    """The JUnit XML and the Markdown summary of the checks."""
    baseline = None if gate.compare is None else str(gate.compare)
    if outputs.junit:
        first = records[0] if records else None
        properties = {
            "checkpoints": ", ".join(run.get("checkpoints", [])),
            "data": first.data if first else None,
            "n": first.n if first else None,
            "batch_size": run.get("batch_size"),
            "noise_seed": run.get("seed"),
            "order_seed": run.get("order_seed"),
            "profile": run.get("profile"),
            "baseline": baseline,
            "config_file": run.get("config_file"),
            "lncli_version": first.lncli_version if first else None,
        }
        report.write_junit(checks, outputs.junit, properties=properties)
    if outputs.markdown:
        report.write_markdown(report.render_markdown(records, checks, baseline=baseline), outputs.markdown)
