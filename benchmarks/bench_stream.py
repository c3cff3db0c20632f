"""Benchmark: an image folder streamed through DataLoader workers, at ImageNet's 224 px.

A folder of generated 256-px JPEGs (10 class folders) is evaluated the way ``lncli evaluate
--data imagefolder:DIR`` does it: listed, header-checked, decoded + resized (256) + centre-cropped
(224) by ``--workers`` DataLoader processes, Gaussian noise at severity 3 plus the clean row
(2 cells), one column (running statistics), batch 32, CPU. Three measurements:

1. **Throughput**: images/s of the whole sweep (``resolve_data`` + ``evaluate_grid``) with 0, 1
   and 2 workers, against the forward passes alone on the same batches (pre-decoded,
   pre-normalised; one pass per cell). Target: with 2 workers, sweep <= 1.25x forward.
2. **Share of time** in decoding (``ImageFiles.read``), noise (``lncli.noise.corrupt``) and
   forward, each timed alone on the same batches with 0 workers.
3. **Peak RSS** for 500 and 5,000 images: one subprocess per run (the process's own peak,
   VmHWM; and with its DataLoader workers, sampled), streamed with 2 workers, and for reference the
   pre-issue-13 path that decodes the whole folder into memory first (``load_dataset``).
   Target: the streamed peak grows by <= 100 MB from 500 to 5,000 images. These runs use
   lncli's ``tiny`` test net, so that 5,000 images at 224 px take minutes; the data path is
   the same as the real models'.

Models: ``resnet18`` (lncli's registry: torchvision's ResNet-18) and ``torchvision:mobilenet_v3_small``,
both built by lncli's one build route (:func:`lncli.models.build_model`, as ``--arch`` does). Random
weights: only time and memory are measured.

Usage::

    python benchmarks/bench_stream.py                 # 256 images, 2 runs, RSS at 500/5000 -> benchmarks/results/
    python benchmarks/bench_stream.py --quick         # smoke: MobileNet only, 4 images, 1 run, RSS at 8/16, temp folder
    python benchmarks/bench_stream.py --note "machine shared with 2 other jobs"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import QUICK_NOTE, QUICK_THREADS, RESULTS, cpu_model, default_out

from lncli import __version__
from lncli.checkpoint import NormSpec, checkpoint_from_model, model_from_checkpoint
from lncli.data import IMAGENET_MEAN, IMAGENET_STD, DataMeta, normalize
from lncli.io import atomic_write
from lncli.jobs.evaluate import EvalConfig, LoadedCheckpoint, evaluate_grid, make_runner, open_source, resolve_data
from lncli.jobs.evaluate.loaders import ImageFiles
from lncli.models import build_model as build_arch
from lncli.noise import corrupt

MOBILENET = "torchvision:mobilenet_v3_small"
ARCHS = {"resnet18": "resnet18", "mobilenet_v3_small": MOBILENET}
"""The models timed (name: arch); ``--quick`` times the cheaper one only (both take the same build route)."""
WORK = Path("/tmp/lncli-bench-stream")
META = DataMeta(
    "imagefolder", 10, 3, (224, 224), IMAGENET_MEAN, IMAGENET_STD, tuple(f"c{k}" for k in range(10)), resize=256
)
BATCH = 32
NOISE, SEVERITY = "gaussian", 3


def make_folder(root: Path, n: int, size: int = 256) -> Path:
    """``root/c<k>/<i>.jpg``: n smooth random 256-px RGB JPEGs (quality 90), made once and kept."""
    done = root / f".done-{n}-{size}"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"c{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)  # upsampled: photo-like JPEG sizes
        from PIL import Image

        img = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        img.save(folder / f"{i:05d}.jpg", quality=90)
    done.write_text("")
    return root


def checkpoint(arch: str) -> LoadedCheckpoint:
    """An in-memory BatchNorm checkpoint of ``arch`` (any ``--arch`` form), random weights (seed 0)."""
    torch.manual_seed(0)
    norm = NormSpec()  # BatchNorm
    model = build_arch(arch, norm=norm, num_classes=10, in_channels=3)
    ckpt = checkpoint_from_model(model, arch=arch, arch_kwargs={}, norm=norm, data=META)
    return LoadedCheckpoint(path=arch, sha256="0" * 64, checkpoint=ckpt)


def config(workers: int) -> EvalConfig:
    return EvalConfig(
        noises=(NOISE,), severities=(0, SEVERITY), modes=("running",), batch_size=BATCH, device="cpu", workers=workers
    )


def sweep(models: list[LoadedCheckpoint], folder: Path, n: int, workers: int) -> float:
    t0 = time.perf_counter()
    data = resolve_data(f"imagefolder:{folder}", models, limit=n, workers=workers)
    evaluate_grid(models, data, config(workers))
    return time.perf_counter() - t0


def components(models: list[LoadedCheckpoint], folder: Path, n: int) -> dict[str, float]:
    """Decode, noise and forward, each alone on the sweep's batches (0 workers)."""
    data = resolve_data(f"imagefolder:{folder}", models, limit=n)
    assert data.folder is not None and data.input_meta is not None
    files = ImageFiles(data.folder.files, data.input_meta)
    batches = list(torch.arange(len(files)).split(BATCH))
    t0 = time.perf_counter()
    clean = [files.read(idx) for idx in batches]  # (B, 3, 224, 224) each
    t1 = time.perf_counter()
    for idx, x in zip(batches, clean):
        corrupt(x, NOISE, SEVERITY, seed=0, profile="imagenet-c", indices=idx)
    t2 = time.perf_counter()
    forward = time_forward(models, [normalize(x, META) for x in clean], cells=2)
    return {"decode": t1 - t0, "noise": t2 - t1, "forward": forward}


def time_forward(models: list[LoadedCheckpoint], batches: list[torch.Tensor], cells: int) -> float:
    """The forward passes alone: the same prepared module, pre-normalised batches, one pass per cell."""
    runners = [
        make_runner(model_from_checkpoint(m.checkpoint), "running", heads="position", group_size=16, batch_size=BATCH)
        for m in models
    ]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(cells):
            for xb in batches:
                for r in runners:
                    r.predict(xb)
    return time.perf_counter() - t0


def forward_only(models: list[LoadedCheckpoint], folder: Path, n: int) -> float:
    data = resolve_data(f"imagefolder:{folder}", models, limit=n)
    src = open_source(data, seed=0, profile="imagenet-c")
    batches = [normalize(x, META) for x in src.clean_batches(list(torch.arange(n).split(BATCH)))]
    return time_forward(models, batches, cells=2)


def _rss_mb(pid: int | str, field: str = "VmRSS") -> float:
    """A process's resident set (or another /proc status field) in MB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _pss_mb(pid: int | str) -> float:
    """A process's proportional set size in MB (shared pages split among their users); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children() -> list[str]:
    kids: list[str] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            kids += (task / "children").read_text().split()
        except OSError:
            continue
    return kids


def rss_child(folder: Path, n: int, mode: str) -> None:
    """One RSS run (a subprocess): print the peak RSS of this process and of process + DataLoader workers, in MB.

    ``ru_maxrss`` is not used: Linux carries it over from the parent through fork and exec, so a
    child started by a big parent reports the parent's peak. VmHWM (this process's own peak) is
    exact; process + workers is sampled every 50 ms as the sum of their proportional set sizes
    (PSS: the copy-on-write pages the workers share with it are counted once).
    """
    import threading

    torch.set_num_threads(1)
    peak = {"total": 0.0, "workers": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            workers = sum(_pss_mb(pid) for pid in _children())
            peak["workers"] = max(peak["workers"], workers)
            peak["total"] = max(peak["total"], _pss_mb("self") + workers)
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    models = [checkpoint("tiny")]
    if mode == "stream":
        data = resolve_data(f"imagefolder:{folder}", models, limit=n, workers=2)
        evaluate_grid(models, data, config(2))
    else:  # the pre-issue-13 path: the whole folder decoded into memory first
        from lncli.data import load_dataset
        from lncli.jobs.evaluate import EvalData

        images = load_dataset(f"imagefolder:{folder}", limit=n, image_size=224)
        evaluate_grid(models, EvalData.from_imageset(images), config(0))
    stop.set()
    sampler.join()
    print(
        json.dumps(
            {"rss_mb": _rss_mb("self", "VmHWM"), "workers_rss_mb": peak["workers"], "total_rss_mb": peak["total"]}
        )
    )


def measure_rss(folder: Path, n: int, mode: str) -> dict[str, float]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(n), "--rss-mode", mode, "--work", str(folder)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return {**got, "seconds": time.perf_counter() - t0}


def ms(v: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.mean(v),
        "std": statistics.stdev(v) if len(v) > 1 else 0.0,
        "median": statistics.median(v),
    }


def throughput(arch: str, folder: Path, n: int, runs: int, warm_up: bool = True) -> dict[str, object]:
    models = [checkpoint(arch)]
    if warm_up:
        sweep(models, folder, min(n, 64), 0)  # imports, allocator, noise tables
    times: dict[str, list[float]] = {"w0": [], "w1": [], "w2": [], "forward": []}
    shares: list[dict[str, float]] = []
    for r in range(runs):
        # Rotate the order so that load drifts do not favour one setting.
        jobs = [
            ("w0", lambda: sweep(models, folder, n, 0)),
            ("w1", lambda: sweep(models, folder, n, 1)),
            ("w2", lambda: sweep(models, folder, n, 2)),
            ("forward", lambda: forward_only(models, folder, n)),
        ]
        for name, fn in jobs[r % 4 :] + jobs[: r % 4]:
            times[name].append(fn())
        shares.append(components(models, folder, n))
        print(
            f"{arch} run {r + 1}/{runs}: " + "  ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()), file=sys.stderr
        )
    comp = {k: statistics.median(s[k] for s in shares) for k in ("decode", "noise", "forward")}
    total = sum(comp.values())
    return {
        "images": n,
        "image_forwards": 2 * n,
        "seconds": {k: ms(v) for k, v in times.items()},
        "images_per_s": {k: n / statistics.median(v) for k, v in times.items() if k != "forward"},
        "sweep_over_forward": {
            k: statistics.median(times[k]) / statistics.median(times["forward"]) for k in ("w0", "w1", "w2")
        },
        "component_seconds": comp,
        "component_share": {k: v / total for k, v in comp.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=None, help="images in the throughput runs (default 256; --quick 4)")
    p.add_argument("--runs", type=int, default=None, help="interleaved repetitions (default 2; --quick 1)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads of the forward passes (default 2; --quick 1)"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, into temporary folders")
    p.add_argument(
        "--work", type=Path, default=None, help=f"where the JPEGs are made and kept (default {WORK}; --quick: temp)"
    )
    p.add_argument("--note", default="", help="free text saved with the results (e.g. machine load)")
    p.add_argument(
        "--out", type=Path, default=None, help=f"results stem (default {RESULTS / 'bench_stream'}; --quick: temp)"
    )
    p.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--rss-mode", default="stream", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rss_child is not None:
        rss_child(args.work, args.rss_child, args.rss_mode)
        return 0
    args.threads = args.threads or (QUICK_THREADS if args.quick else 2)
    torch.set_num_threads(args.threads)
    n = args.images or (4 if args.quick else 256)
    runs = args.runs or (1 if args.quick else 2)
    rss_sizes = (8, 16) if args.quick else (500, 5000)
    out = args.out or default_out(args.quick) / "bench_stream"
    # The full run keeps its 5,000 JPEGs between runs; a smoke run makes its few in a new temporary folder,
    # so that a shared one that another run is still writing cannot break it.
    work = args.work or (Path(tempfile.mkdtemp(prefix="lncli-bench-stream-")) if args.quick else WORK)
    t_start = time.perf_counter()
    folder = make_folder(work, max(rss_sizes))
    load_before = os.getloadavg()
    archs = {"mobilenet_v3_small": MOBILENET} if args.quick else ARCHS
    models = {name: throughput(arch, folder, n, runs, warm_up=not args.quick) for name, arch in archs.items()}
    rss = {f"{mode}-{k}": measure_rss(folder, k, mode) for mode in ("stream", "in-memory") for k in rss_sizes}
    growth = rss[f"stream-{rss_sizes[1]}"]["rss_mb"] - rss[f"stream-{rss_sizes[0]}"]["rss_mb"]
    growth_total = rss[f"stream-{rss_sizes[1]}"]["total_rss_mb"] - rss[f"stream-{rss_sizes[0]}"]["total_rss_mb"]
    result = {
        "benchmark": "image folder streamed through DataLoader workers",
        "targets": {"rss_growth_mb": "<= 100 from 500 to 5,000 images", "w2_over_forward": "<= 1.25"},
        "setup": {
            "image_file": "256x256 JPEG q90",
            "input": "resize 256, centre crop 224, bilinear",
            "batch": BATCH,
            "cells": f"clean + {NOISE} severity {SEVERITY}",
            "mode": "running",
            "device": "cpu",
            "mobilenet_v3_small": f"{MOBILENET} (lncli's build route)",
            "rss_model": "tiny (lncli's test net)",
        },
        "runs": runs,
        "quick": args.quick,
        "models": models,
        "rss_mb": rss,
        "rss_growth_mb": growth,
        "rss_growth_with_workers_mb": growth_total,
        "meets": {
            "rss_growth": growth <= 100,
            "w2_over_forward": {k: v["sweep_over_forward"]["w2"] <= 1.25 for k, v in models.items()},  # type: ignore[index]
        },
        "hardware": {
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "gpu": None,
        },
        "versions": {
            "lncli": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pillow": __import__("PIL").__version__,
            "python": platform.python_version(),
        },
        "total_seconds": time.perf_counter() - t_start,
        "note": args.note,
    }
    md = render(result, rss_sizes)
    with atomic_write(out.with_suffix(".json")) as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    with atomic_write(out.with_suffix(".md")) as fh:
        fh.write(md)
    print(md)
    print(f"wrote {out.with_suffix('.json')} and .md", file=sys.stderr)
    return 0


def render(r: dict, rss_sizes: tuple[int, int]) -> str:
    rows = []
    for name, m in r["models"].items():
        ips, ratio, share = m["images_per_s"], m["sweep_over_forward"], m["component_share"]
        rows.append(
            f"| {name} | {ips['w0']:.1f} | {ips['w1']:.1f} | {ips['w2']:.1f} | {m['images'] / m['seconds']['forward']['median']:.1f} "
            f"| {ratio['w0']:.2f} / {ratio['w1']:.2f} / **{ratio['w2']:.2f}** "
            f"| {share['decode']:.0%} / {share['noise']:.0%} / {share['forward']:.0%} |"
        )
    a, b = rss_sizes
    rss = r["rss_mb"]
    first = next(iter(r["models"].values()))  # every model runs the same images
    hw = r["hardware"]
    return f"""# bench_stream: an image folder streamed at 224 px

Evidence ({r["runs"]} interleaved run(s) per setting, medians; {"QUICK smoke run" if r["quick"] else "full run"}):
peak RSS grows by **{r["rss_growth_mb"]:.0f} MB** from {a} to {b} images streamed ({r["rss_growth_with_workers_mb"]:.0f} MB with the workers; target <= 100 MB: {"met" if r["meets"]["rss_growth"] else "NOT met"});
with 2 workers the sweep takes **{", ".join(f"{k} {v['sweep_over_forward']['w2']:.2f}x" for k, v in r["models"].items())}** the forward-only time (target <= 1.25x: {", ".join(f"{k} {'met' if ok else 'NOT met'}" for k, ok in r["meets"]["w2_over_forward"].items())}).

Throughput ({first["images"]} images, 2 cells = {first["image_forwards"]} image-forwards per sweep; images/s counts images, not image x cell):

| model | 0 workers img/s | 1 worker | 2 workers | forward only | sweep/forward (0 / 1 / 2 workers) | decode / noise / forward share |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Peak memory (MB; one subprocess per run; `tiny` net). The target is on the main process's peak RSS (VmHWM); the
second column, sampled every 50 ms, adds the workers as proportional set sizes (shared library and copy-on-write
pages split among the processes, so it can read below the first) and confirms that nothing grows in the workers either:

| images | streamed, 2 workers: main process (VmHWM) | with its 2 workers (sampled PSS peak) | whole folder decoded first (pre-issue-13 path) |
|---|---|---|---|
| {a} | {rss[f"stream-{a}"]["rss_mb"]:.0f} | {rss[f"stream-{a}"]["total_rss_mb"]:.0f} | {rss[f"in-memory-{a}"]["rss_mb"]:.0f} |
| {b} | {rss[f"stream-{b}"]["rss_mb"]:.0f} | {rss[f"stream-{b}"]["total_rss_mb"]:.0f} | {rss[f"in-memory-{b}"]["rss_mb"]:.0f} |

Setup: {r["setup"]["image_file"]} files, {r["setup"]["input"]}, batch {r["setup"]["batch"]}, cells {r["setup"]["cells"]}, mode {r["setup"]["mode"]}, CPU; MobileNetV3-small via {r["setup"]["mobilenet_v3_small"]}. The share of time is each step alone on the same batches with 0 workers. Random weights.

Hardware: {hw["cpu"]} ({hw["logical_cpus"]} logical CPUs, shared), {hw["torch_threads"]} torch threads; load average before {tuple(round(x, 2) for x in hw["loadavg_before"])}, after {tuple(round(x, 2) for x in hw["loadavg_after"])}. No GPU was lent to this task: no GPU rows.
Versions: lncli {r["versions"]["lncli"]}, torch {r["versions"]["torch"]}, numpy {r["versions"]["numpy"]}, Pillow {r["versions"]["pillow"]}, Python {r["versions"]["python"]}. Total run time {r["total_seconds"] / 60:.1f} min.
{("Note: " + r["note"]) if r["note"] else ""}
{QUICK_NOTE if r["quick"] else ""}
"""


if __name__ == "__main__":
    raise SystemExit(main())
