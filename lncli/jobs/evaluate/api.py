"""``lncli.evaluate`` and ``lncli.load_model``: the evaluate job from Python, with the command line's options.

::

    import lncli
    res = lncli.evaluate({"bn": "bn.pt", "mine": model}, "fashion-mnist", noise="gaussian", severity=(0, 3, 5))
    res.records                                   # EvalRecord per cell, as in the JSON
    print(res.table())                            # the command line's table
    res.to_csv("r.csv"); res.to_json("r.json"); res.plot("r.png")
    res.check(fail_under="gaussian:5=0.3")        # the failing cells, as the command line's gate
    res.compare("baseline.json", max_regression=0.02)
    model = lncli.load_model("bn.pt")             # a checkpoint's module, weights loaded, in eval mode

Every keyword is an option of ``lncli evaluate`` by its long name (:class:`~.options.EvalOptions`), checked
the same way and before any compute: the command line, a ``--config`` file and these keywords build the
same plan (:mod:`.plan`). Files named by the options (``csv=``, ``json=``, ``junit=``...) are written; a
failed bound does not raise: it is in the result's :attr:`~.result.EvalResult.failures`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from lncli.checkpoint import model_from_checkpoint
from lncli.data import dataset_meta
from lncli.errors import LncliError
from lncli.jobs.evaluate.checkpoints import LoadedCheckpoint
from lncli.jobs.evaluate.inputs import (
    DataArg,
    ModelsArg,
    arrays_data,
    data_meta,
    dataset_data,
    module_checkpoint,
    split_models,
)
from lncli.jobs.evaluate.options import EvalRequest, evaluate_options, parse_options
from lncli.jobs.evaluate.plan import build_plan, load_models, run_plan
from lncli.jobs.evaluate.result import EvalResult
from lncli.jobs.evaluate.testset import EvalData, preprocess_flags

__all__ = ["evaluate", "load_model"]


def evaluate(
    models: ModelsArg, data: DataArg = None, *, progress: Callable[[int, int], None] | None = None, **options: Any
) -> EvalResult:
    """Evaluate models side by side over noises x severities, as ``lncli evaluate`` does.

    Args:
        models: a checkpoint path (file, folder or glob), an ``nn.Module``, a list of them, or a
            ``{name: path_or_module}`` dict (the names label the columns). A module is never changed:
            the sweep runs a copy of it.
        data: a data spec as on the command line (``"fashion-mnist"``, ``"imagefolder:PATH"``, ...;
            None: the checkpoints'), a ``torch.utils.data.Dataset`` of ``(image, label)`` (PIL images,
            uint8 HWC arrays or CHW tensors in [0, 1]), or an ``(images, labels)`` pair.
        progress: called as ``progress(done, total)`` while the sweep runs.
        **options: any option of ``lncli evaluate`` by its long name (``noise``, ``severity``, ``mode``,
            ``batch_size``, ``mean``, ``fail_under``, ``csv``...), as text or Python values.

    Returns:
        The records, the gate's checks and the views of them (:class:`~lncli.jobs.evaluate.result.EvalResult`).

    Raises:
        LncliError: any bad option, model or data, before any image is evaluated.
    """
    if "checkpoints" in options or "data" in options:
        raise LncliError("pass the models and the data as lncli.evaluate's first two arguments")
    entries = split_models(models)
    paths = [str(m) for _, m in entries if not isinstance(m, nn.Module)]
    spec = data if isinstance(data, str) else None
    request = parse_options(evaluate_options({**options, "checkpoints": tuple(paths), "data": spec}))
    loaded = _load(entries, request, data)
    built = _data(data, loaded, request)
    plan = build_plan(request, models=loaded, data=built, provenance={"from_python": sorted(options)})
    result = run_plan(plan, progress=progress)
    result.write(request.outputs)
    return result


def _load(
    entries: list[tuple[str | None, str | Path | nn.Module]], request: EvalRequest, data: DataArg
) -> list[LoadedCheckpoint]:
    """The models in order: checkpoints loaded (named by the caller's key when given), modules wrapped."""
    modules = [m for _, m in entries if isinstance(m, nn.Module)]
    meta = None
    if modules:
        if data is None:
            raise LncliError("an nn.Module needs data= (a spec, a Dataset or an (images, labels) pair)")
        options = request.options
        meta = (
            dataset_meta(data, data_dir=options.data_dir, download=options.download, channels=options.channels)
            if isinstance(data, str)
            else data_meta(data, options.channels, modules)
        )
    loaded: list[LoadedCheckpoint] = []
    for name, model in entries:
        if isinstance(model, nn.Module):
            assert meta is not None and name is not None  # modules are named by split_models
            loaded.append(module_checkpoint(name, model, meta))
            continue
        found = load_models(dataclasses.replace(request, checkpoints=(str(model),)))
        loaded += [dataclasses.replace(c, path=name) if name and len(found) == 1 else c for c in found]
    return loaded


def _data(data: DataArg, models: list[LoadedCheckpoint], request: EvalRequest) -> EvalData | None:
    """A Dataset's or a pair's :class:`EvalData` (None: a spec, resolved by the plan as on the command line)."""
    if data is None or isinstance(data, str):
        return None
    flags, limit = preprocess_flags(request.config), request.options.limit
    if isinstance(data, tuple):
        if len(data) != 2:
            raise LncliError(f"data as a tuple must be (images, labels), got {len(data)} items")
        return arrays_data(data[0], data[1], models, flags, limit)
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise LncliError(f"data must be a spec, a Dataset or an (images, labels) pair, not {type(data).__name__}")
    return dataset_data(data, models, flags, limit)


def load_model(
    path: str | Path, *, arch: str | None = None, data: str | None = None, non_strict: bool = False
) -> nn.Module:
    """A checkpoint's model: built, its weights loaded, in eval mode, on the CPU.

    Args:
        path: an lncli checkpoint, or a foreign one (a bare state_dict, a Lightning ``.ckpt``) with ``arch``.
        arch: a foreign checkpoint's architecture, as ``--arch``.
        data: a foreign checkpoint's dataset (its classes and channels), as ``--data``.
        non_strict: load weights with missing or unexpected keys, as ``--non-strict``.

    Raises:
        LncliError: the file is not one checkpoint, or its weights do not fit.
    """
    request = parse_options(
        evaluate_options({"checkpoints": (str(path),), "arch": arch, "data": data, "non_strict": non_strict})
    )
    loaded = load_models(request)
    if len(loaded) != 1:
        raise LncliError(f"{path} names {len(loaded)} checkpoints; load_model takes one file")
    return model_from_checkpoint(loaded[0].checkpoint).eval()
