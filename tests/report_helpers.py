"""Records shared by the lncli.report tests: small sweeps built by hand (a helper module; tests/ is on sys.path)."""

from __future__ import annotations

from lncli.records import CLEAN, EvalRecord
from lncli.stats import wilson_interval

N = 200


def rec(ckpt: str, mode: str, noise: str, sev: int, correct: int, n: int = N) -> EvalRecord:
    lo, hi = wilson_interval(correct, n)
    return EvalRecord(
        checkpoint=ckpt,
        sha256="0123456789ab",
        arch="tiny",
        norm="batchnorm",
        mode=mode,
        heads="position",
        group_size=None if mode == "running" else 16,
        batch_size=64,
        noise=noise,
        profile="none" if noise == CLEAN else "imagenet-c",
        severity=sev,
        param=0.0 if noise == CLEAN else 0.1 * sev,
        n=n,
        correct=correct,
        accuracy=correct / n,
        ci_low=lo,
        ci_high=hi,
        noise_seed=0,
        order_seed=0,
        device="cpu",
        amp=False,
        world_size=1,
        data="synthetic",
        synthetic=True,
        lncli_version="0.1.0",
    )


def sweep() -> list[EvalRecord]:
    """Two columns: bn:running degrades fast, bn:batch slowly."""
    out = []
    for mode, clean, slope in (("running", 180, 30), ("batch", 176, 10)):
        out.append(rec("runs/bn.pt", mode, CLEAN, 0, clean))
        for noise in ("gaussian", "impulse"):
            for s in (1, 2, 3):
                out.append(rec("runs/bn.pt", mode, noise, s, clean - slope * s))
    return out


LONG = ("examples/checkpoints/fashion_mnist_small_cnn_bn.pt", "examples/checkpoints/fashion_mnist_small_cnn_ln.pt")


def demo_sweep(paths: tuple[str, ...] = LONG) -> list[EvalRecord]:
    """The demo's shape: a BN checkpoint in running + batch mode and a LocalNorm one in local mode, 3 noises x 5."""
    out = []
    for ck, modes in zip(paths, (("running", "batch"), ("local",))):
        for mode in modes:
            slope = {"running": 25, "batch": 10, "local": 9}[mode]
            out.append(rec(ck, mode, CLEAN, 0, 180))
            for noise in ("gaussian", "shot", "impulse"):
                out += [rec(ck, mode, noise, s, 170 - slope * s) for s in range(1, 6)]
    return out


def header_cells(text: str) -> list[list[str]]:
    """The header rows of a plain-text table: the lines between its top border and the header rule."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    rule = next(i for i, line in enumerate(lines) if line.startswith("┡"))
    return [[cell.strip() for cell in line.strip("┃").split("┃")] for line in lines[top + 1 : rule]]


def sized_sweep(sizes: tuple[int, ...] = (1, 16, 128)) -> list[EvalRecord]:
    """:func:`sweep` at several batch sizes (``--batch-size 1,16,128``): batch mode gains with the size."""
    import dataclasses

    out = []
    for k, size in enumerate(sizes):
        for r in sweep():
            shift = 0 if r.mode == "running" else 10 * (k - 1)  # batch: worse at size 1, better at 128
            c = max(0, min(r.n, r.correct + shift))
            lo, hi = wilson_interval(c, r.n)
            out.append(dataclasses.replace(r, batch_size=size, correct=c, accuracy=c / r.n, ci_low=lo, ci_high=hi))
    return out


def mixed_sweep() -> list[EvalRecord]:
    """A ``--mix`` run: one mixed row per column."""
    import dataclasses

    from lncli.records import MIXED

    return [
        dataclasses.replace(rec("runs/bn.pt", mode, MIXED, 0, c), severity=MIXED, param=None, mix=True)
        for mode, c in (("running", 100), ("batch", 130))
    ]
