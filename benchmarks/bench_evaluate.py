"""Benchmark: a whole ``evaluate_grid`` sweep vs the pure forward passes it contains.

Target (issue 5): sweep time <= 1.25x the forward passes of the same models, in
the same modes, over the same number of images. The difference is everything
the sweep adds: shuffling and gathering batches, generating the noise (once per
noise x severity batch, shared by every column), normalising, counting.

Setup: one BatchNorm and one LocalNorm checkpoint of the same architecture (random
init: only time matters), default modes (BN running + batch, LN local = 3 columns),
noises gaussian, shot, impulse at severities 0-5 (16 cells), batch 128, CPU.
The forward baseline runs the very same prepared modules (``make_runner``) on
pre-normalised float batches, one pass per cell x column.

Sweep, forward baseline and a data-only pass (gather + noise + normalise) are timed
in every run, in rotating order, so that load drifts hit all three; we report the
median of per-run sweep/forward ratios, mean +- std, and (forward + data) / forward
as a second view that is less sensitive to load.

``--conditions`` times the deployment conditions of issue 14 instead (results in
``bench_evaluate_conditions.{json,md}``), on the study's small_cnn at 28x28 (random init):

* TENT's cost: seconds per image of ``tent`` against ``batch`` (BN) and against ``local``
  (LocalNorm), same images, cells and batch size; the ratio is the price of its forward +
  backward + Adam step per batch.
* the batch-size sweep's cost: one ``evaluate_grid`` with ``--batch-size 1,16,128`` against a
  single-size run at 128, and against the three single-size runs added up (the sweep should cost
  what its parts cost: it adds nothing of its own).

Usage::

    python benchmarks/bench_evaluate.py                  # resnet20, 512 images, 3 runs -> benchmarks/results/
    python benchmarks/bench_evaluate.py --quick          # smoke test: 64 images, severities 0,3, 1 run, temp folder
    python benchmarks/bench_evaluate.py --arch small_cnn --data synthetic-gray --note "quiet machine"
    python benchmarks/bench_evaluate.py --conditions     # TENT and batch-size sweep cost (small_cnn, 28x28)
    python benchmarks/bench_evaluate.py --conditions --quick   # its smoke test: 32 images, 1 run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import QUICK_NOTE, RESULTS, cpu_model, default_out

from lncli import __version__
from lncli.checkpoint import NormSpec, checkpoint_from_model
from lncli.data import DATASETS, load_dataset, normalize
from lncli.io import atomic_write
from lncli.jobs.evaluate import EvalConfig, EvalData, LoadedCheckpoint, LocalNormCopies, evaluate_grid, make_runner
from lncli.models import create_model
from lncli.nn import get_norm_layer


def make_checkpoints(arch: str, data: str, group_size: int) -> list[LoadedCheckpoint]:
    """A BN and a LocalNorm (8 heads, the paper's 128/16) checkpoint, in memory."""
    meta = DATASETS[data]
    out = []
    for kind, norm in (("batchnorm", NormSpec("batchnorm")), ("localnorm", NormSpec("localnorm", group_size, 8))):
        torch.manual_seed(0)
        layer = get_norm_layer(kind, group_size=group_size, num_heads=8)
        model = create_model(arch, num_classes=meta.num_classes, in_channels=meta.in_channels, norm_layer=layer)
        ckpt = checkpoint_from_model(model, arch=arch, arch_kwargs={}, norm=norm, data=meta)
        out.append(LoadedCheckpoint(path=f"{arch}-{kind}", sha256="0" * 64, checkpoint=ckpt))
    return out


def time_sweep(models: list[LoadedCheckpoint], data: EvalData, config: EvalConfig) -> float:
    t0 = time.perf_counter()
    evaluate_grid(models, data, config)
    return time.perf_counter() - t0


def time_forward(models: list[LoadedCheckpoint], data: EvalData, config: EvalConfig, n_cells: int) -> float:
    """The forward passes alone: same modules and modes, pre-normalised batches, no noise, no counting."""
    from lncli.checkpoint import model_from_checkpoint

    runners, copies = [], LocalNormCopies()
    for lc in models:
        model = model_from_checkpoint(lc.checkpoint)
        modes = ("local",) if lc.checkpoint.norm.kind == "localnorm" else ("running", "batch")
        g = lc.checkpoint.norm.group_size or 16
        for mode in modes:
            runners.append(
                make_runner(model, mode, heads=config.heads, group_size=g, batch_size=config.batch_size, copies=copies)
            )
    x = normalize(data.clean.images, data.clean.meta)
    batches = list(x.split(config.batch_size))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(n_cells):
            for xb in batches:
                for r in runners:
                    r.predict(xb)
    return time.perf_counter() - t0


def time_data(data: EvalData, config: EvalConfig, severities: tuple[int, ...]) -> float:
    """The sweep's own work without the models: gather, corrupt and normalise every cell's batches once."""
    from lncli.noise import corrupt

    order = torch.randperm(len(data.clean), generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for noise in config.noises:
            for sev in severities:
                if sev == 0 and noise != config.noises[0]:
                    continue  # the clean cell is shared by all noises
                for start in range(0, len(order), config.batch_size):
                    idx = order[start : start + config.batch_size]
                    x = data.clean.images[idx]
                    if sev:
                        x = corrupt(x, noise, sev, seed=0, profile=config.profile, indices=idx)
                    normalize(x, data.clean.meta)
    return time.perf_counter() - t0


def ms(v: list[float]) -> dict[str, float]:
    """Mean, std and median of a list of timings."""
    return {
        "mean": statistics.mean(v),
        "std": statistics.stdev(v) if len(v) > 1 else 0.0,
        "median": statistics.median(v),
    }


def hardware(threads: int) -> dict:
    """The evidence header's machine: CPU, threads and the load average when it is taken."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": threads, "loadavg": load}


def versions() -> dict:
    return {"lncli": __version__, "torch": torch.__version__, "python": platform.python_version()}


def write_results(result: dict, md: str, out: Path) -> None:
    """``out``.json and ``out``.md, atomically."""
    with atomic_write(out.with_suffix(".json")) as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    with atomic_write(out.with_suffix(".md")) as fh:
        fh.write(md)
    print(md)
    print(f"wrote {out.with_suffix('.json')} and .md", file=sys.stderr)


def synthetic_data(data: str, images: int) -> EvalData:
    """``images`` test images of a synthetic set, tiled when its test split is smaller (noise is keyed by index)."""
    d = EvalData.from_imageset(load_dataset(data, "test", limit=images))
    if len(d.clean) < images:
        reps = -(-images // len(d.clean))
        imgs = d.clean.images.repeat(reps, 1, 1, 1)[:images]
        labels = d.clean.labels.repeat(reps)[:images]
        d = EvalData.from_imageset(type(d.clean)(imgs, labels, d.clean.meta))
    return d


def bench_conditions(args: argparse.Namespace) -> int:
    """TENT's time per image against its model's default statistics, and the batch-size sweep's cost."""
    images = args.images or (32 if args.quick else 1024)
    runs = args.runs or (1 if args.quick else 3)
    bn, ln = make_checkpoints("small_cnn", "synthetic-gray", 16)
    data = synthetic_data("synthetic-gray", images)
    base = EvalConfig(noises=("gaussian",), severities=(0, 3), batch_size=128, device="cpu", workers=args.workers)
    sweep = dataclasses.replace(base, modes=("batch", "single"))  # no G to divide the sizes: any size runs
    cases = {  # name: (models, config)
        "bn batch": ([bn], dataclasses.replace(base, modes=("batch",))),
        "bn tent": ([bn], dataclasses.replace(base, modes=("tent",))),
        "ln local": ([ln], dataclasses.replace(base, modes=("local",))),
        "ln tent": ([ln], dataclasses.replace(base, modes=("tent",))),
        "sweep 1,16,128": ([bn, ln], dataclasses.replace(sweep, batch_sizes=(1, 16, 128))),
        "single 128": ([bn, ln], sweep),
        "single 16": ([bn, ln], dataclasses.replace(sweep, batch_size=16)),
        "single 1": ([bn, ln], dataclasses.replace(sweep, batch_size=1)),
    }
    load_before = hardware(args.threads)["loadavg"]
    for models, config in cases.values():  # warm-up: lazy imports, allocator, noise tables
        time_sweep(models, synthetic_data("synthetic-gray", 32), config)
    got: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(runs):
        names = list(cases)[r % len(cases) :] + list(cases)[: r % len(cases)]  # rotate against load drifts
        for name in names:
            models, config = cases[name]
            got[name].append(time_sweep(models, data, config))
        print(f"run {r + 1}/{runs}: " + "  ".join(f"{k} {got[k][-1]:.2f}s" for k in cases), file=sys.stderr)
    per_image = {k: ms([t / (images * 2) for t in v]) for k, v in got.items() if k.startswith(("bn", "ln"))}
    ratio = {
        "bn tent / batch": ms([t / b for t, b in zip(got["bn tent"], got["bn batch"])]),
        "ln tent / local": ms([t / b for t, b in zip(got["ln tent"], got["ln local"])]),
        "sweep / single 128": ms([s / b for s, b in zip(got["sweep 1,16,128"], got["single 128"])]),
        "sweep / (1 + 16 + 128 singles)": ms(
            [
                s / (a + b + c)
                for s, a, b, c in zip(got["sweep 1,16,128"], got["single 1"], got["single 16"], got["single 128"])
            ]
        ),
    }
    result = {
        "benchmark": "evaluate: TENT's cost and the batch-size sweep's cost",
        "arch": "small_cnn",
        "data": "synthetic-gray (28x28, 1 channel)",
        "images": images,
        "cells": 2,
        "runs": runs,
        "quick": args.quick,
        "seconds": {k: ms(v) for k, v in got.items()},
        "seconds_per_image": per_image,
        "ratios": ratio,
        "hardware": {**hardware(args.threads), "loadavg_before": load_before},
        "versions": versions(),
        "note": args.note,
    }
    write_results(result, conditions_markdown(result), args.out.with_name(args.out.name + "_conditions"))
    return 0


def conditions_markdown(result: dict) -> str:
    """The evidence page of :func:`bench_conditions`."""
    r, spi, sec, hw = result["ratios"], result["seconds_per_image"], result["seconds"], result["hardware"]

    def load(v: tuple[float, ...] | None) -> str:
        return str(tuple(round(x, 2) for x in v)) if v else "n/a"

    rows = "\n".join(
        f"| {k} | {1e3 * v['median']:.3f} | {1e3 * v['mean']:.3f} +- {1e3 * v['std']:.3f} |" for k, v in spi.items()
    )
    sweep = "\n".join(
        f"| {k} | {v['median']:.2f} | {v['mean']:.2f} +- {v['std']:.2f} |"
        for k, v in sec.items()
        if not k.startswith(("bn", "ln"))
    )
    return f"""# bench_evaluate --conditions: TENT's cost and the batch-size sweep's cost

Evidence ({result["runs"]} interleaved runs, medians): **TENT costs {r["bn tent / batch"]["median"]:.2f}x `batch` per image on BN**
and **{r["ln tent / local"]["median"]:.2f}x `local` on LocalNorm** (batch 128); a `--batch-size 1,16,128` sweep costs
**{r["sweep / single 128"]["median"]:.1f}x** a single run at 128 and **{r["sweep / (1 + 16 + 128 singles)"]["median"]:.2f}x** the three
single-size runs added up.

| mode (batch 128) | ms / image, median | mean +- std |
|---|---|---|
{rows}

| run (BN and LocalNorm, each in batch + single: 4 columns) | s, median | mean +- std |
|---|---|---|
{sweep}

Setup: {result["arch"]} on {result["data"]}, random init, {result["images"]} test images x {result["cells"]} cells (clean, gaussian 3);
BN: `batch` vs `tent`; LocalNorm (G = 16, 8 heads): `local` vs `tent`; TENT: Adam lr 1e-3, 1 step per batch.
Time per image = wall time of `evaluate_grid` / (images x cells), so the sweep's own work (noise, normalisation) is in both.
CPU, {hw["torch_threads"]} torch thread(s).

Hardware: {hw["cpu"]} ({hw["logical_cpus"]} logical CPUs); load average before {load(hw["loadavg_before"])}, after {load(hw["loadavg"])}
(the machine is shared: other jobs ran during these timings when the load average is above the thread count).
Versions: lncli {result["versions"]["lncli"]}, torch {result["versions"]["torch"]}, Python {result["versions"]["python"]}.
{("Note: " + result["note"]) if result["note"] else ""}
{QUICK_NOTE if result["quick"] else ""}
"""


def sweep_markdown(
    result: dict, args: argparse.Namespace, severities: tuple[int, ...], load: tuple[float, ...] | None
) -> str:
    """The evidence page of the sweep-vs-forward benchmark."""
    runs, images, n_cells = result["runs"], result["images"], result["cells"]
    return f"""# bench_evaluate: whole sweep vs pure forward passes

Evidence: sweep/forward = **{result["ratio"]["median"]:.3f}** (median of {runs} interleaved runs; mean {result["ratio"]["mean"]:.3f} +- {result["ratio"]["std"]:.3f}); target <= 1.25 -> {"met" if result["meets_target"] else "NOT met"}.

| | mean s | std s |
|---|---|---|
| whole sweep (`evaluate_grid`) | {result["sweep_s"]["mean"]:.2f} | {result["sweep_s"]["std"]:.2f} |
| forward passes only | {result["forward_s"]["mean"]:.2f} | {result["forward_s"]["std"]:.2f} |
| data only (gather + noise + normalise, once per cell) | {result["data_s"]["mean"]:.2f} | {result["data_s"]["std"]:.2f} |

Second view, less sensitive to load: (forward + data) / forward = {result["component_ratio"]:.3f} (medians).

Setup: {args.arch} on {args.data} ({images} test images), BN (running, batch) + LocalNorm (local, G=16, 8 heads) = 3 columns;
gaussian/shot/impulse at severities {",".join(map(str, severities))} ({n_cells} cells, clean included); batch 128;
{result["forward_images"]} image-forwards per sweep; CPU, {args.threads} torch thread(s), noise prefetch workers {args.workers}.
The forward baseline runs the same prepared modules on pre-normalised batches.

Hardware: {result["hardware"]["cpu"]} ({os.cpu_count()} logical CPUs), load average after run {tuple(round(x, 2) for x in load) if load else "n/a"}.
Versions: lncli {__version__}, torch {torch.__version__}, Python {platform.python_version()}.
{("Note: " + args.note) if args.note else ""}
{QUICK_NOTE if result["quick"] else ""}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--data", default="synthetic", help="synthetic (32x32 RGB) or synthetic-gray (28x28)")
    p.add_argument("--images", type=int, default=None, help="test images (default 512; --quick 64)")
    p.add_argument("--runs", type=int, default=None, help="interleaved repetitions (default 3; --quick 1)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="evaluate's noise prefetch threads")
    p.add_argument("--quick", action="store_true", help="smoke test (64 images, severities 0,3, 1 run), temp folder")
    p.add_argument("--note", default="", help="free text saved with the results (e.g. machine load)")
    p.add_argument(
        "--out", type=Path, default=None, help=f"results stem (default {RESULTS / 'bench_evaluate'}; --quick: temp)"
    )
    p.add_argument("--conditions", action="store_true", help="TENT and batch-size sweep cost instead (issue 14)")
    args = p.parse_args(argv)
    args.out = args.out or default_out(args.quick) / "bench_evaluate"
    torch.set_num_threads(args.threads)
    if args.conditions:
        return bench_conditions(args)
    images = args.images or (64 if args.quick else 512)
    runs = args.runs or (1 if args.quick else 3)
    severities = (0, 3) if args.quick else (0, 1, 2, 3, 4, 5)

    models = make_checkpoints(args.arch, args.data, 16)
    data = synthetic_data(args.data, images)
    config = EvalConfig(
        noises=("gaussian", "shot", "impulse"),
        severities=severities,
        batch_size=128,
        device="cpu",
        workers=args.workers,
    )
    n_cells = 1 + 3 * (len(severities) - 1)

    time_sweep(models, data, config)  # warm-up (allocator, lazy imports, noise tables)
    sweeps, fwds, datas, ratios = [], [], [], []
    for r in range(runs):
        # Rotate the order of the three timings so that load drifts do not favour one of them.
        timers = [
            ("sweep", lambda: time_sweep(models, data, config)),
            ("forward", lambda: time_forward(models, data, config, n_cells)),
            ("data", lambda: time_data(data, config, severities)),
        ]
        timers = timers[r % 3 :] + timers[: r % 3]
        got = {name: fn() for name, fn in timers}
        sweeps.append(got["sweep"])
        fwds.append(got["forward"])
        datas.append(got["data"])
        ratios.append(got["sweep"] / got["forward"])
        print(
            f"run {r + 1}/{runs}: sweep {got['sweep']:.2f}s  forward {got['forward']:.2f}s  "
            f"data {got['data']:.2f}s  ratio {ratios[-1]:.3f}",
            file=sys.stderr,
        )

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {
        "benchmark": "evaluate sweep vs pure forward passes",
        "target": "sweep / forward <= 1.25",
        "arch": args.arch,
        "data": args.data,
        "images": images,
        "columns": ["bn:running", "bn:batch", "ln:local"],
        "cells": n_cells,
        "forward_images": images * n_cells * 3,
        "batch_size": config.batch_size,
        "workers": args.workers,
        "runs": runs,
        "quick": args.quick,
        "sweep_s": ms(sweeps),
        "forward_s": ms(fwds),
        "data_s": ms(datas),
        "ratio": ms(ratios),
        # Contention-robust second view: the sweep's own work (noise + normalisation) added to the forwards.
        "component_ratio": (statistics.median(fwds) + statistics.median(datas)) / statistics.median(fwds),
        "meets_target": statistics.median(ratios) <= 1.25,
        "hardware": {
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "loadavg_after": load,
        },
        "versions": {"lncli": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "note": args.note,
    }
    write_results(result, sweep_markdown(result, args, severities, load), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
