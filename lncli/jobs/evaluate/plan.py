"""One frozen plan per evaluation, built and checked before the first forward pass, then run.

:func:`build_plan` takes the checked options (:class:`~lncli.jobs.evaluate.options.EvalRequest`),
loads the checkpoints, resolves the data, plans the sweep (:func:`~lncli.jobs.evaluate.grid.plan_grid`:
the models built, the columns made for every batch size) and checks, on the records the sweep will
return (:meth:`~lncli.jobs.evaluate.grid.GridPlan.skeleton`), everything that would otherwise fail
after the compute: the ``--baseline`` column, every ``--fail-under`` bound's cell, and a ``--compare``
baseline's columns, cells and settings. Every user error is raised here. :func:`run_plan` then runs
the sweep and the gate and returns an :class:`~lncli.jobs.evaluate.result.EvalResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lncli.compare import compare_records, pair_cells
from lncli.data import dataset_meta
from lncli.jobs.evaluate.checkpoints import LoadedCheckpoint, checkpoint_notes, load_checkpoints
from lncli.jobs.evaluate.columns import mode_notes
from lncli.jobs.evaluate.grid import GridPlan, plan_grid, run_grid
from lncli.jobs.evaluate.options import EvalRequest
from lncli.jobs.evaluate.result import EvalResult
from lncli.jobs.evaluate.testset import EvalData, preprocess_flags, resolve_data
from lncli.report import EvalRun, columns, read_json, regression_checks, resolve_baseline, threshold_checks

__all__ = ["EvalPlan", "build_plan", "load_models", "run_plan"]

Progress = Callable[[int, int], None]

MIX_IS_PLAIN = "--mix with one noise and one severity draws the same cell for every image: identical to not mixing"


@dataclass(frozen=True, eq=False)
class EvalPlan:
    """Everything an evaluation will do, checked: the request, the models, the data, the sweep, the baseline.

    Attributes:
        request: the checked options.
        models: the loaded checkpoints (or a Python caller's modules).
        data: the resolved test set.
        grid: the planned sweep.
        baseline: the ``--compare`` baseline, read and matched to the sweep (None without one).
        notes: what lncli chose for the user, one line each (``note: ...`` on the command line).
        warnings: what the user should know about the inputs (weights left out by ``--non-strict``).
        provenance: where each option came from (``config_file``, ``from_file``, ``from_command_line``),
            recorded in the JSON's config block.
    """

    request: EvalRequest
    models: tuple[LoadedCheckpoint, ...]
    data: EvalData
    grid: GridPlan
    baseline: EvalRun | None
    notes: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def config_block(self) -> dict[str, Any]:
        """The JSON's ``config`` block: the sweep as resolved, every option, where each came from, the notes."""
        options = self.request.options
        return {
            **asdict(self.request.config),
            "checkpoints": [m.path for m in self.models],
            "data": options.data,
            "limit": options.limit,
            "config_file": None,
            "from_file": [],
            "from_command_line": [],
            **self.provenance,
            "options": _plain(asdict(options)),
            "notes": list(self.notes),
        }


def _plain(value: Any) -> Any:
    """Options in JSON/YAML types (paths as text, tuples as lists): ``options`` is itself a config file."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def load_models(request: EvalRequest) -> list[LoadedCheckpoint]:
    """Load the request's checkpoints (foreign ones with ``--arch`` and ``--data``'s metadata).

    Raises:
        LncliError: a path that is no checkpoint, weights that do not fit (see
            :func:`~lncli.jobs.evaluate.checkpoints.load_checkpoints`).
    """
    config, options = request.config, request.options
    # --data names a foreign checkpoint's classes and channels; only --arch says there is one.
    meta = None
    if config.arch and options.data:
        meta = dataset_meta(
            options.data, data_dir=options.data_dir, download=options.download, channels=config.channels
        )
    # An --arch given by the user is theirs to run (a package.module:function builder).
    return load_checkpoints(
        request.checkpoints, arch=config.arch, data=meta, strict=config.strict, allow_code=config.arch is not None
    )


def _resolve(request: EvalRequest, models: Sequence[LoadedCheckpoint]) -> EvalData:
    config, options = request.config, request.options
    return resolve_data(
        options.data,
        models,
        limit=options.limit,
        data_dir=options.data_dir,
        download=options.download,
        with_train_range=config.rescale,
        preprocess=preprocess_flags(config),
        channels=config.channels,
        skip_unreadable=config.skip_unreadable,
        workers=config.workers,
        severities=config.severities,
    )


def build_plan(
    request: EvalRequest,
    *,
    models: Sequence[LoadedCheckpoint] | None = None,
    data: EvalData | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> EvalPlan:
    """Load, resolve and check everything an evaluation needs; no image is evaluated.

    Args:
        request: the checked options (:func:`~lncli.jobs.evaluate.options.parse_options`).
        models: the models, already loaded (a Python caller's); None: the request's checkpoints.
        data: the test set, already resolved; None: the request's ``data`` (or the checkpoints').
        provenance: where each option came from, for the JSON's config block.

    Returns:
        The plan (:func:`run_plan` runs it).

    Raises:
        LncliError: any user error: a checkpoint or data that cannot be read or does not fit, an
            impossible column, a ``--baseline`` that names no column, a bound on a cell that will not
            run, a ``--compare`` baseline that cannot be read or whose columns, cells or settings differ.
    """
    config, gate = request.config, request.gate
    models = list(models) if models is not None else load_models(request)
    data = data if data is not None else _resolve(request, models)
    grid = plan_grid(models, data, config)
    skeleton = grid.skeleton()  # the records to come, settings and all: checked now, not after the compute
    if request.options.baseline:
        resolve_baseline(columns(skeleton), request.options.baseline)
    threshold_checks(skeleton, gate.thresholds, gate.max_drop)  # raises on a bound whose cell will not run
    baseline = None
    if gate.compare is not None:
        baseline = read_json(gate.compare, "--compare")
        pair_cells(skeleton, baseline.records)
    notes = [*checkpoint_notes(models), *data.notes, *mode_notes(models, config)]
    if config.mix and len(config.noises) * len(config.severities) == 1:
        notes.append(MIX_IS_PLAIN)
    warnings = [
        f"{Path(m.path).name} loaded with --non-strict: {m.load_report.summary()}" for m in models if m.load_report
    ]
    return EvalPlan(request, tuple(models), data, grid, baseline, tuple(notes), tuple(warnings), dict(provenance or {}))


def run_plan(plan: EvalPlan, *, progress: Progress | None = None) -> EvalResult:
    """Run a plan: the sweep, then the comparison with the baseline and every check of the gate.

    Args:
        plan: from :func:`build_plan`.
        progress: called as ``progress(done, total)`` (images x rows x columns).

    Returns:
        The records, the comparisons (with ``--compare``), the gate's checks and the config block.
    """
    gate = plan.request.gate
    records = run_grid(plan.grid, progress=progress)
    comparisons = None
    if plan.baseline is not None:
        comparisons = compare_records(
            records, plan.baseline.records, max_regression=gate.max_regression, significance=gate.significance
        )
    checks = threshold_checks(records, gate.thresholds, gate.max_drop) + regression_checks(comparisons or [])
    return EvalResult(
        records=records,
        config=plan.config_block(),
        comparisons=comparisons,
        checks=checks,
        notes=plan.notes,
        baseline=plan.request.options.baseline,
        compared_with=None if gate.compare is None else str(gate.compare),
        max_regression=gate.max_regression,
        significance=gate.significance,
    )
