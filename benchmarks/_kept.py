"""The studies' kept checkpoints, and re-checking stored records against them (issue 19).

The reproduction (``reproduce_fashion_mnist.py``) and the deployment-conditions study
(``reproduce_conditions.py``) train small_cnn with BatchNorm, LocalNorm and GroupNorm for seeds
0, 1 and 2. Training is not reproducible bit for bit across CPUs, so a stored record is only
checkable against the very weights it measured: every trained model is kept in
``benchmarks/checkpoints/`` (``{bn,ln,gn}_seed{0,1,2}.pt``, without optimizer state, under 1 MB
each), the records name that file (relative to the repository) and its hash, and ``--check``
re-evaluates a stated sample of the records from it and fails on any count that differs.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from lncli.checkpoint import load_checkpoint, save_checkpoint
from lncli.records import EvalRecord

ROOT = Path(__file__).resolve().parents[1]
KEPT = ROOT / "benchmarks" / "checkpoints"
"""Where the studies' trained models are kept, one file per (kind, seed)."""


def kept_path(kind: str, seed: int, directory: Path = KEPT) -> Path:
    """The kept file of one model: ``bn_seed0.pt`` for (``BN``, 0)."""
    return directory / f"{kind.lower()}_seed{seed}.pt"


def keep(trained: Path, kind: str, seed: int, config: Path, commit: str, directory: Path = KEPT) -> Path:
    """Keep a trained ``last.pt`` as a small inference checkpoint (no optimizer state) with its provenance.

    Args:
        trained: the training run's checkpoint.
        kind: ``BN``, ``LN`` or ``GN``.
        seed: the training seed.
        config: the training recipe (recorded relative to the repository).
        commit: the commit the model was trained at.
        directory: where to keep it.

    Returns:
        The kept file.
    """
    ckpt = load_checkpoint(trained)
    ckpt.train_state = None  # optimizer/RNG state only matters for --resume; halves the file
    ckpt.provenance = {
        **ckpt.provenance,
        "config": str(config.resolve().relative_to(ROOT)),
        "commit": commit,
        "trained_by": "benchmarks/reproduce_conditions.py and reproduce_fashion_mnist.py (shared models)",
    }
    out = kept_path(kind, seed, directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ckpt, out)
    return out


def repo_path(path: Path) -> str:
    """A path as the records name it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def short_sha(path: Path) -> str:
    """The first 12 hex digits of a file's SHA-256, as the records keep it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a stored records CSV."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


Key = tuple[str, str, str]
"""(mode, noise, severity) of one record, as text: how a stored row and a fresh record are paired."""


def _key(mode: object, noise: object, severity: object) -> Key:
    return (str(mode), str(noise), str(severity))


def compare_group(stored: Sequence[dict[str, str]], fresh: Iterable[EvalRecord], what: str) -> list[str]:
    """Every stored row's count against the fresh record of the same (mode, noise, severity).

    Returns:
        One line per difference (a count that changed, a row with no fresh record), empty when all agree.
    """
    got = {_key(r.mode, r.noise, r.severity): r.correct for r in fresh}
    problems = []
    for row in stored:
        key = _key(row["mode"], row["noise"], row["severity"])
        if key not in got:
            problems.append(f"{what} {'/'.join(key)}: not evaluated again")
        elif got[key] != int(row["correct"]):
            problems.append(f"{what} {'/'.join(key)}: stored {row['correct']}, now {got[key]}")
    return problems


def check_sha(rows: Sequence[dict[str, str]]) -> list[str]:
    """Each stored row's checkpoint exists (relative to the repository) and has the recorded hash."""
    problems = []
    for name, sha in sorted({(r["checkpoint"], r["sha256"]) for r in rows}):
        path = ROOT / name
        if not path.is_file():
            problems.append(f"{name}: not kept (the records name a file that is not in the repository)")
        elif short_sha(path) != sha:
            problems.append(f"{name}: sha256 {short_sha(path)}, the records say {sha}")
    return problems


def run_check(
    groups: Sequence[tuple[str, list[dict[str, str]]]],
    evaluate: Callable[[list[dict[str, str]]], list[EvalRecord]],
    log: Callable[[str], None],
) -> int:
    """Re-evaluate each group of stored rows and compare the counts; the exit code (0: all agree, 1: not).

    Args:
        groups: (label, stored rows) per evaluation to repeat; every row of a group comes from one call.
        evaluate: runs the call that wrote a group's rows again, from the kept checkpoint.
        log: where progress and differences go.
    """
    problems = check_sha([row for _, rows in groups for row in rows])
    checked = 0
    if not problems:
        for label, rows in groups:
            found = compare_group(rows, evaluate(rows), label)
            checked += len(rows)
            log(f"checked {label}: {len(rows)} cells, {'ok' if not found else f'{len(found)} differ'}")
            problems += found
    for line in problems:
        log(f"MISMATCH {line}")
    log(f"{checked} stored cells re-evaluated in {len(groups)} groups: {len(problems)} problem(s)")
    return 1 if problems else 0
