"""Per-image modes do not depend on the batch; a batch smaller than G runs with G = the batch size (issue 19).

A mode whose statistics do not come from the batch (``running``, ``single``, ``vote``, ``majority``,
``groupnorm``) must give every image the same prediction whatever its batch, its position in it and
the stream's order: per-image hits at batch sizes 5 and 128 in the ``shuffled``, ``sorted`` and
``dataset`` orders are compared with batch size 1 (where each image is alone), for BN, LocalNorm and
GroupNorm checkpoints. The LocalNorm checkpoint's two heads differ strongly and its G is 8, so a head
chosen by batch position (as before issue 19) would flip images at batch 128.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from evaluate_helpers import cfg

from lncli.data import load_dataset
from lncli.jobs.evaluate import EvalData, evaluate_grid, load_checkpoints, mode_notes
from lncli.records import EvalRecord

PER_IMAGE = {"bn": ("running", "single", "vote", "majority"), "ln": ("running", "single", "vote", "majority")}
ORDERS = ("shuffled", "sorted", "dataset")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Batches of one image are many tiny ops: a second intra-op thread only adds overhead there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data64() -> EvalData:
    return EvalData.from_imageset(load_dataset("synthetic", "test", limit=64))


def _hits(records: list[EvalRecord]) -> dict[tuple[str, str, str, int | str, int], str | None]:
    """Per-image hits by (checkpoint, mode, noise, severity, batch size)."""
    return {(Path(r.checkpoint).name, r.mode, r.noise, r.severity, r.batch_size): r.hits for r in records}


@pytest.mark.parametrize("kind", ["bn", "ln", "gn"])
def test_per_image_modes_ignore_batch_size_position_and_order(
    kind: str, eval_ckpts: dict[str, Path], gn_checkpoint: Path, data64: EvalData
) -> None:
    path = gn_checkpoint if kind == "gn" else eval_ckpts[kind]
    modes = PER_IMAGE.get(kind, ("groupnorm",))
    models = load_checkpoints([path])
    alone = evaluate_grid(models, data64, cfg(modes=modes, batch_size=1))  # no batch, no position, no order
    reference = {k[:4]: v for k, v in _hits(alone).items()}
    assert len(reference) == 2 * len(modes)  # clean and gaussian 3 per mode
    runs = {
        order: evaluate_grid(models, data64, cfg(modes=modes, batch_sizes=(5, 128), order=order)) for order in ORDERS
    }
    for order, records in runs.items():
        for (name, mode, noise, sev, b), hits in _hits(records).items():
            assert hits == reference[(name, mode, noise, sev)], f"{name} {mode} {noise}/{sev}: batch {b}, {order}"
    heads = {(r.mode, r.heads) for records in runs.values() for r in records}
    if kind != "gn":  # the records say which affine rule ran: the heads' mean, or every head voting
        assert heads == {("running", "mean"), ("single", "mean"), ("vote", "vote"), ("majority", "majority")}


def test_position_heads_still_depend_on_the_batch_where_groups_exist(
    eval_ckpts: dict[str, Path], data64: EvalData
) -> None:
    """The check above can fail: ``local`` with position heads is batch-dependent on the same checkpoint."""
    records = evaluate_grid(load_checkpoints([eval_ckpts["ln"]]), data64, cfg(modes=("local",), batch_sizes=(8, 64)))
    by_size = {r.batch_size: r.hits for r in records if r.noise == "clean"}
    assert by_size[8] != by_size[64]


def test_heads_position_asked_for_a_per_image_mode_is_noted(eval_ckpts: dict[str, Path]) -> None:
    ln, bn = load_checkpoints([eval_ckpts["ln"], eval_ckpts["bn"]])
    notes = mode_notes([ln, bn], cfg(modes=("local", "single", "running", "vote"), heads="position"))
    assert notes == [
        (
            "--heads position applies where test images form groups; ln.pt in single, running "
            "(per-image statistics) takes the mean of its heads"
        )
    ]
    assert mode_notes([ln, bn], cfg(modes=("local", "single"))) == []  # the default rule: nothing to note
    assert mode_notes([ln], cfg(modes=("single",), heads="mean")) == []


# --- a batch smaller than G (issue 19, item 2) ---


@pytest.mark.parametrize("kind", ["ln", "bn"])
def test_batch_smaller_than_g_runs_as_one_group(
    kind: str, eval_ckpts: dict[str, Path], data64: EvalData, tmp_path: Path
) -> None:
    """A sweep over 1, 4, 8 and 12 with G = 8 runs: below G each batch is one group (G = its size,
    recorded), which is exactly ``--group-size`` = the batch size; 12 ends each batch in a group of 4."""
    models = load_checkpoints([eval_ckpts[kind]])
    modes = ("local", "tent") if kind == "ln" else ("local",)
    config = cfg(modes=modes, batch_sizes=(1, 4, 8, 12), group_size=8 if kind == "bn" else None)
    records = evaluate_grid(models, data64, config)
    g_used = {(r.mode, r.batch_size): r.group_size for r in records}
    for mode in modes:
        assert [g_used[(mode, b)] for b in (1, 4, 8, 12)] == [1, 4, 8, 8], mode
    for b in (1, 4):  # the same cells as asking for G = b outright
        explicit = evaluate_grid(models, data64, cfg(modes=modes, batch_size=b, group_size=b))
        assert [r.hits for r in records if r.batch_size == b] == [r.hits for r in explicit]
    notes = mode_notes(models, config)
    name, cols = Path(eval_ckpts[kind]).name, ", ".join(modes)
    small = (
        f"{name}: batch size 1,4 is smaller than G = 8; {cols} normalise each batch as one group there "
        "(G = the batch size, recorded as group_size)"
    )
    ragged = (
        f"{name}: G = 8 does not divide batch size 12; in {cols} the last images of each batch form one "
        "smaller group (LocalNorm's ragged rule)"
    )
    assert notes == [small, ragged]


def test_no_group_size_note_without_a_local_statistics_column(eval_ckpts: dict[str, Path]) -> None:
    ln, bn = load_checkpoints([eval_ckpts["ln"], eval_ckpts["bn"]])
    assert mode_notes([ln, bn], cfg(modes=("single", "batch", "prior"), batch_sizes=(1, 12))) == []
