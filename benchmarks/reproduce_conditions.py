"""Where, if anywhere, does LocalNorm training beat test-time statistics? The deployment-conditions study (issue 14).

The reproduction (``reproduce_fashion_mnist.py``) measured every model on shuffled test batches
of 128, the most favourable condition for batch statistics there is. This study measures the
same small_cnn models on real Fashion-MNIST in the conditions users deploy into:

* **Models:** small_cnn trained with BatchNorm, LocalNorm and GroupNorm for seeds 0, 1 and 2
  (``sample_configs/fashion_mnist_{bn,localnorm,groupnorm}.yaml``), trained from scratch on one
  thread, and kept in ``benchmarks/checkpoints/`` (``{bn,ln,gn}_seed{0,1,2}.pt``, :mod:`_kept`): the
  records name those files and their hashes, so every cell can be re-evaluated (``--check``). The
  reproduction evaluates the same BN and LN files (same configs, same seeds).
* **Modes:** BN ``running``, ``batch``, ``prior`` (Schneider et al. 2020, N = 16) and ``tent``
  (Wang et al. 2021, Adam 1e-3, one step per batch); LN ``running`` and ``single`` (per-image
  statistics, the heads' mean), ``local``, ``vote`` (softmax averaged over the heads) and ``tent``;
  GN in its only mode (``groupnorm``).
* **Conditions:** ``shuffled`` (a seeded shuffle: batches mix classes), ``sorted`` (by label: a
  class-correlated stream) and ``mixed`` (shuffled, each image with its own noise x severity drawn
  from the cells below, clean included); batch sizes 1, 4, 16 and 128. LocalNorm's G = 16 does not
  fit batches of 1 or 4: there lncli runs ``local`` and ``tent`` with G = the batch size (one group
  per batch), as it does for any batch smaller than G, and records that G.
* **Noises:** ImageNet-C gaussian, shot and impulse at severities 3 and 5, plus clean.

Every (model, seed) x condition x batch size is one ``evaluate_grid`` call (noise seed and order
seed = the training seed); ``tent`` adapts along each cell's stream from the checkpoint's weights.
Outputs: ``benchmarks/results/conditions.{md,csv,png}`` (mean +- std over seeds, and the Wilson
95% interval of the counts pooled over seeds, per cell) and ``conditions_records.csv`` (every
per-seed record), with hardware, versions and runs in the header.

``--check`` re-evaluates a stated sample of the stored records from the kept checkpoints (every
model kind x condition once, which covers every mode and condition; the batch sizes and seeds
rotate) and exits 1 on any count that differs or any checkpoint whose hash is not the records';
``--check --quick`` checks three cheap groups (CI runs it).

Cost: the results header records the wall time of the run that wrote it (the committed one:
``--images 1000``, the 9 models trained from scratch, on 1 thread of a 2-core machine, with its load
average); the evaluation grows in proportion to ``--images``, and batch size 1 (one forward per image
and column) is its dearest part. ``--quick`` is a smoke run (one seed, one epoch on 256 training
images, 8 test images, into a temporary folder unless ``--out`` says otherwise): it checks the
pipeline, its numbers mean nothing.

    python benchmarks/reproduce_conditions.py --images 1000 --reuse   # 3 seeds, the kept models (training those missing)
    python benchmarks/reproduce_conditions.py --check                  # re-evaluate a sample of the stored records
    python benchmarks/reproduce_conditions.py --quick                  # the smoke run
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import cpu_model
from _kept import KEPT, keep, kept_path, read_rows, repo_path, run_check
from reproduce_fashion_mnist import CONFIGS, git_commit
from reproduce_fashion_mnist import train_models as train_bn_ln

from lncli import __version__
from lncli.config import load_train_config
from lncli.config.evaluate import MODES, EvalConfig
from lncli.data import load_dataset
from lncli.io import atomic_path, atomic_write
from lncli.jobs.evaluate import EvalData, LoadedCheckpoint, evaluate_grid, load_checkpoints
from lncli.jobs.train import train
from lncli.records import CLEAN, MIXED, RECORD_FIELDS, EvalRecord
from lncli.stats import wilson_interval

GN_CONFIG = ROOT / "sample_configs/fashion_mnist_groupnorm.yaml"
"""The GroupNorm twin of the BN/LN configs (added with the GroupNorm norm kind)."""
GN_MODE = "groupnorm"
MODELS = {
    "BN": ("running", "batch", "prior", "tent"),
    "LN": ("running", "local", "single", "vote", "tent"),
    "GN": (GN_MODE,),
}
"""The columns: modes per model kind, in table order."""
CONDITIONS = ("shuffled", "sorted", "mixed")
BATCH_SIZES = (1, 4, 16, 128)
NOISES = ("gaussian", "shot", "impulse")
SEVERITIES = (0, 3, 5)
NOISY = "noisy mean"
"""The summary row of the 6 noisy cells (their plain mean per seed, then mean +- std over seeds)."""


def train_models(args: argparse.Namespace, seeds: list[int]) -> dict[tuple[str, int], Path]:
    """The kept BN, LN and GN models, ``{(kind, seed): kept file}``: with ``--reuse`` the files in
    ``--keep`` as they are; the others trained under ``--runs`` (the reproduction's BN/LN configs, the GN
    config) and kept."""
    want = [(kind, seed) for seed in seeds for kind in ("BN", "LN", "GN") if kind != "GN" or gn_available()]
    if args.reuse and all(kept_path(k, s, args.keep).exists() for k, s in want):
        return {(k, s): kept_path(k, s, args.keep) for k, s in want}
    commit = git_commit()
    trained = train_bn_ln(seeds, args.epochs, args.runs, args.reuse, args.overrides)
    configs = {**CONFIGS}
    if gn_available():
        configs["GN"] = GN_CONFIG
        for seed in seeds:
            out = args.runs / f"gn_seed{seed}"
            if not (args.reuse and (out / "last.pt").exists()):
                overrides = [f"seed={seed}"] + ([f"epochs={args.epochs}"] if args.epochs else []) + args.overrides
                t0 = time.perf_counter()
                res = train(load_train_config(GN_CONFIG, overrides), out)
                acc = res.final.test_accuracy if res.final else float("nan")
                print(
                    f"trained GN seed {seed}: test acc {acc:.4f} in {time.perf_counter() - t0:.0f} s", file=sys.stderr
                )
            trained[("GN", seed)] = out / "last.pt"
    else:
        print(f"GroupNorm skipped: no {GN_CONFIG.relative_to(ROOT)} or no '{GN_MODE}' mode here", file=sys.stderr)
    return {(k, s): keep(path, k, s, configs[k], commit, args.keep) for (k, s), path in trained.items()}


def gn_available() -> bool:
    """Whether this lncli has the GroupNorm control (its config and its evaluate mode)."""
    return GN_CONFIG.exists() and GN_MODE in MODES


def configs(kind: str, seed: int) -> list[tuple[str, EvalConfig]]:
    """Every (condition, config) of one model: the conditions x batch sizes."""
    base = EvalConfig(
        noises=NOISES, severities=SEVERITIES, profile="imagenet-c", modes=MODELS[kind], seed=seed, order_seed=seed
    )
    out = []
    for condition in CONDITIONS:
        for b in BATCH_SIZES:
            # LocalNorm at b < G: lncli itself makes the whole batch one group (G = b, recorded).
            order = "sorted" if condition == "sorted" else "shuffled"
            out.append((condition, dataclasses.replace(base, batch_size=b, order=order, mix=condition == "mixed")))
    return out


Row = tuple[str, int, str, EvalRecord]
"""(model kind, seed, condition, record)."""


def evaluate_all(paths: dict[tuple[str, int], Path], data: EvalData, log: Callable[[str], None]) -> list[Row]:
    """Every model x seed x condition x batch size: the per-seed records."""
    rows: list[Row] = []
    for (kind, seed), path in paths.items():
        loaded: list[LoadedCheckpoint] = load_checkpoints([path])
        for condition, conf in configs(kind, seed):
            t0 = time.perf_counter()
            recs = _evaluate(loaded, data, conf)
            rows += [(kind, seed, condition, r) for r in recs]
            log(f"{kind} seed {seed} {condition} batch {conf.batch_size}: {time.perf_counter() - t0:.1f} s")
    return rows


def _evaluate(loaded: list[LoadedCheckpoint], data: EvalData, conf: EvalConfig) -> list[EvalRecord]:
    """One ``evaluate_grid`` call, its records naming the checkpoint as the repository does."""
    return [dataclasses.replace(r, checkpoint=repo_path(Path(r.checkpoint))) for r in evaluate_grid(loaded, data, conf)]


CHECK_SAMPLE = [
    (kind, condition, BATCH_SIZES[(k + c) % len(BATCH_SIZES)], (k + c) % 3)
    for k, kind in enumerate(MODELS)
    for c, condition in enumerate(CONDITIONS)
]
"""``--check``'s groups, (model kind, condition, batch size, seed): every kind x condition once (so every
mode x condition), the batch sizes and seeds rotating so that each is used."""

CHECK_QUICK = [("BN", "shuffled", 128, 0), ("LN", "sorted", 16, 1), ("GN", "mixed", 128, 2)]
"""``--check --quick``'s groups: three cheap ones (no batch of 1), one per kind and condition."""


def check(args: argparse.Namespace) -> int:
    """Re-evaluate the ``--check`` sample of the stored records from the kept checkpoints; the exit code."""
    stored = read_rows(args.out / "conditions_records.csv")
    sample = CHECK_QUICK if args.quick else CHECK_SAMPLE
    groups = []
    for kind, condition, b, seed in sample:
        rows = [
            r
            for r in stored
            if (r["model"], r["condition"], r["batch_size"], r["seed"]) == (kind, condition, str(b), str(seed))
        ]
        if not rows:
            print(f"MISMATCH {kind} seed {seed} {condition} batch {b}: no stored records", file=sys.stderr)
            return 1
        groups.append((f"{kind} seed {seed} {condition} batch {b}", rows))
    n_test = {int(r["n"]) for r in stored if r["noise"] != MIXED}
    data = EvalData.from_imageset(load_dataset("fashion-mnist", "test", data_dir=args.data_dir, limit=max(n_test)))

    def evaluate(rows: list[dict[str, str]]) -> list[EvalRecord]:
        first = rows[0]
        (config,) = [
            c
            for condition, c in configs(first["model"], int(first["seed"]))
            if condition == first["condition"] and c.batch_size == int(first["batch_size"])
        ]
        return evaluate_grid(load_checkpoints([ROOT / first["checkpoint"]]), data, config)

    return run_check(groups, evaluate, lambda line: print(line, file=sys.stderr))


def aggregate(rows: list[Row]) -> list[dict]:
    """Mean +- std over seeds and the pooled Wilson interval per (model, mode, condition, batch, cell),
    plus each (model, mode, condition, batch)'s mean over the noisy cells (``noisy mean``)."""
    cells: dict[tuple, list[EvalRecord]] = defaultdict(list)
    for kind, _seed, condition, r in rows:
        cells[(kind, r.mode, condition, r.batch_size, r.noise, r.severity)].append(r)
    noisy: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for kind, seed, condition, r in rows:
        if r.noise not in (CLEAN, MIXED):
            noisy[(kind, r.mode, condition, r.batch_size)][seed].append(r.accuracy)
    out = []
    for (kind, mode, condition, b, noise, sev), recs in cells.items():
        accs = [r.accuracy for r in recs]
        c, n = sum(r.correct for r in recs), sum(r.n for r in recs)
        lo, hi = wilson_interval(c, n)
        out.append(_agg(kind, mode, condition, b, noise, sev, accs, c / n, lo, hi, n))
    for (kind, mode, condition, b), by_seed in noisy.items():
        accs = [statistics.fmean(v) for v in by_seed.values()]
        out.append(_agg(kind, mode, condition, b, NOISY, "", accs, None, None, None, None))
    return out


def _agg(
    kind: str, mode: str, condition: str, b: int, noise: str, sev: object, accs: list[float], *pooled: object
) -> dict:
    pooled_acc, lo, hi, n = pooled
    return {
        "model": kind,
        "mode": mode,
        "condition": condition,
        "batch_size": b,
        "noise": noise,
        "severity": sev,
        "seeds": len(accs),
        "mean": statistics.fmean(accs),
        "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "pooled_accuracy": pooled_acc,
        "ci_low": lo,
        "ci_high": hi,
        "pooled_n": n,
    }


def columns(agg: list[dict]) -> list[tuple[str, str]]:
    """(model, mode) in table order."""
    have = {(a["model"], a["mode"]) for a in agg}
    return [(k, m) for k, modes in MODELS.items() for m in modes if (k, m) in have]


def _fmt(a: dict | None, with_ci: bool = False) -> str:
    if a is None:
        return ""
    text = f"{100 * a['mean']:.1f} ± {100 * a['std']:.1f}"
    if with_ci and a["ci_low"] is not None:
        text += f" [{100 * a['ci_low']:.1f}, {100 * a['ci_high']:.1f}]"
    return text


def _row(cells: dict, cols: list[tuple[str, str]], key: tuple, with_ci: bool = False) -> list[str]:
    """One table row's cells, the best mean bold."""
    found = [cells.get((*c, *key)) for c in cols]
    best = max((a["mean"] for a in found if a is not None), default=None)
    return [f"**{_fmt(a, with_ci)}**" if a is not None and a["mean"] == best else _fmt(a, with_ci) for a in found]


def markdown(agg: list[dict], meta: dict) -> str:
    """conditions.md: the evidence header, the summary by condition x batch size, then every cell."""
    cols = columns(agg)
    cells = {(a["model"], a["mode"], a["condition"], a["batch_size"], a["noise"], a["severity"]): a for a in agg}
    head = "| condition | batch | row | " + " | ".join(f"{k} {m}" for k, m in cols) + " | best |"
    rule = "|---|---|---|" + "---|" * (len(cols) + 1)
    lines = [
        "# Deployment conditions: where does LocalNorm win? Fashion-MNIST",
        "",
        _evidence(meta),
        "",
        (
            "Conditions: `shuffled` = seeded shuffle, `sorted` = sorted by label (class-correlated), `mixed` = "
            "shuffled with each image's own noise x severity (clean, gaussian/shot/impulse at 3 and 5). "
            f"`{NOISY}` = mean of the 6 noisy cells per seed. Bold = best mean in the row."
        ),
        "",
        "## Summary",
        "",
        head,
        rule,
    ]
    for condition in CONDITIONS:
        for b in BATCH_SIZES:
            keys = (
                [("mixed", (MIXED, MIXED))] if condition == "mixed" else [("clean", (CLEAN, 0)), (NOISY, (NOISY, ""))]
            )
            for label, cell in keys:
                vals = _row(cells, cols, (condition, b, *cell))
                if any(vals):
                    lines.append(
                        f"| {condition} | {b} | {label} | "
                        + " | ".join(vals)
                        + f" | {_best(cells, cols, (condition, b, *cell))} |"
                    )
    lines += ["", "## Every cell (mean ± std over seeds [Wilson 95% of the counts pooled over seeds])", ""]
    for condition in CONDITIONS:
        lines += [f"### {condition}", "", head.replace("| best |", "|"), rule[: -len("---|")]]
        cell_keys = (
            [(MIXED, MIXED)]
            if condition == "mixed"
            else [(CLEAN, 0)] + [(n, s) for n in NOISES for s in SEVERITIES if s]
        )
        for b in BATCH_SIZES:
            for noise, sev in cell_keys:
                vals = _row(cells, cols, (condition, b, noise, sev), with_ci=True)
                if any(vals):
                    label = noise if noise in (CLEAN, MIXED) else f"{noise} {sev}"
                    lines.append(f"| {condition} | {b} | {label} | " + " | ".join(vals) + " |")
        lines.append("")
    return "\n".join(lines)


def _evidence(meta: dict) -> str:
    """The evidence header: runs, data, models, settings, hardware, versions, wall time."""
    configs = "bn,localnorm,groupnorm" if meta["gn"] else "bn,localnorm"
    return (
        f"Evidence: accuracy (%) mean ± std over n={meta['seeds']} seeds ({meta['seed_list']}) per cell, "
        f"{meta['n_test']} test images per cell; small_cnn trained {meta['epochs']} epochs per seed with "
        f"`sample_configs/fashion_mnist_{{{configs}}}.yaml`"
        f"{'' if meta['gn'] else ' (GroupNorm absent from this lncli: not run)'}. "
        "Noise seed and order seed = the training seed; ImageNet-C constants. LN: G = 16 (G = batch size below "
        "16), 8 heads, position heads where test images form groups (local, tent), the heads' mean in the per-image "
        "modes (running, single); BN prior N = 16; TENT Adam lr 1e-3, 1 step per batch. "
        f"Hardware: {meta['hardware']}, {meta['load']}; torch {torch.__version__}, lncli {__version__}, Python "
        f"{platform.python_version()}; models kept in `benchmarks/checkpoints/`, trained at commit {meta['commit']}. "
        f"Wall time {meta['wall_s']:.0f} s ({meta['runs']})."
    )


def _best(cells: dict, cols: list[tuple[str, str]], key: tuple) -> str:
    found = [(cells[(*c, *key)]["mean"], f"{c[0]} {c[1]}") for c in cols if (*c, *key) in cells]
    return max(found)[1] if found else ""


def plot(agg: list[dict], path: Path, meta: dict) -> None:
    """conditions.png: accuracy vs batch size, a panel per condition x (clean, noisy mean / mixed), mean ± std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = columns(agg)
    cells = {(a["model"], a["mode"], a["condition"], a["batch_size"], a["noise"], a["severity"]): a for a in agg}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), sharey=True, squeeze=False)
    for j, condition in enumerate(CONDITIONS):
        panels = [(MIXED, MIXED), None] if condition == "mixed" else [(CLEAN, 0), (NOISY, "")]
        for i, cell in enumerate(panels):
            ax = axes[i][j]
            if cell is None:
                ax.set_visible(False)
                continue
            for kind, mode in cols:
                pts = [cells.get((kind, mode, condition, b, *cell)) for b in BATCH_SIZES]
                xs = [b for b, a in zip(BATCH_SIZES, pts) if a is not None]
                ys = [100 * a["mean"] for a in pts if a is not None]
                es = [100 * a["std"] for a in pts if a is not None]
                style = {"BN": "--", "LN": "-", "GN": ":"}[kind]
                ax.errorbar(xs, ys, yerr=es, fmt=style, marker="o", ms=3, capsize=2, label=f"{kind} {mode}")
            ax.set_xscale("log", base=2)
            ax.set_xticks(BATCH_SIZES, [str(b) for b in BATCH_SIZES])
            ax.set_title(
                f"{condition}: " + {CLEAN: "clean", NOISY: "noisy mean (6 cells)"}.get(cell[0], "the mixed stream")
            )
            ax.set_xlabel("test batch size")
            ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Fashion-MNIST small_cnn by deployment condition, mean ± std over {meta['seeds']} seeds")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_outputs(rows: list[Row], agg: list[dict], out: Path, meta: dict) -> None:
    """conditions.csv (aggregate), conditions_records.csv (per seed), conditions.md and conditions.png."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "conditions.csv", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(agg[0]))
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in a.items()} for a in agg)
    with atomic_write(out / "conditions_records.csv", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["model", "seed", "condition", *RECORD_FIELDS], extrasaction="ignore")
        w.writeheader()
        for kind, seed, condition, r in rows:
            w.writerow({"model": kind, "seed": seed, "condition": condition, **r.to_dict()})
    with atomic_write(out / "conditions.md") as fh:
        fh.write(markdown(agg, meta))
    plot(agg, out / "conditions.png", meta)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    ap.add_argument("--images", type=int, default=2000, help="test images per cell (the first N of the test set)")
    ap.add_argument("--runs", type=Path, default=None, help="training outputs (default: the reproduction's runs)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="reuse the kept models (and trained ones found under --runs)")
    ap.add_argument("--keep", type=Path, default=None, help=f"where the models are kept (default {repo_path(KEPT)})")
    ap.add_argument(
        "--check", action="store_true", help="re-evaluate a sample of the stored records; exit 1 on a change"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (1 seed, 1 epoch, 8 test images) into a temp folder; --check: 3 groups",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: batch size 1 is many tiny ops)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra train override key=value")
    args = ap.parse_args(argv)
    if args.quick and not args.check:
        args.seeds, args.epochs, args.images = "0", 1, min(args.images, 8)
        args.overrides = ["data.train_limit=256", "data.test_limit=64", *args.overrides]
        scratch = Path(tempfile.mkdtemp(prefix="reproduce_conditions_quick_"))
        args.runs, args.out = args.runs or scratch / "runs", args.out or scratch / "results"
        args.keep = args.keep or scratch / "checkpoints"
    args.keep = args.keep or KEPT
    args.runs = args.runs or ROOT / "runs/reproduce_fashion_mnist"
    args.out = args.out or ROOT / "benchmarks/results"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.check:
        sys.exit(check(args))
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    paths = train_models(args, seeds)
    data = EvalData.from_imageset(load_dataset("fashion-mnist", "test", data_dir=args.data_dir, limit=args.images))
    rows = evaluate_all(paths, data, lambda line: print(line, file=sys.stderr))
    agg = aggregate(rows)
    trained = "evaluation only: models reused" if args.reuse else "training (where missing) and evaluation"
    meta = {
        "seeds": len(seeds),
        "seed_list": ", ".join(map(str, seeds)),
        "n_test": len(data.clean) if data.clean is not None else 0,
        "epochs": args.epochs or load_train_config(ROOT / "sample_configs/fashion_mnist_bn.yaml", []).epochs,
        "hardware": f"{cpu_model()}, {torch.get_num_threads()} threads",
        "wall_s": time.perf_counter() - t0,
        "runs": f"{len(paths)} models x {len(CONDITIONS)} conditions x {len(BATCH_SIZES)} batch sizes; {trained}"
        + ("; --quick smoke run: the numbers mean nothing" if args.quick else ""),
        "load": f"load average {load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (1 min)",
        "commit": load_checkpoints([next(iter(paths.values()))])[0].checkpoint.provenance.get("commit", "unknown"),
        "gn": any(k == "GN" for k, _ in paths),
    }
    write_outputs(rows, agg, args.out, meta)
    print(f"wrote {args.out}/conditions.{{md,csv,png}} and conditions_records.csv in {meta['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
