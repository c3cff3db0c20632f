"""Benchmark: LocalNorm2d vs BatchNorm2d on a CIFAR ResNet-20, CPU, batch 128.

Target (issue 3): LN/BN <= 1.05 per train step and <= 1.10 per eval forward.

BN and each LN variant (consecutive and strided grouping; with ``--with-native`` also
LocalNorm's native-F.batch_norm fallback path) are timed *interleaved*
in one run (each iteration times every variant once, in rotating order), so that
machine load drifts hit all of them alike; we report the median over iterations
and, as a second view, the median of the per-iteration LN/BN ratios.

Usage::

    python benchmarks/bench_norm.py                 # 30 iterations, writes benchmarks/results/
    python benchmarks/bench_norm.py --quick         # smoke test: batch 16, 1 iteration, into a temporary folder
    python benchmarks/bench_norm.py --iters 50 --threads 2 --note "quiet machine"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import QUICK_NOTE, QUICK_THREADS, RESULTS, cpu_model, default_out
from torch import nn

from lncli.io import atomic_write
from lncli.models import create_model
from lncli.nn import get_norm_layer, localnorm_layers, set_test_mode


def build(kind: str, group_size: int, num_heads: int, grouping: str, seed: int) -> nn.Module:
    """ResNet-20 (10 classes, RGB) with the given norm, same init for every variant."""
    torch.manual_seed(seed)
    norm = get_norm_layer(kind, group_size=group_size, num_heads=num_heads, grouping=grouping)
    return create_model("resnet20", num_classes=10, in_channels=3, norm_layer=norm)


def make_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[Callable[[], None], Callable[[], None]]:
    """A train step (forward, loss, backward, SGD) and an eval forward for ``model``."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    def train_step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def eval_forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    return train_step, eval_forward


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=30, help="timed iterations per variant (median over them)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    p.add_argument("--quick", action="store_true", help="smoke test: batch 16, 1 iteration, 1 warm-up, temp folder")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 128; --quick 16)")
    p.add_argument("--group-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; --quick 1)")
    p.add_argument(
        "--with-native", action="store_true", help="also time LocalNorm with cpu_fast_path off (native F.batch_norm)"
    )
    p.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"folder for bench_norm.json/.md (default {RESULTS}; --quick: a temp one)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.iters, args.warmup = 1, 1
    args.batch = args.batch or (16 if args.quick else 128)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or default_out(args.quick)
    threads = args.threads if args.threads is not None else (QUICK_THREADS if args.quick else 0)
    if threads:  # 0: torch's default
        torch.set_num_threads(threads)

    # On a shared machine the load moves the times; the ratios are paired, but say how loaded it was.
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    heads = max(1, args.batch // args.group_size)  # the paper's setting: one head per group
    variants = {
        "batchnorm": build("batchnorm", args.group_size, heads, "consecutive", 0),
        "localnorm-consecutive": build("localnorm", args.group_size, heads, "consecutive", 0),
        "localnorm-strided": build("localnorm", args.group_size, heads, "strided", 0),
    }
    if args.with_native:
        for grouping in ("consecutive", "strided"):
            model = build("localnorm", args.group_size, heads, grouping, 0)
            for layer in localnorm_layers(model):
                layer.cpu_fast_path = False  # instance attribute shadows the class default
            variants[f"localnorm-{grouping}-native"] = model
    for m in variants.values():
        set_test_mode(m, stats="local", heads="position")  # the paper's test mode
    steps = {name: make_steps(m, x, y) for name, m in variants.items()}
    names = list(variants)

    times: dict[str, dict[str, list[float]]] = {n: {"train": [], "eval": []} for n in names}
    for it in range(args.warmup + args.iters):
        order = names[it % len(names) :] + names[: it % len(names)]  # rotate who goes first
        for phase, idx in (("train", 0), ("eval", 1)):
            for n in order:
                t = timed(steps[n][idx])
                if it >= args.warmup:
                    times[n][phase].append(t)

    bn = times["batchnorm"]
    summary: dict[str, dict[str, float]] = {}
    for n in names:
        summary[n] = {}
        for phase in ("train", "eval"):
            ts = times[n][phase]
            summary[n][f"{phase}_median_ms"] = 1e3 * statistics.median(ts)
            summary[n][f"{phase}_mean_ms"] = 1e3 * statistics.fmean(ts)
            summary[n][f"{phase}_std_ms"] = 1e3 * statistics.stdev(ts) if len(ts) > 1 else 0.0
            summary[n][f"{phase}_ratio_of_medians"] = statistics.median(ts) / statistics.median(bn[phase])
            summary[n][f"{phase}_median_paired_ratio"] = statistics.median(a / b for a, b in zip(ts, bn[phase]))

    record = {
        "benchmark": "bench_norm",
        "model": "resnet20 (CIFAR, 10 classes, 3x32x32)",
        "batch": args.batch,
        "group_size": args.group_size,
        "num_heads": heads,
        "test_mode": "stats=local, heads=position",
        "iters": args.iters,
        "warmup": args.warmup,
        "runs": 1,
        "quick": args.quick,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_at_start": load_at_start,
        "load_avg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "note": args.note,
        "targets": {"train_ratio_max": 1.05, "eval_ratio_max": 1.10},
        "results": summary,
        "raw_seconds": times,
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "bench_norm.json") as fh:
        json.dump(record, fh, indent=2)
    with atomic_write(out / "bench_norm.md") as fh:
        fh.write(render_md(record))
    sys.stdout.write(render_md(record))
    print(f"wrote {out / 'bench_norm.json'} and .md", file=sys.stderr)
    return 0


def _fmt_load(load: list[float] | None) -> str:
    return "unknown" if load is None else ", ".join(f"{v:.2f}" for v in load)


def render_md(r: dict) -> str:
    """The results as a Markdown table with the evidence header."""
    lines = [
        "# bench_norm: LocalNorm2d vs BatchNorm2d, CIFAR ResNet-20, CPU",
        "",
        (
            f"Evidence: {r['runs']} run of {r['iters']} interleaved iterations per variant "
            f"(after {r['warmup']} warm-up), median reported; batch {r['batch']}, G = {r['group_size']}, "
            f"{r['num_heads']} heads; eval in test mode {r['test_mode']}."
        ),
        (
            f"Hardware: {r['cpu']}, {r['cpu_count']} logical CPUs, torch threads {r['torch_threads']}; "
            f"torch {r['torch']}, Python {r['python']}; load average (1, 5, 15 min) at start "
            f"{_fmt_load(r.get('load_avg_at_start'))}, at end {_fmt_load(r['load_avg_at_end'])}."
        ),
    ]
    if r.get("quick"):
        lines.append(QUICK_NOTE)
    if r["note"]:
        lines.append(f"Note: {r['note']}")
    lines += [
        "",
        "Train = forward + cross-entropy + backward + SGD step. Eval = no-grad forward.",
        "LocalNorm uses its copy-free CPU kernels; `-native` rows (if any) use one native F.batch_norm call instead.",
        "Ratios are LN/BN; target <= 1.05 train, <= 1.10 eval.",
        "",
        (
            "| variant | train ms (median) | train std | LN/BN train | LN/BN train (paired) "
            "| eval ms (median) | eval std | LN/BN eval | LN/BN eval (paired) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in r["results"].items():
        lines.append(
            f"| {name} | {s['train_median_ms']:.1f} | {s['train_std_ms']:.1f} | {s['train_ratio_of_medians']:.3f} "
            f"| {s['train_median_paired_ratio']:.3f} | {s['eval_median_ms']:.1f} | {s['eval_std_ms']:.1f} "
            f"| {s['eval_ratio_of_medians']:.3f} | {s['eval_median_paired_ratio']:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
