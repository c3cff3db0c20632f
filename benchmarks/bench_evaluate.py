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

Usage::

    python benchmarks/bench_evaluate.py                  # resnet20, 512 images, 3 runs -> benchmarks/results/
    python benchmarks/bench_evaluate.py --quick          # 256 images, severities 0,3,5, 3 runs
    python benchmarks/bench_evaluate.py --arch small_cnn --data synthetic-gray --note "quiet machine"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import cpu_model

from lncli import __version__
from lncli.checkpoint import NormSpec, checkpoint_from_model
from lncli.data import DATASETS, load_dataset, normalize
from lncli.io import atomic_write
from lncli.jobs.evaluate import EvalConfig, EvalData, LoadedCheckpoint, LocalNormCopies, evaluate_grid, make_runner
from lncli.models import create_model
from lncli.nn import get_norm_layer

RESULTS = Path(__file__).resolve().parent / "results"


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
    from lncli.checkpoint import build_model

    runners, copies = [], LocalNormCopies()
    for lc in models:
        model = build_model(lc.checkpoint)
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--data", default="synthetic", help="synthetic (32x32 RGB) or synthetic-gray (28x28)")
    p.add_argument("--images", type=int, default=None, help="test images (default 512; --quick 256)")
    p.add_argument("--runs", type=int, default=None, help="interleaved repetitions (default 3; --quick 3)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="evaluate's noise prefetch threads")
    p.add_argument("--quick", action="store_true", help="small smoke run (256 images, severities 0,3,5)")
    p.add_argument("--note", default="", help="free text saved with the results (e.g. machine load)")
    p.add_argument("--out", type=Path, default=RESULTS / "bench_evaluate")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = args.images or (256 if args.quick else 512)
    runs = args.runs or 3
    severities = (0, 3, 5) if args.quick else (0, 1, 2, 3, 4, 5)

    models = make_checkpoints(args.arch, args.data, 16)
    data = EvalData.from_imageset(load_dataset(args.data, "test", limit=images))
    if len(data.clean) < images:  # the synthetic test split is small: tile it (noise is keyed by index)
        reps = -(-images // len(data.clean))
        imgs = data.clean.images.repeat(reps, 1, 1, 1)[:images]
        labels = data.clean.labels.repeat(reps)[:images]
        data = EvalData.from_imageset(type(data.clean)(imgs, labels, data.clean.meta))
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

    def ms(v: list[float]) -> dict[str, float]:
        return {
            "mean": statistics.mean(v),
            "std": statistics.stdev(v) if len(v) > 1 else 0.0,
            "median": statistics.median(v),
        }

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
    with atomic_write(args.out.with_suffix(".json")) as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    md = f"""# bench_evaluate: whole sweep vs pure forward passes

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
"""
    with atomic_write(args.out.with_suffix(".md")) as fh:
        fh.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
