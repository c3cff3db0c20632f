"""Benchmark: lncli.corruptions.corrupt (batched) vs an imagecorruptions per-image loop.

Target (issue 4): >= 20x imagecorruptions images/s at 32 px for gaussian, shot and
impulse noise on CPU. Both sides run in the same process, interleaved per run
(lncli then imagecorruptions, for each noise), so machine-load drift hits both;
we report mean +- std of images/s over runs and the ratio of the means.

Both sides get uint8 HWC/NCHW copies of a real photo (scikit-image's astronaut,
resized), severity 3, ImageNet-C constants. lncli's one-off first call (table
build per noise x severity, plus loading or compiling the numba kernels) is
timed separately and excluded from images/s. Rows with backend ``numpy`` time
the bit-identical numpy reference path (``LNCLI_NUMBA=0``) in the same run.

Usage::

    python benchmarks/bench_corrupt.py                  # 30 runs, writes benchmarks/results/
    python benchmarks/bench_corrupt.py --quick          # smoke test: 2 tiny runs, into a temporary folder
    python benchmarks/bench_corrupt.py --threads 1,2 --note "quiet machine"

lncli is timed at every thread count in ``--threads`` (default: 1 and the
machine's torch thread count), each against the same single-threaded
imagecorruptions loop; the thread count is a column of the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import QUICK_NOTE, RESULTS, cpu_model, default_out  # benchmarks/ is on sys.path when run as a script

from lncli.io import atomic_write
from lncli.noise import corrupt

NOISES = ("gaussian", "shot", "impulse")
SEVERITY = 3


def photo(size: int) -> np.ndarray:
    """uint8 (size, size, 3): the astronaut photo if scikit-image is present, else smooth random."""
    try:
        from skimage import data
        from skimage.transform import resize

        return (resize(data.astronaut(), (size, size), anti_aliasing=True) * 255).astype(np.uint8)
    except ImportError:
        return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def time_lncli(x: torch.Tensor, noise: str, seed: int, threads: int, backend: str = "numba") -> float:
    """Images/s of one batched corrupt() call (CUDA-synchronised when on GPU).

    ``backend`` picks the CPU sampler: the fused numba kernels (default) or the
    numpy reference path they must equal bit for bit (``LNCLI_NUMBA=0``).
    """
    os.environ["LNCLI_NUMBA"] = "0" if backend == "numpy" else "1"
    if x.is_cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    corrupt(x, noise, SEVERITY, seed=seed, num_threads=threads)
    if x.is_cuda:
        torch.cuda.synchronize()
    return x.shape[0] / (time.perf_counter() - t)


def time_ic(img: np.ndarray, noise: str, count: int, ic_corrupt) -> float:
    """Images/s of imagecorruptions.corrupt called once per image."""
    t = time.perf_counter()
    for _ in range(count):
        ic_corrupt(img, severity=SEVERITY, corruption_name=f"{noise}_noise")
    return count / (time.perf_counter() - t)


def mean_std(v: list[float]) -> tuple[float, float]:
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 runs of tiny batches, into a temporary folder")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per cell (default 30, quick 2)")
    ap.add_argument(
        "--threads",
        default=None,
        help="comma list of corrupt(num_threads=) values for lncli, e.g. 1,2 (default: 1 and torch.get_num_threads()); imagecorruptions is single-threaded numpy",
    )
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    ap.add_argument("--out", type=Path, default=None, help=f"results folder (default {RESULTS}; --quick: a temp one)")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    out = args.out or default_out(args.quick)

    default_threads = torch.get_num_threads()
    threads = sorted({int(t) for t in args.threads.split(",")}) if args.threads else sorted({1, default_threads})
    # Threads come only from corrupt(num_threads=): nested intra-op threads would oversubscribe.
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import imagecorruptions
        from imagecorruptions import corrupt as ic_corrupt

    runs = args.runs or (2 if args.quick else 30)  # a run is ~0.1 s at 32 px: many are cheap
    import lncli.noise._kernels as kernels

    backend = "numba" if kernels.enabled() else "numpy"
    numba_version = None
    if backend == "numba":
        import numba

        numba_version = numba.__version__
    # (size, lncli batch, imagecorruptions images per run)
    plan = [(32, 256, 20), (224, 4, 2)] if args.quick else [(32, 4096, 400), (224, 64, 20)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load_before = os.getloadavg()

    rows = []
    for size, batch, ic_count in plan:
        img = photo(size)
        x_cpu = torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).repeat(batch, 1, 1, 1).contiguous()  # (N, 3, S, S)
        for noise in NOISES:
            t0 = time.perf_counter()
            corrupt(x_cpu[:1], noise, SEVERITY, seed=0)  # builds and caches the noise table (and loads the kernel)
            table_s = time.perf_counter() - t0
            ic_corrupt(img, severity=SEVERITY, corruption_name=f"{noise}_noise")  # warm-up
            # (device, threads, backend): numba at every thread count, the numpy reference path at 1.
            cells = (
                [("cpu", t, backend) for t in threads] + [("cpu", 1, "numpy")]
                if backend == "numba"
                else [("cpu", t, "numpy") for t in threads]
            )
            cells += [("cuda", 1, "torch")] if "cuda" in devices else []
            per_cell: dict[tuple[str, int, str], list[float]] = {c: [] for c in cells}
            ic_rates: list[float] = []
            for dev, th, be in cells:
                time_lncli(x_cpu.to(dev)[:2], noise, seed=0, threads=th, backend=be)  # warm-up
            for r in range(runs):
                for dev, th, be in cells:
                    per_cell[(dev, th, be)].append(time_lncli(x_cpu.to(dev), noise, seed=r, threads=th, backend=be))
                ic_rates.append(time_ic(img, noise, ic_count, ic_corrupt))
            ic_m, ic_s = mean_std(ic_rates)
            ic_med = statistics.median(ic_rates)
            for dev, th, be in cells:
                m, s = mean_std(per_cell[(dev, th, be)])
                rows.append({
                    "size": size, "noise": noise, "severity": SEVERITY, "device": dev, "threads": th, "backend": be, "batch": batch,
                    "lncli_img_s_mean": m, "lncli_img_s_std": s, "lncli_img_s_median": statistics.median(per_cell[(dev, th, be)]),
                    "imagecorruptions_img_s_mean": ic_m, "imagecorruptions_img_s_std": ic_s, "imagecorruptions_img_s_median": ic_med,
                    "speedup_of_medians": statistics.median(per_cell[(dev, th, be)]) / ic_med,
                    "speedup": m / ic_m, "table_build_s": table_s, "runs": runs,
                })  # fmt: skip
                print(
                    f"{size:>4}px {noise:<9} {dev:<4} t{th} {be:<5} lncli {m:>10.0f} +- {s:>7.0f} img/s | imagecorruptions {ic_m:>8.0f} +- {ic_s:>6.0f} img/s | {m / ic_m:6.1f}x",
                    file=sys.stderr,
                )

    import skimage

    meta = {
        "benchmark": "bench_corrupt",
        "target": ">= 20x imagecorruptions at 32 px, CPU, gaussian/shot/impulse",
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "lncli_threads": threads,
        "default_torch_threads": default_threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "imagecorruptions": getattr(imagecorruptions, "__version__", "1.1.2"),
        "numba": numba_version,
        "numba_off_reason": kernels.reason_disabled(),
        "scikit_image": skimage.__version__,
        "platform": platform.platform(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "quick": args.quick,
        "note": args.note,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "bench_corrupt.json") as fh:
        json.dump({"meta": meta, "results": rows}, fh, indent=2)
    with atomic_write(out / "bench_corrupt.md") as fh:
        fh.write(render_md(meta, rows))
    print(f"wrote {out / 'bench_corrupt.json'} and .md", file=sys.stderr)


def render_md(meta: dict, rows: list[dict]) -> str:
    """Markdown table with the evidence header (hardware, versions, runs, load)."""

    def best(noise: str, one_thread: bool) -> float:
        picked = [
            r["speedup"]
            for r in rows
            if r["size"] == 32
            and r["noise"] == noise
            and r["device"] == "cpu"
            and (r["threads"] == 1 or not one_thread)
        ]
        return max(picked, default=0.0)

    def verdict(one_thread: bool) -> str:
        return "; ".join(
            f"{n} {'yes' if best(n, one_thread) >= 20 else 'no'} ({best(n, one_thread):.1f}x)" for n in NOISES
        )

    kernels = f"numba {meta['numba']} kernels" if meta.get("numba") else f"numpy path ({meta.get('numba_off_reason')})"
    lines = [
        "# lncli corrupt vs imagecorruptions",
        "",
        (
            f"Evidence: images/s, mean +- std over n={rows[0]['runs']} runs per cell, severity {SEVERITY}, "
            f"ImageNet-C constants, uint8 input, same process, interleaved. "
            f"CPU: {meta['cpu']} ({meta['cpu_count']} logical cores), lncli threads {', '.join(map(str, meta['lncli_threads']))} "
            f"(column 'threads'; imagecorruptions always 1); lncli CPU sampler: {kernels} "
            f"(column 'backend'; 'numpy' rows are the bit-identical reference path, LNCLI_NUMBA=0); "
            f"GPU: {meta['gpu'] or 'none'}. Python {meta['python']}, torch {meta['torch']}, numpy {meta['numpy']}, "
            f"imagecorruptions {meta['imagecorruptions']}, scikit-image {meta['scikit_image']}. {meta['date_utc']}."
        ),
        "",
        f"Load average before/after: {', '.join(f'{v:.2f}' for v in meta['loadavg_before'])} / "
        f"{', '.join(f'{v:.2f}' for v in meta['loadavg_after'])}." + (f" Note: {meta['note']}" if meta["note"] else ""),
        "",
        *([QUICK_NOTE, ""] if meta["quick"] else []),
        f"Target: {meta['target']}.",
        "",
        f"Target met at 32 px on CPU, 1 lncli thread: {verdict(True)}.",
        f"Best thread count: {verdict(False)}.",
        "",
        "Speed-up is the ratio of the means (the target's measure); the ratio of the medians is beside it.",
        "",
        "| size | noise | device | threads | backend | lncli img/s | imagecorruptions img/s | speedup | speedup (medians) | first call (s, once) |",
        "|---:|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['noise']} | {r['device']} | {r['threads']} | {r.get('backend', 'numpy')} | {r['lncli_img_s_mean']:.0f} ± {r['lncli_img_s_std']:.0f} | "
            f"{r['imagecorruptions_img_s_mean']:.0f} ± {r['imagecorruptions_img_s_std']:.0f} | {r['speedup']:.1f}x | {r.get('speedup_of_medians', float('nan')):.1f}x | {r['table_build_s']:.3f} |"
        )
    lines += [
        "",
        (
            "'first call' is the one-off cost of the first corrupt() of a noise and severity in a process: "
            "building the sampling table, plus loading the numba kernels from numba's on-disk cache "
            "(a fresh install compiles them once, a few seconds); it is excluded from images/s."
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
