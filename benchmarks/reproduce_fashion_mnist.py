"""Does LocalNorm hold up? A reproduction of arXiv 1902.06550's robustness claim on real Fashion-MNIST.

Trains BatchNorm and LocalNorm twins of the small CNN (``sample_configs/fashion_mnist_{bn,localnorm}.yaml``,
identical but for the norm section) for several seeds, then evaluates every model clean and under
gaussian, shot and impulse noise in the ``imagenet-c`` and ``cifar-10-c`` profiles and under the
paper's own noises (``paper`` profile), in these test-time modes:

* BN ``running``  - classic inference (what the paper compares against);
* BN ``batch``    - prediction-time BN: test-batch statistics, the honest baseline the paper omits;
* BN ``local``    - the trained BN model converted to LocalNorm (G test images per group), no retraining;
* LN ``running``, ``local`` (the paper), ``single`` and ``vote`` (single-image statistics, voting over heads).

The trained models are kept in ``benchmarks/checkpoints/`` (``{bn,ln}_seed{0,1,2}.pt``; :mod:`_kept`),
shared with the deployment-conditions study (``reproduce_conditions.py``, same configs and seeds), and
the records name those files and their hashes. Results (mean ± std over seeds) go to
``benchmarks/results/fashion_mnist.{csv,md,png}``; per-seed records to ``fashion_mnist_records.csv``.
``--check`` re-evaluates a stated sample of those records from the kept models (each model kind x
profile once, the seeds rotating; ``--quick``: two groups) and exits 1 on any count that differs.
Needs Debian's ``dataset-fashion-mnist`` (or ``--data-dir``).

    python benchmarks/reproduce_fashion_mnist.py --eval-limit 2000 --reuse   # 3 seeds, the kept models
    python benchmarks/reproduce_fashion_mnist.py --check                      # re-evaluate a sample
    python benchmarks/reproduce_fashion_mnist.py --seeds 0 --epochs 1 --eval-limit 500   # a quick look
    python benchmarks/reproduce_fashion_mnist.py --quick    # smoke run: 1 seed, 1 epoch on 256 images, 8 test images, severity 5

``--quick`` trains and writes into temporary folders unless ``--runs``/``--out`` say otherwise, so that
it never touches the trained models ``--reuse`` reads nor the committed results; its numbers mean nothing.
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
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import QUICK_NOTE, QUICK_THREADS, RESULTS, cpu_model, default_out
from _kept import KEPT, keep, kept_path, read_rows, repo_path, run_check

from lncli import __version__
from lncli.config import load_train_config
from lncli.config.evaluate import EvalConfig
from lncli.data import load_dataset
from lncli.io import atomic_path, atomic_write
from lncli.jobs.evaluate import EvalData, evaluate_grid, load_checkpoints
from lncli.jobs.train import train
from lncli.records import EvalRecord

RUNS = ROOT / "runs/reproduce_fashion_mnist"
"""Where the trained models are kept (and ``--reuse``d, also by ``reproduce_conditions.py``)."""
CONFIGS = {
    "BN": ROOT / "sample_configs/fashion_mnist_bn.yaml",
    "LN": ROOT / "sample_configs/fashion_mnist_localnorm.yaml",
}
MODES = {"BN": ("running", "batch", "local"), "LN": ("running", "local", "single", "vote")}
SEVERITIES = (1, 2, 3, 4, 5)
"""The noisy severities of every profile (clean is evaluated once, with the first); ``--quick`` runs 5 only."""
# (label, noises): the paper profile's noises are its multiplicative uniform, multiplicative Poisson and
# pixel dropout; "paper+rescale" adds the authors' min-max rescale of the whole noisy test set.
PROFILES = (
    ("imagenet-c", ("gaussian", "shot", "impulse")),
    ("cifar-10-c", ("gaussian", "shot", "impulse")),
    ("paper", ("gaussian", "poisson", "dropout")),
    ("paper+rescale", ("gaussian", "poisson", "dropout")),
)


def hardware() -> str:
    """CPU model and thread count, for the evidence header."""
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def train_models(
    seeds: list[int], epochs: int | None, runs: Path, reuse: bool, extra: list[str]
) -> dict[tuple[str, int], Path]:
    """Train (or reuse) one BN and one LN model per seed; return their last.pt paths."""
    paths = {}
    for seed in seeds:
        for norm, cfg_path in CONFIGS.items():
            out = runs / f"{norm.lower()}_seed{seed}"
            ckpt = out / "last.pt"
            if not (reuse and ckpt.exists()):
                overrides = [f"seed={seed}"] + ([f"epochs={epochs}"] if epochs else []) + extra
                cfg = load_train_config(cfg_path, overrides)
                t0 = time.perf_counter()
                res = train(cfg, out)
                acc = res.final.test_accuracy if res.final else float("nan")
                print(
                    f"trained {norm} seed {seed}: test acc {acc:.4f} in {time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                )
            paths[(norm, seed)] = ckpt
    return paths


def profile_config(
    norm: str, seed: int, profile: str, batch_size: int, severities: tuple[int, ...] = SEVERITIES
) -> EvalConfig:
    """The sweep of one model x one row of :data:`PROFILES` (``paper+rescale``: the paper profile, rescaled)."""
    first = profile == PROFILES[0][0]  # the clean row once, with the first profile
    return EvalConfig(
        noises=dict(PROFILES)[profile],
        severities=(0, *severities) if first else severities,
        profile=profile.split("+")[0],
        rescale=profile.endswith("+rescale"),
        modes=MODES[norm],
        batch_size=batch_size,
        seed=seed,
        order_seed=seed,
        device="cpu",
    )


def evaluate_all(
    paths: dict[tuple[str, int], Path],
    limit: int | None,
    batch_size: int,
    data_dir: Path | None,
    severities: tuple[int, ...] = SEVERITIES,
) -> list[tuple[str, int, EvalRecord]]:
    """Every model x mode x profile x noise x severity (plus clean, once); returns (norm, seed, record)."""
    clean = load_dataset("fashion-mnist", "test", data_dir=data_dir, limit=limit)
    data = EvalData.from_imageset(clean)
    out = []
    for (norm, seed), path in paths.items():
        loaded = load_checkpoints([path])
        for profile, _ in PROFILES:
            t0 = time.perf_counter()
            recs = evaluate_grid(loaded, data, profile_config(norm, seed, profile, batch_size, severities))
            print(f"evaluated {norm} seed {seed} {profile}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            out += [(norm, seed, dataclasses.replace(r, checkpoint=repo_path(Path(r.checkpoint)))) for r in recs]
    return out


def _profile_label(row: dict[str, str]) -> str:
    """The :data:`PROFILES` row a stored record came from (its clean row: the first)."""
    if row["noise"] == "clean":
        return PROFILES[0][0]
    return row["profile"] + ("+rescale" if row["rescale"] == "True" else "")


CHECK_SAMPLE = [(norm, profile, (k + p) % 3) for k, norm in enumerate(MODES) for p, (profile, _) in enumerate(PROFILES)]
"""``--check``'s groups, (model, profile, seed): every model x profile once, the seeds rotating."""

CHECK_QUICK = [("BN", "imagenet-c", 0), ("LN", "paper+rescale", 1)]
"""``--check --quick``'s groups: one per model, the rescaled paper profile among them."""


def check(args: argparse.Namespace) -> int:
    """Re-evaluate the ``--check`` sample of the stored records from the kept checkpoints; the exit code."""
    stored = read_rows((args.out or RESULTS) / "fashion_mnist_records.csv")
    groups = []
    for norm, profile, seed in CHECK_QUICK if args.quick else CHECK_SAMPLE:
        rows = [r for r in stored if (r["model"], r["seed"], _profile_label(r)) == (norm, str(seed), profile)]
        if not rows:
            print(f"MISMATCH {norm} seed {seed} {profile}: no stored records", file=sys.stderr)
            return 1
        groups.append((f"{norm} seed {seed} {profile}", rows))
    data = EvalData.from_imageset(
        load_dataset("fashion-mnist", "test", data_dir=args.data_dir, limit=int(stored[0]["n"]))
    )

    def evaluate(rows: list[dict[str, str]]) -> list[EvalRecord]:
        first = rows[0]
        config = profile_config(first["model"], int(first["seed"]), _profile_label(first), int(first["batch_size"]))
        return evaluate_grid(load_checkpoints([ROOT / first["checkpoint"]]), data, config)

    return run_check(groups, evaluate, lambda line: print(line, file=sys.stderr))


def aggregate(rows: list[tuple[str, int, EvalRecord]]) -> list[dict]:
    """Mean ± std over seeds per (model, mode, profile, noise, severity)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    params: dict[tuple, float | None] = {}
    for norm, _seed, r in rows:
        profile = "clean" if r.severity == 0 else r.profile + ("+rescale" if r.rescale else "")
        noise = "clean" if r.severity == 0 else r.noise
        key = (norm, r.mode, profile, noise, r.severity)
        groups[key].append(r.accuracy)
        params[key] = r.param
    agg = []
    for key, accs in groups.items():
        norm, mode, profile, noise, sev = key
        agg.append(
            {
                "model": norm,
                "mode": mode,
                "profile": profile,
                "noise": noise,
                "severity": sev,
                "param": params[key],
                "seeds": len(accs),
                "mean": statistics.fmean(accs),
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            }
        )
    return agg


def column(a: dict) -> str:
    return f"{a['model']} {a['mode']}"


def _ratio(a: float, b: float) -> str:
    """``a / b`` for the ratios table; n/a where a model scored 0 (a few test images can do that)."""
    return f"{a / b:.2f}×" if b else "n/a"


def write_outputs(rows: list[tuple[str, int, EvalRecord]], agg: list[dict], out: Path, meta: dict) -> None:
    """fashion_mnist.csv (aggregate), fashion_mnist_records.csv (per seed), .md table and .png plot."""
    fields = ["model", "mode", "profile", "noise", "severity", "param", "seeds", "mean", "std"]
    with atomic_write(out / "fashion_mnist.csv", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(agg)
    rec_fields = ["model", "seed"] + list(EvalRecord.__dataclass_fields__)
    with atomic_write(out / "fashion_mnist_records.csv", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=rec_fields)
        w.writeheader()
        for norm, seed, r in rows:
            w.writerow({"model": norm, "seed": seed, **r.to_dict()})

    cols = sorted(
        {column(a) for a in agg},
        key=lambda c: (c.split()[0], ["running", "batch", "local", "single", "vote"].index(c.split()[1])),
    )
    cell = {(column(a), a["profile"], a["noise"], a["severity"]): a for a in agg}
    row_keys = sorted(
        {(a["profile"], a["noise"], a["severity"]) for a in agg},
        key=lambda k: (k[0] != "clean", [p for p, _ in PROFILES].index(k[0]) if k[0] != "clean" else -1, k[1], k[2]),
    )
    lines = [
        "# Does LocalNorm hold up? Fashion-MNIST",
        "",
        f"Evidence: accuracy (%) mean ± std over n={meta['seeds']} seeds ({meta['seed_list']}) per cell; "
        f"{meta['n_test']} test images per cell; small_cnn trained {meta['epochs']} epochs per seed with "
        f"`sample_configs/fashion_mnist_{{bn,localnorm}}.yaml`. Test batch {meta['batch_size']}, G = {meta['group_size']} "
        f"(LN: {meta['heads']} heads; position heads in `local`, the heads' mean in the per-image modes `running` "
        "and `single`), test order shuffled with the seed. "
        f"Hardware: {meta['hardware']}, {meta['load']}; torch {torch.__version__}, lncli {__version__}, Python "
        f"{platform.python_version()}; models kept in `benchmarks/checkpoints/`, trained at commit {meta['commit']}. "
        f"Wall time {meta['wall_s']:.0f} s"
        + (" (evaluation only: the kept models reused)." if meta["reused"] else " (training and evaluation)."),
        "",
        *([QUICK_NOTE, ""] if meta["quick"] else []),
        "| profile | noise | sev | param | " + " | ".join(cols) + " |",
        "|---|---|---|---|" + "---|" * len(cols),
    ]
    for prof, noise, sev in row_keys:
        vals = []
        best = max((cell[(c, prof, noise, sev)]["mean"] for c in cols if (c, prof, noise, sev) in cell), default=0.0)
        param = None
        for c in cols:
            a = cell.get((c, prof, noise, sev))
            if a is None:
                vals.append("")
                continue
            param = a["param"]
            s = f"{100 * a['mean']:.1f} ± {100 * a['std']:.1f}"
            vals.append(f"**{s}**" if a["mean"] == best else s)
        p = "" if param is None else f"{param:g}"
        lines.append(f"| {prof} | {noise} | {sev} | {p} | " + " | ".join(vals) + " |")
    lines += [
        "",
        "## Ratios at the worst severity (5)",
        "",
        "| profile | noise | LN local / BN running | BN batch / BN running | LN local / BN batch |",
        "|---|---|---|---|---|",
    ]
    for prof, noises in PROFILES:
        for noise in noises:

            def g(c: str, prof: str = prof, noise: str = noise) -> float:
                return cell.get((c, prof, noise, 5), {}).get("mean", float("nan"))

            lnl, bnr, bnb = g("LN local"), g("BN running"), g("BN batch")
            lines.append(f"| {prof} | {noise} | {_ratio(lnl, bnr)} | {_ratio(bnb, bnr)} | {_ratio(lnl, bnb)} |")
    clean = {c: cell[(c, "clean", "clean", 0)]["mean"] for c in cols if (c, "clean", "clean", 0) in cell}
    lines += [
        "",
        (
            "Clean accuracy difference, LN local − BN running: "
            f"{100 * (clean.get('LN local', float('nan')) - clean.get('BN running', float('nan'))):+.2f} points."
        ),
        "",
    ]
    with atomic_write(out / "fashion_mnist.md") as fh:
        fh.write("\n".join(lines))
    plot(cols, cell, out, meta)


def plot(cols: list[str], cell: dict, out: Path, meta: dict) -> None:
    """fashion_mnist.png: accuracy against severity, a panel per profile x noise, a line per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(p, n) for p, ns in PROFILES for n in ns]
    fig, axes = plt.subplots(len(PROFILES), 3, figsize=(13, 3.4 * len(PROFILES)), sharey=True, squeeze=False)
    for ax, (prof, noise) in zip(axes.flat, panels):
        for c in cols:
            xs, ys, es = [], [], []
            for sev in range(6):
                a = cell.get((c, "clean", "clean", 0)) if sev == 0 else cell.get((c, prof, noise, sev))
                if a is not None:
                    xs.append(sev), ys.append(100 * a["mean"]), es.append(100 * a["std"])
            style = "-" if c.startswith("LN") else "--"
            ax.errorbar(xs, ys, yerr=es, fmt=style, marker="o", ms=3, capsize=2, label=c)
        ax.set_title(f"{prof}: {noise}")
        ax.set_xlabel("severity")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Fashion-MNIST small_cnn, mean ± std over {meta['seeds']} seeds")
    fig.tight_layout()
    with atomic_path(out / "fashion_mnist.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def git_commit() -> str:
    """The commit the models were trained at (``unknown`` outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "lncli", "sample_configs"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def export_examples(paths: dict[tuple[str, int], Path], seed: int, directory: Path, commit: str) -> None:
    """Ship one seed's BN and LN models as small inference checkpoints (no optimizer state)."""
    from lncli.checkpoint import load_checkpoint, save_checkpoint

    for norm, cfg_path in CONFIGS.items():
        ckpt = load_checkpoint(paths[(norm, seed)])
        ckpt.train_state = None  # optimizer/RNG state only matters for --resume; halves the file
        ckpt.provenance = {
            **ckpt.provenance,
            "config": str(cfg_path.relative_to(ROOT)),
            "commit": commit,
            "trained_by": "benchmarks/reproduce_fashion_mnist.py",
        }
        save_checkpoint(ckpt, directory / f"fashion_mnist_small_cnn_{norm.lower()}.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    ap.add_argument("--eval-limit", type=int, default=None, help="test images per cell (default: all 10,000)")
    ap.add_argument("--batch-size", type=int, default=128, help="test batch size (a multiple of G=16)")
    ap.add_argument("--runs", type=Path, default=None, help=f"training outputs (default {RUNS}; --quick: temp)")
    ap.add_argument("--out", type=Path, default=None, help=f"results folder (default {RESULTS}; --quick: temp)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="reuse the kept models (and trained ones found under --runs)")
    ap.add_argument("--keep", type=Path, default=KEPT, help=f"where the models are kept (default {repo_path(KEPT)})")
    ap.add_argument(
        "--check", action="store_true", help="re-evaluate a sample of the stored records; exit 1 on a change"
    )
    ap.add_argument(
        "--export", type=Path, default=None, help="also write the first seed's models here (examples/checkpoints)"
    )
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], help="extra train config override key=value"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (1 seed, 1 epoch on 256 images, 8 test images); --check: 2 groups",
    )
    args = ap.parse_args()
    if args.check:
        sys.exit(check(args))
    if args.quick:
        args.seeds, args.epochs, args.eval_limit = "0", 1, min(args.eval_limit or 8, 8)
        args.overrides = ["data.train_limit=256", "data.test_limit=64", *args.overrides]
        torch.set_num_threads(QUICK_THREADS)
        args.keep = Path(tempfile.mkdtemp(prefix="lncli-bench-quick-kept-"))  # never the kept models
    args.out = args.out or default_out(args.quick)
    args.runs = args.runs or (Path(tempfile.mkdtemp(prefix="lncli-bench-quick-runs-")) if args.quick else RUNS)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    commit = git_commit()
    paths = {key: kept_path(*key, args.keep) for key in ((norm, seed) for seed in seeds for norm in CONFIGS)}
    reused = args.reuse and all(p.exists() for p in paths.values())
    if not reused:
        trained = train_models(seeds, args.epochs, args.runs, args.reuse, args.overrides)
        paths = {(n, s): keep(path, n, s, CONFIGS[n], commit, args.keep) for (n, s), path in trained.items()}
    if args.export:
        export_examples(paths, seeds[0], args.export, commit)
    rows = evaluate_all(paths, args.eval_limit, args.batch_size, args.data_dir, (5,) if args.quick else SEVERITIES)
    agg = aggregate(rows)
    ln_cfg = load_train_config(CONFIGS["LN"], [])
    meta = {
        "seeds": len(seeds),
        "seed_list": ", ".join(map(str, seeds)),
        "n_test": rows[0][2].n,
        "epochs": args.epochs or ln_cfg.epochs,
        "batch_size": args.batch_size,
        "group_size": ln_cfg.norm.group_size,
        "heads": ln_cfg.norm.num_heads,
        "hardware": hardware(),
        "wall_s": time.perf_counter() - t0,
        "load": f"load average {load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (1 min)",
        "commit": load_checkpoints([next(iter(paths.values()))])[0].checkpoint.provenance.get("commit", "unknown"),
        "reused": reused,
        "quick": args.quick,
    }
    write_outputs(rows, agg, args.out, meta)
    print((args.out / "fashion_mnist.md").read_text())


if __name__ == "__main__":
    main()
